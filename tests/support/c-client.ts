// Compiles the C reference client (examples/c) with gcc, for tests/integration/c-client.test.ts
// and tests/vm/c-client.test.ts.
import { join } from "node:path";
import { REPO } from "./binary";

/** Compiles examples/c into `out` with the flags of its Makefile, -Werror included. */
export function compileCClient(out: string): { code: number; stderr: string } {
  const c = join(REPO, "examples/c");
  const r = Bun.spawnSync(
    ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o", out, join(c, "example.c"), join(c, "luo_client.c")],
    { stdout: "pipe", stderr: "pipe" },
  );
  return { code: r.exitCode, stderr: r.stderr.toString() };
}
