// A tiny legacy-format LZ4 encoder (`lz4 -l` as Kbuild uses it, lib/decompress_unlz4.c) for tests:
// literal-only blocks, which any LZ4 decoder must accept, and the kernel's 4-byte size suffix.

/** One LZ4 block made of a single literals-only sequence. */
export function lz4LiteralBlock(data: Uint8Array): Uint8Array {
  const head: number[] = [];
  if (data.length < 15) head.push(data.length << 4);
  else {
    head.push(0xf0);
    let rest = data.length - 15;
    while (rest >= 255) {
      head.push(255);
      rest -= 255;
    }
    head.push(rest);
  }
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

/** Magic, one chunk per `blockBytes` of input (each: LE32 size + block), then size_append. */
export function lz4Legacy(data: Uint8Array, opts: { blockBytes?: number; sizeSuffix?: number } = {}): Uint8Array {
  const blockBytes = opts.blockBytes ?? 8 << 20;
  const parts: Uint8Array[] = [le32(0x184c2102)];
  for (let at = 0; at < data.length; at += blockBytes) {
    const block = lz4LiteralBlock(data.subarray(at, at + blockBytes));
    parts.push(le32(block.length), block);
  }
  parts.push(le32(opts.sizeSuffix ?? data.length));
  return concat(parts);
}

/** Legacy stream of hand-made blocks (for matches and hostile inputs), then size_append. */
export function lz4LegacyBlocks(blocks: Uint8Array[], sizeSuffix: number): Uint8Array {
  return concat([le32(0x184c2102), ...blocks.flatMap((b) => [le32(b.length), b]), le32(sizeSuffix)]);
}

export function le32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
