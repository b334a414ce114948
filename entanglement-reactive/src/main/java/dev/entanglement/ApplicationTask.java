package dev.entanglement;

import org.jspecify.annotations.Nullable;

/**
 * A task the application queued on the engine's executor (a publish, a delete, a decision, ...),
 * and whether the engine has started it: one that had not once queued may lie behind a waiting
 * {@link PublishSlot}, which the queueing thread then keeps from being joined (see its ordering
 * rule).
 */
interface ApplicationTask {
  /** Whether the engine has started the task; any thread. */
  boolean started();

  /** An application's task that records when the engine starts it. */
  final class Flagged implements Runnable, ApplicationTask {
    /** Dropped once run: a thread may keep the task (Engine.notToOvertake), not its values. */
    private @Nullable Runnable task;
    private volatile boolean started;

    Flagged(Runnable task) {
      this.task = task;
    }

    @Override
    public void run() {
      started = true;
      Runnable t = task;
      task = null;
      if (t != null) {
        t.run();
      }
    }

    @Override
    public boolean started() {
      return started;
    }
  }
}
