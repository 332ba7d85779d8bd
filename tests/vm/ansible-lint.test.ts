// The Ansible role and playbook (deploy/ansible/, docs/fleet.md) pass ansible-lint with the
// repository's config (.ansible-lint: offline, nothing reaches Galaxy) and ansible-playbook's
// syntax check, both from Debian sid's Ansible (scripts/vm/ansible/controller.sh) — the controller
// that runs the role in tests/vm/fleet.test.ts. Here with the VM tests because it needs the same
// root-built controller; LUO_SKIP_SYSTEMD_VM=1 skips it with them.
import { expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { systemdVmAvailable } from "./systemd-vm";

const REPO = resolve(import.meta.dir, "../..");
const ANSIBLE_DIR = join(REPO, "deploy/ansible");

function inController(cmd: string[]): { rc: number; out: string } {
  const r = Bun.spawnSync([join(REPO, "scripts/vm/ansible/run.sh"), ...cmd], { cwd: ANSIBLE_DIR, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  return { rc: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

test.skipIf(!systemdVmAvailable())("ansible-lint passes on the role and rollout.yml, offline", () => {
  const r = inController(["ansible-lint", "--offline", "--nocolor"]);
  if (r.rc !== 0) console.error(r.out);
  expect(r.rc).toBe(0);
}, 300_000);

test.skipIf(!systemdVmAvailable())("rollout.yml passes ansible-playbook's syntax check", () => {
  const r = inController(["ansible-playbook", "--syntax-check", "-i", "inventory.example.yml", "rollout.yml"]);
  if (r.rc !== 0) console.error(r.out);
  expect(r.rc).toBe(0);
}, 120_000);
