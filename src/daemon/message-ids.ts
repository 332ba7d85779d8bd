// The journal MESSAGE_IDs of luod's milestones and of its audit records: one fixed 128-bit id per
// kind of event, so `journalctl -u luod MESSAGE_ID=…` finds every one of them whatever the
// message's wording (docs/daemon.md#logs-and-the-audit-trail has the same table). Generated once
// (uuid4), never changed: a changed id breaks every query and alert written against it.
export const MESSAGE_ID = {
  /** luod listens (every start). */
  started: "a79cbe10787f4b50abeadbfc4e1f7287",
  /** A KEXEC (or dry run) started an update: the clients are asked to get ready. */
  updateStarted: "3001fb2e8c534e3dab9b621f4968c96f",
  /** An update ended without a jump: FAIL, deadline, lost client, ABORT, EVICT, a failed jump. */
  updateAborted: "a1d8011c04bd4b4f86e1535f40c06556",
  /** A dry run went through to the preserved manifest and ended there, as asked. */
  dryRunFinished: "e2127ea0bc3e4c2d8c06dab86bfb6cf6",
  /** Every client READY, the manifest preserved: luod jumps (reboot(KEXEC), or through systemd). */
  jumping: "5a824a8786fe46de9e554a6d30d7e162",
  /** systemd accepted `systemctl kexec`: its fd store carries the sessions from here. */
  kexecAccepted: "b5acbb919d184a24a11b8cc0f3561e68",
  /** After a live-update boot: the manifest read, the sessions it lists waiting for their clients. */
  restored: "4680465ffa10415bb81f776c715e306e",
  /** A client claimed its restored session. */
  sessionClaimed: "b6e75f82de5d4d878c2821a365a2a1ea",
  /** A client said FINISHED: luod let go of its restored session. */
  sessionFinished: "99dbebcc103c4f9c9eead4170f35dea4",
  /** An administrator discarded an unclaimed restored session. */
  sessionDiscarded: "7feafe939fac4ae887814ea5891ee69f",
  /** An administrator evicted a client. */
  clientEvicted: "3715de597b1d4d6caeb348aa6b0d368c",
  /** The next kernel is loaded (LOAD). */
  kernelLoaded: "17f9fecfb8134cc1b7f710c7976e4e28",
  /** The next kernel is unloaded (UNLOAD, an aborted update in systemd mode, luod starting or stopping). */
  kernelUnloaded: "3cf2febf338c4f21af28900093b27e58",
  /** An audit record: an admin request that changes something, who sent it, its outcome. */
  audit: "74d708179eb04cc1b7b26565d6249021",
} as const;

export type MessageKind = keyof typeof MESSAGE_ID;
