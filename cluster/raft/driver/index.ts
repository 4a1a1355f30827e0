/** The raft driver: runs the pure core (../core) against storage, network, timers and a state machine. */
export { RaftDriver, type Applied, type DriverStatus, type RaftDriverOptions } from "./raft-driver.js";
export type { RaftStorage, RaftStorageUpdate } from "./raft-storage.js";
export type { PeerTransport, SnapshotOutcome } from "./peer-transport.js";
export type { StateMachine } from "./state-machine.js";
export { IntervalTicker, type Ticker } from "./ticker.js";
export { nodeScheduler, type Cancel, type Scheduler } from "./scheduler.js";
export {
  Busy,
  InvalidArgument,
  NotLeader,
  RaftDriverError,
  Rejected,
  Stopped,
  Timeout,
  type RaftDriverErrorCode,
} from "./errors.js";
