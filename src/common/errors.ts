/**
 * What a client is told of an error: the reason for a refusal (4xx), which it can act on; for a failure on our
 * side (5xx) only a reference to the log entry, since such messages name server paths, hosts and internals.
 */
export function clientMessage(status: number, err: Error, requestId: string): string {
  return status >= 500 ? `internal error (reference ${requestId}: see the node's log)` : err.message;
}
