// LUO uAPI: struct encodings byte for byte against docs/kernel.md#struct-layouts, and the device-open paths
// this host can exercise (it has no /dev/liveupdate).
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeFd, openFile } from "../../src/kernel/fd.ts";
import { Errno, SysError } from "../../src/kernel/libc.ts";
import {
  createSession,
  describeHolders,
  encodeFinish,
  encodeGetName,
  encodePreserveFd,
  encodeRetrieveFd,
  encodeSessionRequest,
  LIVEUPDATE_DEVICE,
  LIVEUPDATE_IOCTL,
  openLiveupdateDevice,
  preserveFd,
  retrieveFd,
  retrieveSession,
  retryWhileBusy,
  sessionNameBytes,
  withLiveupdateDevice,
} from "../../src/kernel/liveupdate.ts";
import { thrown as thrownOf } from "../support/thrown";

const thrown = (fn: () => unknown) => thrownOf(fn, SysError);

const bytes = (b: ArrayBuffer) => new Uint8Array(b);
const view = (b: ArrayBuffer) => new DataView(b);


describe("ioctl numbers", () => {
  test("are _IO(0xBA, nr) with no size or direction bits", () => {
    expect(LIVEUPDATE_IOCTL).toEqual({
      CREATE_SESSION: 0xba00,
      RETRIEVE_SESSION: 0xba01,
      SESSION_PRESERVE_FD: 0xba40,
      SESSION_RETRIEVE_FD: 0xba41,
      SESSION_FINISH: 0xba42,
      SESSION_GET_NAME: 0xba43,
    });
    expect(LIVEUPDATE_DEVICE).toBe("/dev/liveupdate");
  });
});

describe("struct encodings", () => {
  test("create/retrieve session: 72 bytes, size=72, fd=0, name at 8, NUL-terminated and padded", () => {
    const b = encodeSessionRequest("luod:vm-42");
    expect(b.byteLength).toBe(72);
    expect(view(b).getUint32(0, true)).toBe(72);
    expect(view(b).getInt32(4, true)).toBe(0);
    expect(new TextDecoder().decode(bytes(b).subarray(8, 18))).toBe("luod:vm-42");
    expect([...bytes(b).subarray(18)]).toEqual(new Array(54).fill(0));
  });

  test("a 63-byte name fills the field and keeps its terminating NUL at byte 71", () => {
    const name = "n".repeat(63);
    const b = bytes(encodeSessionRequest(name));
    expect(b[8]).toBe(0x6e);
    expect(b[70]).toBe(0x6e);
    expect(b[71]).toBe(0);
  });

  test("names are counted in UTF-8 bytes", () => {
    expect(sessionNameBytes("é")).toEqual(new Uint8Array([0xc3, 0xa9]));
    expect(() => encodeSessionRequest("é".repeat(32))).toThrow(SysError); // 64 bytes
  });

  test("empty, 64-byte and NUL-containing names are rejected with EINVAL before any ioctl", () => {
    for (const bad of ["", "x".repeat(64), "a\0b"]) {
      const e = thrown(() => encodeSessionRequest(bad));
      expect(e.code).toBe("EINVAL");
    }
  });

  test("createSession rejects a bad name before touching the fd (no EBADF from fd -1)", () => {
    const e = thrown(() => createSession(-1, "x".repeat(64)));
    expect(e.code).toBe("EINVAL");
    expect(e.message).toStartWith(`CREATE_SESSION ${"x".repeat(64)}: EINVAL (session name must be 1..63 bytes`);
    expect(thrown(() => retrieveSession(-1, "")).code).toBe("EINVAL");
  });

  test("preserve_fd: 16 bytes, size=16, fd at 4, u64 token at 8 (little endian)", () => {
    const b = encodePreserveFd(7, 0x1122334455667788n);
    expect(b.byteLength).toBe(16);
    expect([...bytes(b)]).toEqual([16, 0, 0, 0, 7, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
  });

  test("tokens cover the whole u64 range, 0 included", () => {
    expect(view(encodePreserveFd(3, 0n)).getBigUint64(8, true)).toBe(0n);
    expect(view(encodePreserveFd(3, (1n << 64n) - 1n)).getBigUint64(8, true)).toBe((1n << 64n) - 1n);
    expect(thrown(() => encodePreserveFd(3, 1n << 64n)).code).toBe("EINVAL");
    expect(thrown(() => encodeRetrieveFd(-1n)).code).toBe("EINVAL");
  });

  test("retrieve_fd: 16 bytes, size=16, fd (out) zero, token at 8", () => {
    const b = encodeRetrieveFd(0x1an);
    expect([...bytes(b)]).toEqual([16, 0, 0, 0, 0, 0, 0, 0, 0x1a, 0, 0, 0, 0, 0, 0, 0]);
  });

  test("finish: 8 bytes, size=8, reserved zero", () => {
    expect([...bytes(encodeFinish())]).toEqual([8, 0, 0, 0, 0, 0, 0, 0]);
  });

  test("get_name: 72 bytes, size=72, reserved and name zero", () => {
    const b = bytes(encodeGetName());
    expect(b.length).toBe(72);
    expect(view(b.buffer as ArrayBuffer).getUint32(0, true)).toBe(72);
    expect([...b.subarray(4)]).toEqual(new Array(68).fill(0));
  });

  test("session ioctls name the session in their error", () => {
    const e = thrown(() => preserveFd(-1, 0, 1n, "luod:vm-7"));
    expect(e.message).toBe("SESSION_PRESERVE_FD luod:vm-7: EBADF (Bad file descriptor)");
    expect(thrown(() => retrieveFd(-1, 1n)).op).toBe("SESSION_RETRIEVE_FD");
  });
});

describe("/dev/liveupdate open", () => {
  test.skipIf(existsSync(LIVEUPDATE_DEVICE))("a kernel without LUO gives ENOENT saying LUO is missing", () => {
    const e = thrown(() => openLiveupdateDevice());
    expect(e.code).toBe("ENOENT");
    expect(e.errno).toBe(Errno.ENOENT);
    expect(e.message).toStartWith("open /dev/liveupdate: ENOENT (this kernel has no Live Update Orchestrator");
    expect(e.message).toContain("CONFIG_LIVEUPDATE");
    expect(e.message).toContain("liveupdate=on");
  });

  test("withLiveupdateDevice does not run fn when the device is missing", () => {
    let ran = false;
    const e = thrown(() =>
      withLiveupdateDevice(
        () => {
          ran = true;
        },
        { path: "/nonexistent/liveupdate" },
      ),
    );
    expect(e.code).toBe("ENOENT");
    expect(ran).toBe(false);
  });

  test("withLiveupdateDevice opens read-write, passes the fd, and closes it even when fn throws", () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
    try {
      const path = join(dir, "fake-device");
      writeFileSync(path, "");
      let seen = -1;
      expect(() =>
        withLiveupdateDevice(
          (fd) => {
            seen = fd;
            throw new Error("boom");
          },
          { path },
        ),
      ).toThrow("boom");
      expect(seen).toBeGreaterThanOrEqual(0);
      expect(() => closeFd(seen)).toThrow("EBADF"); // already closed by withLiveupdateDevice
      const flags = withLiveupdateDevice(
        (fd) => parseInt(/^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))![1]!, 8),
        { path },
      );
      expect(flags & 0o3).toBe(0o2); // O_RDWR
      expect(flags & 0o2000000).toBe(0o2000000); // O_CLOEXEC
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("withLiveupdateDevice refuses an async fn (the device would already be closed)", () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
    try {
      const path = join(dir, "fake-device");
      writeFileSync(path, "");
      expect(() => withLiveupdateDevice(async () => 1, { path })).toThrow("must be synchronous");
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("other open errors pass through unchanged (EISDIR for a directory)", () => {
    const e = thrown(() => openLiveupdateDevice({ path: tmpdir() }));
    expect(e.code).toBe("EISDIR");
    expect(e.message).toBe(`open ${tmpdir()}: EISDIR (Is a directory)`);
  });
});

describe("EBUSY retry (no real single-open device on this host: the retry is driven directly)", () => {
  const busy = () => new SysError("open /dev/liveupdate", Errno.EBUSY);

  test("retries EBUSY with doubling backoff and returns the first success", () => {
    const sleeps: number[] = [];
    let calls = 0;
    const fd = retryWhileBusy(
      () => {
        if (++calls < 4) throw busy();
        return 42;
      },
      6,
      20,
      (ms) => sleeps.push(ms),
    );
    expect(fd).toBe(42);
    expect(calls).toBe(4);
    expect(sleeps).toEqual([20, 40, 80]);
  });

  test("gives up after `attempts` tries with the last EBUSY", () => {
    const sleeps: number[] = [];
    let calls = 0;
    const e = thrown(() =>
      retryWhileBusy(
        () => {
          calls++;
          throw busy();
        },
        6,
        20,
        (ms) => sleeps.push(ms),
      ),
    );
    expect(e.code).toBe("EBUSY");
    expect(calls).toBe(6);
    expect(sleeps).toEqual([20, 40, 80, 160, 320]);
  });

  test("does not retry other errors", () => {
    let calls = 0;
    const e = thrown(() =>
      retryWhileBusy(
        () => {
          calls++;
          throw new SysError("open x", Errno.ENOENT);
        },
        6,
        20,
        () => {},
      ),
    );
    expect(e.code).toBe("ENOENT");
    expect(calls).toBe(1);
  });

  test("the holder description names pid (comm) of whoever has the device open", () => {
    const dir = mkdtempSync(join(tmpdir(), "luo-kernel-"));
    try {
      const path = join(dir, "device");
      writeFileSync(path, "");
      expect(describeHolders(path)).toStartWith("no process visible in /proc holds it");
      const fd = openFile(path);
      try {
        expect(describeHolders(path)).toMatch(new RegExp(`^held by ${process.pid} \\(.+\\) \\[this process\\]$`));
      } finally {
        closeFd(fd);
      }
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
