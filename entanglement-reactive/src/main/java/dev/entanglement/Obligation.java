package dev.entanglement;

/**
 * Someone waiting for the answer to a request: a local caller, or the neighbour a relayed request
 * came from. Each obligation ends exactly once, explicitly: committed, rejected or failed (timeout,
 * no response, link lost). The engine's deadline sweep bounds its life, so none can leak.
 */
abstract class Obligation {
  private boolean done;
  /** When the engine's deadline sweep fails it, in the scheduler's nanoseconds; set as it starts. */
  long deadline;

  /** True once ended; confined to the engine's serial executor. */
  final boolean isDone() {
    return done;
  }

  /** Marks the obligation ended; returns false if it already was. */
  final boolean finish() {
    if (done) {
      return false;
    }
    done = true;
    return true;
  }

  /**
   * Called just before the state that answers this obligation takes effect at this node (before it
   * is flooded); {@link #committed} follows.
   */
  void willAnswer(StoredState state) {}

  abstract void committed(StoredState state);

  abstract void rejected(ErrorCode code, String message);

  abstract void failed(ErrorCode code, String message);
}
