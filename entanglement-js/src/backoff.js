// Reconnection delays.

/** Defaults for a browser: the first retry within 250 ms, never more than 10 s apart. */
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 250, maxMs: 10_000 });

/**
 * The delay before reconnection attempt number `failures` (0 after the first failure): exponential
 * backoff with full jitter, a uniformly random delay in [0, min(maxMs, initialMs * 2^failures)).
 * `random` returns a number in [0, 1), like Math.random.
 */
export function backoffDelay(failures, { initialMs, maxMs }, random) {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(failures, 30));
  return Math.floor(random() * ceiling);
}
