// replyProblem: how the client library and luoctl check what answers on luod's socket.
import { describe, expect, test } from "bun:test";
import { replyProblem } from "../../src/wire/replies";

describe("replyProblem: the envelope", () => {
  test("valid replies pass", () => {
    expect(replyProblem({ reply: "STATUS", ok: true, phase: "idle" }, "STATUS")).toBeNull();
    expect(replyProblem({ reply: "LIST", ok: true, clients: [], tag: 7 }, "LIST", 7)).toBeNull();
    expect(replyProblem({ reply: "UNLOAD", ok: false, error: { code: "EBUSY", message: "busy" } }, "UNLOAD")).toBeNull();
    // an error to a line luod could not read names no command
    expect(replyProblem({ reply: null, ok: false, error: { code: "EMSGSIZE", message: "too long" } }, "LOAD")).toBeNull();
    expect(replyProblem({ reply: "PREPARE", ok: true, id: "vm-1", session: "luod:vm-1/0", fds: 1 }, "PREPARE")).toBeNull();
    expect(replyProblem({ reply: "KEXEC", ok: true, dry_run: true, timings: {} }, "KEXEC")).toBeNull();
  });

  test("broken envelopes are named", () => {
    const cases: [unknown, string, RegExp][] = [
      [null, "STATUS", /expected a JSON object, got null/],
      [[1], "STATUS", /got an array/],
      [{ reply: null, ok: true }, "STATUS", /"reply" must be "STATUS", got null/],
      [{ reply: "LIST", ok: true }, "STATUS", /"reply" must be "STATUS", got "LIST"/],
      [{ reply: "STATUS" }, "STATUS", /"ok" must be true or false, got nothing/],
      [{ reply: "STATUS", ok: 1 }, "STATUS", /"ok" must be true or false, got 1/],
      [{ reply: "STATUS", ok: false }, "STATUS", /an error reply needs "error"/],
      [{ reply: "STATUS", ok: false, error: { code: 5, message: "x" } }, "STATUS", /"error.code" must be an error name/],
      [{ reply: "STATUS", ok: false, error: { code: "\u001b[2J", message: "x" } }, "STATUS", /"error.code" must be an error name/],
      [{ reply: "STATUS", ok: false, error: { code: "EIO" } }, "STATUS", /"error.message" must be a string/],
      [{ reply: "STATUS", ok: true, tag: "x" }, "STATUS", /"tag" must be absent, got "x"/],
      [{ reply: "STATUS", ok: true, fds: 1 }, "STATUS", /"fds" must be 0/],
      [{ reply: "PREPARE", ok: true }, "PREPARE", /"fds" must be 1/],
      [{ reply: "KEXEC", ok: true }, "KEXEC", /"dry_run" must be true/],
      [{ reply: "KEXEC", ok: true, dry_run: false }, "KEXEC", /"dry_run" must be true/],
    ];
    for (const [msg, cmd, want] of cases) expect([JSON.stringify(msg), replyProblem(msg, cmd)]).toEqual([JSON.stringify(msg), expect.stringMatching(want)]);
    expect(replyProblem({ reply: "STATUS", ok: true }, "STATUS", 3)).toMatch(/"tag" must be 3, got nothing/);
  });
});

describe("replyProblem: the fields readers use", () => {
  test("wrong types are named; absent fields are fine (protocol v1 lets luod add and drop fields)", () => {
    expect(replyProblem({ reply: "STATUS", ok: true, phase: 7 }, "STATUS")).toMatch(/"phase" must be a string, got 7/);
    expect(replyProblem({ reply: "STATUS", ok: true, restored: [{ id: 1, state: "x" }] }, "STATUS")).toMatch(/"restored\[0\].id" must be a string/);
    expect(replyProblem({ reply: "LIST", ok: true, clients: {} }, "LIST")).toMatch(/"clients" must be an array/);
    expect(replyProblem({ reply: "CHECK", ok: true, ready: "yes" }, "CHECK")).toMatch(/"ready" must be true or false/);
    expect(replyProblem({ reply: "ABORT", ok: true, aborted: 1 }, "ABORT")).toMatch(/"aborted" must be true or false/);
    expect(replyProblem({ reply: "LOAD", ok: true, cmdline: ["x"] }, "LOAD")).toMatch(/"cmdline" must be a string/);
    expect(replyProblem({ reply: "STATUS", ok: true }, "STATUS")).toBeNull();
    expect(replyProblem({ reply: "STATUS", ok: true, phase: "idle", future_field: { x: 1 } }, "STATUS")).toBeNull();
  });
});
