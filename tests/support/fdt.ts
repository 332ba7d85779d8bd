// A minimal flattened-device-tree writer for tests (Devicetree Specification v0.4, chapter 5):
// what kexec_handover.c builds for /sys/kernel/debug/kho/out/fdt (a root node with "compatible"
// and properties, child nodes with properties).

export interface FdtNode {
  props?: [name: string, value: Uint8Array | string][];
  children?: [name: string, node: FdtNode][];
}

export function u64be(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, false);
  return b;
}

export function buildFdt(root: FdtNode, opts: { version?: number } = {}): Uint8Array {
  const struct: number[] = [];
  const strings: number[] = [];
  const nameOff = new Map<string, number>();
  const enc = new TextEncoder();
  const u32 = (n: number) => struct.push((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
  const bytes = (b: Uint8Array) => {
    struct.push(...b);
    while (struct.length % 4) struct.push(0);
  };
  const strOff = (name: string) => {
    if (!nameOff.has(name)) {
      nameOff.set(name, strings.length);
      strings.push(...enc.encode(name), 0);
    }
    return nameOff.get(name)!;
  };
  const node = (name: string, n: FdtNode) => {
    u32(1);
    bytes(enc.encode(name + "\0"));
    for (const [p, v] of n.props ?? []) {
      const value = typeof v === "string" ? enc.encode(v + "\0") : v;
      u32(3);
      u32(value.length);
      u32(strOff(p));
      bytes(value);
    }
    for (const [c, child] of n.children ?? []) node(c, child);
    u32(2);
  };
  node("", root);
  u32(9);
  const header = 40;
  const rsv = 16; // one empty reserve-map entry
  const offStruct = header + rsv;
  const offStrings = offStruct + struct.length;
  const total = offStrings + strings.length;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  [0xd00dfeed, total, offStruct, offStrings, header, opts.version ?? 17, 16, 0, strings.length, struct.length].forEach((v, i) =>
    dv.setUint32(i * 4, v, false),
  );
  out.set(struct, offStruct);
  out.set(strings, offStrings);
  return out;
}
