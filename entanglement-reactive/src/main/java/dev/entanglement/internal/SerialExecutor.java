package dev.entanglement.internal;

import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * Runs tasks one at a time, in submission order, on whichever thread submits while the executor is
 * idle (a trampoline). It never blocks and owns no thread, so it is safe to call from event loops.
 *
 * <p>State machine: {@code wip == 0} idle; {@code wip > 0} one thread is draining and {@code wip}
 * counts submissions it has not yet accounted for. Only the thread that moves {@code wip} from 0 to
 * 1 drains; every task submitted meanwhile runs before that thread leaves {@link #execute}. A task
 * that throws is reported to the error handler and does not stop the drain.
 */
public final class SerialExecutor implements Executor {
  private final Queue<Runnable> tasks = new ConcurrentLinkedQueue<>();
  private final AtomicInteger wip = new AtomicInteger();
  private final Consumer<Throwable> onError;

  public SerialExecutor(Consumer<Throwable> onError) {
    this.onError = onError;
  }

  @Override
  public void execute(Runnable task) {
    tasks.offer(task);
    if (wip.getAndIncrement() != 0) {
      return;
    }
    int missed = 1;
    do {
      Runnable r;
      while ((r = tasks.poll()) != null) {
        try {
          r.run();
        } catch (Throwable t) {
          onError.accept(t);
        }
      }
      missed = wip.addAndGet(-missed);
    } while (missed != 0);
  }
}
