package dev.entanglement.internal;

import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * Runs tasks one at a time, in submission order. A thread that submits while the executor is idle
 * runs the tasks itself (a trampoline), but at most {@code batch} of them: if more are waiting it
 * hands the rest to {@code continuation}, which runs them a batch per call. So no submitter — an
 * event loop delivering frames, an application thread publishing — is held for longer than one
 * batch however far behind the executor is, and the executor itself never blocks.
 *
 * <p>State machine: {@code wip == 0} idle; {@code wip > 0} one thread is draining (a submitter, or
 * the continuation) and {@code wip} counts submissions not yet accounted for. Only the thread that
 * moves {@code wip} from 0 to 1 starts a drain. A submitter that finds the executor idle claims it
 * that way before enqueueing and runs its task without a queue node: at {@code wip == 0} a task can
 * be queued only by a submission still in progress, which is concurrent with this one and so
 * unordered with it. While a drain is handed off {@code wip} stays above 0, so submitters only
 * enqueue. The count of submissions a drain has taken on ({@code missed}) is passed with the
 * hand-off. A task that throws is reported to the error handler and does not stop the drain.
 */
public final class SerialExecutor implements Executor {
  /** Tasks a submitter runs before it hands the rest off: 256. */
  public static final int DEFAULT_BATCH = 256;

  private final Queue<Runnable> tasks = new ConcurrentLinkedQueue<>();
  private final AtomicInteger wip = new AtomicInteger();
  private final int batch;
  private final Executor continuation;
  private final Consumer<Throwable> onError;

  /** Drains on the submitting thread only, without bound (a continuation is never needed). */
  public SerialExecutor(Consumer<Throwable> onError) {
    this(Integer.MAX_VALUE, Runnable::run, onError);
  }

  /**
   * @param batch tasks run per turn, on a submitter or on the continuation
   * @param continuation where a drain goes on once a turn has run {@code batch} tasks; if it
   *     rejects the hand-off, the error is reported and the turn goes on where it is
   */
  public SerialExecutor(int batch, Executor continuation, Consumer<Throwable> onError) {
    if (batch < 1) {
      throw new IllegalArgumentException("batch must be positive: " + batch);
    }
    this.batch = batch;
    this.continuation = continuation;
    this.onError = onError;
  }

  @Override
  public void execute(Runnable task) {
    if (wip.get() == 0 && wip.compareAndSet(0, 1)) {
      // Idle: the task runs at once and is never enqueued (see the state machine above).
      run(task);
      int missed = wip.decrementAndGet();
      if (missed != 0) {
        drain(missed, 1);
      }
      return;
    }
    tasks.offer(task);
    if (wip.getAndIncrement() == 0) {
      drain(1, 0);
    }
  }

  private void run(Runnable task) {
    try {
      task.run();
    } catch (Throwable t) {
      onError.accept(t);
    }
  }

  /**
   * Runs one turn; {@code missed} submissions are already counted as taken on, and {@code ran}
   * tasks of this turn have run. Before each task it checks the batch, so a turn begun by a task
   * run at once ({@code ran == 1}) is bounded too.
   */
  private void drain(int missed, int ran) {
    for (;;) {
      for (;;) {
        if (ran >= batch && !tasks.isEmpty()) {
          if (handedOff(missed)) {
            return;
          }
          ran = Integer.MIN_VALUE; // the continuation refused: finish the turn here
        }
        Runnable r = tasks.poll();
        if (r == null) {
          break;
        }
        run(r);
        ran++;
      }
      missed = wip.addAndGet(-missed);
      if (missed == 0) {
        return;
      }
    }
  }

  /** Hands the rest of the turn to the continuation; false (reported) if it refuses. */
  private boolean handedOff(int missed) {
    try {
      continuation.execute(() -> drain(missed, 0));
      return true;
    } catch (RuntimeException rejected) { // a shut-down continuation
      onError.accept(rejected);
      return false;
    }
  }
}
