// Protocol v1 messages (docs/protocol.md) in one import: requests and their parsing
// (requests.ts), replies and the fields of each (replies.ts), events (events.ts). Code that must
// not load valibot (the client library, luoctl, the connection) imports replies.ts or events.ts
// directly; requests.ts is the only part that builds schemas.
export * from "./requests";
export * from "./replies";
export * from "./events";
