// One executable, three personalities: the name it was started by picks luod, luoctl or luo-qemu.
// Compiled, process.argv0 is the real argv[0] (the symlink name); process.argv[0] is "bun" and
// process.argv[1] the embedded entry, so user arguments are always process.argv.slice(2)
// (docs/bun.md#the-invoked-name). `luo luod …` / `luo luoctl …` also work (from source and in tests).
import { basename } from "node:path";
import { VERSION } from "./version";
import { IMAGE_ABI_COMMAND } from "./self-command";

const PERSONALITIES = ["luod", "luoctl", "luo-qemu"] as const;
type Personality = (typeof PERSONALITIES)[number];

function pick(argv0: string, args: string[]): { who: Personality; args: string[] } | null {
  const invoked = basename(argv0);
  for (const p of PERSONALITIES) if (invoked === p) return { who: p, args };
  const first = args[0] as Personality;
  if (PERSONALITIES.includes(first)) return { who: first, args: args.slice(1) };
  return null;
}

// luod's own helper process (src/self-command.ts), whatever name this binary was started by
if (process.argv[2] === IMAGE_ABI_COMMAND) {
  const { imageChildMain } = await import("./daemon/image-child");
  process.exit(imageChildMain(process.argv.slice(3)));
}
const chosen = pick(process.argv0, process.argv.slice(2));
if (!chosen) {
  const arg = process.argv[2];
  if (arg === "--version" || arg === "-v") {
    console.log(`luo ${VERSION}`);
    process.exit(0);
  }
  console.error(
    `usage: luo {luod|luoctl|luo-qemu} [args…]   (or run through the symlinks luod / luoctl / luo-qemu)\n` +
      `  luod      the live-update broker daemon             luod --help\n` +
      `  luoctl    the administrator's tool                  luoctl --help\n` +
      `  luo-qemu  a QEMU VM whose RAM survives the update   luo-qemu --help`,
  );
  process.exit(arg === "--help" || arg === "-h" ? 0 : 2);
}
// Dynamic imports: luoctl never loads the daemon's code, which keeps its startup short.
if (chosen.who === "luod") {
  const { luodMain } = await import("./daemon/main");
  process.exitCode = await luodMain(chosen.args);
} else if (chosen.who === "luo-qemu") {
  const { luoQemuMain } = await import("./qemu/main");
  process.exit(await luoQemuMain(chosen.args));
} else {
  const { luoctlMain } = await import("./ctl/main");
  process.exit(await luoctlMain(chosen.args));
}
