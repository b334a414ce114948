package dev.entanglement;

import org.jspecify.annotations.Nullable;

/**
 * A task the application queued on the engine's executor (a publish, a delete, a decision, ...),
 * and whether the engine has started it: the engine remembers each thread's last one, which
 * decides whether the thread's next publish may join a waiting {@link PublishSlot}.
 */
interface ApplicationTask {
  /** Whether the engine has started the task; any thread. */
  boolean started();

  /** An application's task that records when the engine starts it. */
  final class Flagged implements Runnable, ApplicationTask {
    /** Dropped once run: a thread's last task outlives its run, its values need not. */
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
