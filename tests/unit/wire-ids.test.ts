import { describe, expect, test } from "bun:test";
import {
  ID_PATTERN, INTERNAL_SESSION, RESERVED_SESSION_NAMES, SESSION_NAME_MAX_BYTES, idFromSessionName, isValidId,
  parseSessionName, sessionNameFor,
} from "../../src/wire/ids";
import { ProtocolError } from "../../src/wire/errors";

describe("client ids", () => {
  test("accept 1 to 48 bytes of the allowed characters", () => {
    expect(isValidId("a")).toBe(true);
    expect(isValidId("x".repeat(48))).toBe(true);
    expect(isValidId("vm-42")).toBe(true);
    expect(isValidId("A-Z_a.z0@host:9")).toBe(true);
    expect(ID_PATTERN.test("qemu@vm-7.prod:1")).toBe(true);
  });

  test("reject the empty string and 49 bytes", () => {
    expect(isValidId("")).toBe(false);
    expect(isValidId("x".repeat(49))).toBe(false);
  });

  test("reject characters outside [A-Za-z0-9._@:-]", () => {
    for (const bad of ["vm 42", "vm/42", "vm\n", "é", "vm+1", "a\0b", "tab\t", "ünïcode", "💥", "a,b", "$x"]) {
      expect(isValidId(bad)).toBe(false);
    }
  });

  test("reject non-strings", () => {
    for (const bad of [undefined, null, 42, {}, ["vm"], true]) expect(isValidId(bad)).toBe(false);
  });
});

describe("session names", () => {
  test("are luod:<id>/<attempt in base 36>", () => {
    expect(sessionNameFor("vm-42", 1)).toBe("luod:vm-42/1");
    expect(sessionNameFor("vm-42", 35)).toBe("luod:vm-42/z");
    expect(sessionNameFor("vm-42", 36)).toBe("luod:vm-42/10");
    expect(sessionNameFor("a", 0)).toBe("luod:a/0");
  });

  test("fit the kernel's 63 bytes with the longest id and a 9-digit attempt", () => {
    const name = sessionNameFor("x".repeat(48), 36 ** 9 - 1);
    expect(name.length).toBe(63);
    expect(name.length).toBeLessThanOrEqual(SESSION_NAME_MAX_BYTES);
  });

  test("throw instead of exceeding 63 bytes", () => {
    expect(() => sessionNameFor("x".repeat(48), 36 ** 9)).toThrow(ProtocolError);
    expect(() => sessionNameFor("x".repeat(48), 36 ** 9)).toThrow(/63/);
  });

  test("throw for an invalid id or attempt", () => {
    expect(() => sessionNameFor("bad id", 1)).toThrow(ProtocolError);
    expect(() => sessionNameFor("x".repeat(49), 1)).toThrow(ProtocolError);
    expect(() => sessionNameFor("vm", -1)).toThrow(ProtocolError);
    expect(() => sessionNameFor("vm", 1.5)).toThrow(ProtocolError);
    expect(() => sessionNameFor("vm", Number.NaN)).toThrow(ProtocolError);
  });

  test("round-trip through idFromSessionName and parseSessionName", () => {
    for (const [id, attempt] of [["vm-42", 1], ["a:b@c.d", 1234567], ["x".repeat(48), 36 ** 9 - 1]] as const) {
      const name = sessionNameFor(id, attempt);
      expect(idFromSessionName(name)).toBe(id);
      expect(parseSessionName(name)).toEqual({ id, attempt });
    }
  });

  test("that luod did not make give null", () => {
    for (const name of [
      "systemd", "luod", "luod:", "luod:vm", "luod:vm/", "luod:/1", "luod:vm/01", "luod:vm/A", "luod:vm/1/2",
      "luod:bad id/1", `luod:${"x".repeat(49)}/1`, "other:vm/1", "luod:vm/1234567890", " luod:vm/1",
    ]) {
      expect(idFromSessionName(name)).toBeNull();
    }
  });

  test("reserved names are systemd's and luod's own, never produced for a client", () => {
    expect(INTERNAL_SESSION).toBe("luod");
    expect([...RESERVED_SESSION_NAMES]).toEqual(["systemd", "luod"]);
    for (const id of ["systemd", "luod"]) expect(RESERVED_SESSION_NAMES).not.toContain(sessionNameFor(id, 1));
  });
});
