// Value limits of request fields that luoctl checks before it sends anything; here rather than in
// messages.ts so that luoctl's start does not build the protocol's valibot schemas.
export const KEXEC_TIMEOUT_MIN_MS = 100;
export const KEXEC_TIMEOUT_MAX_MS = 3_600_000;
export const KEXEC_TIMEOUT_DEFAULT_MS = 30_000;
