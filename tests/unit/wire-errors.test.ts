// errorCodeOf: the one place that turns anything thrown into a protocol error code.
import { describe, expect, test } from "bun:test";
import { errorCodeOf, ProtocolError } from "../../src/wire/errors";
import { Errno, SysError } from "../../src/kernel/libc";

describe("errorCodeOf", () => {
  test("is the errno name of a SysError and the code of a ProtocolError", () => {
    expect(errorCodeOf(new SysError("op", Errno.EBUSY), "EIO")).toBe("EBUSY");
    expect(errorCodeOf(new ProtocolError("EPERM", "no"), "EIO")).toBe("EPERM");
  });

  test("is the fallback for anything else (a bug has no protocol meaning)", () => {
    expect(errorCodeOf(new Error("x"), "EIO")).toBe("EIO");
    expect(errorCodeOf({ code: "ENOENT" }, "EIO")).toBe("EIO");
    expect(errorCodeOf("thrown string", "EINVAL")).toBe("EINVAL");
  });
});
