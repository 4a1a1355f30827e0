/**
 * Sees every call the server answers, whatever answered it (call admission, a handler, grpc-js
 * itself for a message too large): its service, method, final status and how long it took from
 * its headers to its status. A grpc-js server interceptor, outermost, so that it observes refusals
 * made by the interceptors inside it. The peer feeds metrics and the refused-call log from here
 * (start-peer.ts); the server knows neither.
 */
import * as grpc from "@grpc/grpc-js";
import { statusName } from "./grpc-status.js";

export interface ObservedCall {
  /** "lockbox.v1.KeyService". */
  service: string;
  /** "GetKey". */
  method: string;
  /** Status name: "OK", "NOT_FOUND", ... */
  status: string;
  seconds: number;
  /** Remote address without port ("" when unknown). */
  source: string;
}

/** `observe` runs once per call, when its status is sent (or when the client cancels it: CANCELLED). */
export function callObserver(observe: (call: ObservedCall) => void): grpc.ServerInterceptor {
  return (method, call) => {
    const started = process.hrtime.bigint();
    const slash = method.path.lastIndexOf("/");
    const service = method.path.slice(1, slash);
    const name = method.path.slice(slash + 1);
    let done = false;
    const finish = (code: grpc.status): void => {
      if (done) return;
      done = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const source = call.getConnectionInfo().remoteAddress ?? "";
      try {
        observe({ service, method: name, status: statusName(code), seconds, source });
      } catch {
        // An observer's failure must not change the call's answer.
      }
    };
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({ onCancel: () => finish(grpc.status.CANCELLED) });
      },
      sendStatus(status, next) {
        finish(status.code);
        next(status);
      },
    });
  };
}
