// Defaults and value limits of the protocol that luoctl uses before it sends anything; here rather
// than in messages.ts so that luoctl's start does not build the protocol's valibot schemas.

/** The default socket path of the transport (docs/protocol.md "Transport"): luod's, luoctl's, clients'. */
export const DEFAULT_SOCKET = "/run/luod/liveupdate.sock";

export const KEXEC_TIMEOUT_MIN_MS = 100;
export const KEXEC_TIMEOUT_MAX_MS = 3_600_000;
/** The READY deadline luod applies to a KEXEC that gives no `timeout_ms`. */
export const KEXEC_TIMEOUT_DEFAULT_MS = 30_000;
