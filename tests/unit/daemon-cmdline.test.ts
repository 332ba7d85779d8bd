import { describe, expect, test } from "bun:test";
import {
  analyzeCmdline, checkCmdline, earlyBool, hasLiveupdateOn, kstrtobool, normalizeCmdline, parseParam, splitCmdline,
} from "../../src/daemon/cmdline";

describe("splitCmdline", () => {
  test("splits on any whitespace", () => {
    expect(splitCmdline("  a\tb\n c  ")).toEqual(["a", "b", "c"]);
    expect(splitCmdline("")).toEqual([]);
  });
  test("respects double quotes anywhere in a token", () => {
    expect(splitCmdline('root=/dev/sda1 foo="a b  c" "bar=x y" z')).toEqual([
      "root=/dev/sda1", 'foo="a b  c"', '"bar=x y"', "z",
    ]);
  });
  test("an unterminated quote swallows the rest", () => {
    expect(splitCmdline('a foo="x y')).toEqual(["a", 'foo="x y']);
  });
});

describe("parseParam", () => {
  test("name, value, quote stripping like next_arg", () => {
    expect(parseParam("quiet")).toEqual({ name: "quiet", key: "quiet", value: null });
    expect(parseParam("a=b=c")).toEqual({ name: "a", key: "a", value: "b=c" });
    expect(parseParam('foo="a b"')).toEqual({ name: "foo", key: "foo", value: "a b" });
    expect(parseParam('"foo=a b"')).toEqual({ name: "foo", key: "foo", value: "a b" });
    expect(parseParam("kho-scratch=1M").key).toBe("kho_scratch");
    expect(parseParam("x=").value).toBe("");
  });
});

describe("normalizeCmdline", () => {
  test("strips BOOT_IMAGE= and initrd=", () => {
    expect(normalizeCmdline("BOOT_IMAGE=/boot/vmlinuz-7.2 root=/dev/vda1 initrd=\\initrd.img ro")).toBe("root=/dev/vda1 ro");
  });
  test("last wins, at the position of the last occurrence", () => {
    expect(normalizeCmdline("a=1 b c=3 a=2 d")).toBe("b c=3 a=2 d");
    expect(normalizeCmdline("liveupdate=off quiet liveupdate=on")).toBe("quiet liveupdate=on");
  });
  test("bare keys de-duplicate, and key vs key=value are the same parameter", () => {
    expect(normalizeCmdline("quiet ro quiet")).toBe("ro quiet");
    expect(normalizeCmdline("liveupdate x liveupdate=1")).toBe("x liveupdate=1");
  });
  test("dash and underscore are the same character in names (parameq)", () => {
    expect(normalizeCmdline("kho_scratch=1M kho-scratch=2M")).toBe("kho-scratch=2M");
  });
  test("collapses whitespace and keeps quoted values verbatim", () => {
    expect(normalizeCmdline('  root=/dev/vda1\t\tdyndbg="file a.c +p"   ro \n')).toBe('root=/dev/vda1 dyndbg="file a.c +p" ro');
  });
  test("repeatable parameters keep every distinct value, only exact duplicates collapse", () => {
    expect(normalizeCmdline("console=tty0 console=ttyS0,115200 console=tty0")).toBe("console=ttyS0,115200 console=tty0");
    expect(normalizeCmdline("hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512")).toBe(
      "hugepagesz=1G hugepages=4 hugepagesz=2M hugepages=512",
    );
  });
  test("arguments after -- belong to init and are kept verbatim", () => {
    expect(normalizeCmdline("a=1 a=2 -- --x --x  a=1")).toBe("a=2 -- --x --x a=1");
  });
  test("is idempotent", () => {
    const raw = 'BOOT_IMAGE=/vmlinuz x=1 "y=a b" x=2 console=ttyS0 -- init arg';
    const once = normalizeCmdline(raw);
    expect(normalizeCmdline(once)).toBe(once);
  });
  test("a real /proc/cmdline shape", () => {
    expect(normalizeCmdline("BOOT_IMAGE=/boot/vmlinuz-7.2.13 root=UUID=1234 ro quiet kho=on liveupdate=on\n")).toBe(
      "root=UUID=1234 ro quiet kho=on liveupdate=on",
    );
  });
});

describe("kstrtobool / liveupdate", () => {
  test("kstrtobool follows lib/kstrtox.c", () => {
    for (const t of ["1", "y", "Y", "yes", "t", "true", "on", "ON", "On", "e", "enable"]) expect(kstrtobool(t)).toBe(true);
    for (const f of ["0", "n", "no", "N", "f", "false", "off", "OFF", "of", "d", "disable"]) expect(kstrtobool(f)).toBe(false);
    for (const bad of [null, "", "o", "ox", "2", "maybe", "x"]) expect(kstrtobool(bad)).toBeUndefined();
  });
  test("hasLiveupdateOn", () => {
    expect(hasLiveupdateOn("liveupdate=on")).toBe(true);
    expect(hasLiveupdateOn("liveupdate=1 quiet")).toBe(true);
    expect(hasLiveupdateOn("liveupdate=Y")).toBe(true);
    expect(hasLiveupdateOn("liveupdate=true")).toBe(true);
    expect(hasLiveupdateOn('liveupdate="on"')).toBe(true);
    expect(hasLiveupdateOn("")).toBe(false);
    expect(hasLiveupdateOn("liveupdate=off")).toBe(false);
    expect(hasLiveupdateOn("liveupdate=on liveupdate=0")).toBe(false); // last wins
    expect(hasLiveupdateOn("liveupdate=0 liveupdate=on")).toBe(true);
  });
  test("a bare liveupdate does not turn LUO on (kstrtobool(NULL) = -EINVAL)", () => {
    expect(hasLiveupdateOn("liveupdate")).toBe(false);
    // and an invalid later value leaves the earlier valid one in force
    expect(hasLiveupdateOn("liveupdate=on liveupdate")).toBe(true);
    expect(hasLiveupdateOn("liveupdate=on liveupdate=maybe")).toBe(true);
  });
  test("liveupdate after -- is an init argument, not a kernel parameter", () => {
    expect(hasLiveupdateOn("quiet -- liveupdate=on")).toBe(false);
  });
  test("other parameter names do not count", () => {
    expect(hasLiveupdateOn("noliveupdate=on liveupdate_x=1 xliveupdate=on")).toBe(false);
  });
  test("earlyBool for kho", () => {
    expect(earlyBool("kho=on", "kho")).toBe(true);
    expect(earlyBool("kho=off", "kho")).toBe(false);
    expect(earlyBool("quiet", "kho")).toBeUndefined();
  });
});

describe("checkCmdline", () => {
  test("a good command line has no problems", () => {
    expect(checkCmdline("root=/dev/vda ro kho=on liveupdate=on")).toEqual([]);
    expect(analyzeCmdline("root=/dev/vda ro kho=on liveupdate=on")).toEqual({ errors: [], warnings: [] });
  });
  test("no liveupdate=on is refused, unless forced", () => {
    expect(checkCmdline("root=/dev/vda kho=on")).toEqual([expect.stringContaining("no liveupdate=on")]);
    expect(checkCmdline("root=/dev/vda kho=on liveupdate=off")).toEqual([expect.stringContaining("turns liveupdate off")]);
    expect(checkCmdline("root=/dev/vda kho=on", { force: true })).toEqual([]);
    const a = analyzeCmdline("root=/dev/vda kho=on", { force: true });
    expect(a.warnings).toEqual([expect.stringContaining("(forced)")]);
  });
  test("kho=off is refused unless forced; a missing kho= is a warning", () => {
    expect(checkCmdline("liveupdate=on kho=off")).toEqual([expect.stringContaining("kho=off")]);
    expect(checkCmdline("liveupdate=on kho=off", { force: true })).toEqual([]);
    const a = analyzeCmdline("liveupdate=on");
    expect(a.errors).toEqual([]);
    expect(a.warnings).toEqual([expect.stringContaining("CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT")]);
  });
  test("length and NUL errors cannot be forced", () => {
    const long = "kho=on liveupdate=on " + "x".repeat(3000);
    expect(checkCmdline(long, { force: true, maxLength: 2017 })).toEqual([expect.stringContaining("at most 2017")]);
    expect(checkCmdline("kho=on liveupdate=on a\0b", { force: true })).toEqual([expect.stringContaining("NUL")]);
  });
});

describe("kho warning", () => {
  test("a command line without kho= is warned about, unless KHO is known to be on by default", () => {
    expect(analyzeCmdline("liveupdate=on").warnings.join()).toContain("no kho=on");
    expect(analyzeCmdline("liveupdate=on", { khoOnByDefault: true }).warnings).toEqual([]);
  });
});
