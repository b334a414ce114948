package dev.entanglement.r2dbc;

import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The threads every {@link R2dbcStateStore} runs its work on: daemons, made as needed and ended
 * after a minute idle (each store runs one operation at a time). A class of its own so that handing
 * a task over may be allowed to wait a moment under BlockHound (see {@link
 * dev.entanglement.r2dbc.internal.StoreThreadsHandOff}): when no thread is idle, {@link #execute}
 * takes the pool's lock to add one, and tasks are handed over from Reactor's non-blocking threads
 * (the time limit's timer, the claim's renewal tick).
 */
final class StoreThreads extends ThreadPoolExecutor {
  private static final AtomicInteger MADE = new AtomicInteger();

  StoreThreads() {
    super(0, Integer.MAX_VALUE, 60, TimeUnit.SECONDS, new SynchronousQueue<>(), r -> {
      Thread t = new Thread(r, "entanglement-store-" + MADE.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
  }

  @Override
  public void execute(Runnable task) {
    super.execute(task);
  }
}
