// A SIGTERM sent the moment luod says it is ready (READY=1, its "listening" line) stops it cleanly:
// systemd may stop a unit at once after it started. It used to find no handler installed yet and
// end luod by its default action (exit 143, nothing unloaded) more than half the time.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DIST, requireBinary } from "../support/binary";

test("luod stopped by SIGTERM right after its listening line exits 0, every time", async () => {
  requireBinary();
  const codes: number[] = [];
  for (let i = 0; i < 20; i++) {
    const dir = mkdtempSync(join(tmpdir(), "luod-ready-sigterm-"));
    try {
      const proc = Bun.spawn([join(DIST, "luod"), "--socket", join(dir, "luod.sock"), "--state-dir", join(dir, "state"), "--device", "/nonexistent/luo-ready/liveupdate"], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      let err = "";
      for await (const chunk of proc.stderr) {
        err += new TextDecoder().decode(chunk);
        if (err.includes("listening on")) {
          proc.kill("SIGTERM");
          break;
        }
      }
      codes.push(await proc.exited);
      clearTimeout(timer);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  expect(codes).toEqual(codes.map(() => 0));
}, 60_000);
