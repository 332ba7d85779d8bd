// Moved to src/daemon/fake-kernel.ts; this re-export remains only for bench/profile.ts until it imports that.
export { FakeKernel } from "../../src/daemon/fake-kernel";
