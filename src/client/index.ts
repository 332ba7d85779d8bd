// The luod client library: `import { LuoClient, preserveMemfd, … } from "luo-agent/src/client"`.
export {
  LuoClient, DEFAULT_SOCKET,
  type Message, type Received, type EventListener, type ConnectOptions, type RequestOptions, type WaitOptions,
  type LoadOptions, type KexecOptions, type KexecResult, type Preservation, type Tag,
  type StatusReply, type ListReply, type LoadReply, type CheckReply, type AbortReply, type ClientInfo, type RestoredInfo, type UpdateInfo,
} from "./client";
export { LuoError, LuoConnectError, LuoConnectionClosed, LuoProtocolError, LuoTimeoutError } from "./errors";
export { OneShotClient } from "./oneshot";
export { LuoRequests } from "./requests";
export {
  preserveMemfd, retrieveMemfd, finishSession, sessionName, createMemfd,
  closeFd, dupFd, fileSize, readFull, writeFull, ftruncate, addSeals, getSeals,
  F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, SysError,
} from "./memfd";
