package dev.entanglement.internal;

import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.jspecify.annotations.Nullable;

/**
 * Runs tasks one at a time, each lane (below) in submission order. A thread that submits while the
 * executor is idle runs the tasks itself (a trampoline), but at most {@code batch} of them: if more
 * are waiting it hands the rest to {@code continuation}, which runs them a batch per call. So no
 * submitter — an event loop delivering frames, an application thread publishing — is held for
 * longer than one batch however far behind the executor is, and the executor itself never blocks.
 *
 * <p>State machine: {@code wip == 0} idle; {@code wip > 0} one thread is draining (a submitter, or
 * the continuation) and {@code wip} counts submissions not yet accounted for. Only the thread that
 * moves {@code wip} from 0 to 1 starts a drain. A submitter that finds the executor idle claims it
 * that way before enqueueing and runs its task without a queue node: at {@code wip == 0} a task can
 * be queued only by a submission still in progress, which is concurrent with this one and so
 * unordered with it. While a drain is handed off {@code wip} stays above 0, so submitters only
 * enqueue. The count of submissions a drain has taken on ({@code missed}) is passed with the
 * hand-off. A task that throws is reported to the error handler and does not stop the drain.
 *
 * <p>Two lanes. Tasks given to {@link #executeUrgent} run in their own submission order, ahead of
 * ordinary tasks waiting at the time, but never two in a row while an ordinary task waits: a
 * backlog of ordinary tasks delays an urgent one by at most one task, and a stream of urgent ones
 * takes at most every other task of a drain. The lanes are unordered with each other; {@code wip}
 * counts submissions to both.
 *
 * <p>Turn ends. {@code turnEnd} runs, in the executor's confinement like a task, whenever a turn
 * ends: after a task run at once on an idle executor, when a drain finds both lanes empty, and
 * before a drain hands off. A task can therefore leave work for the end of its turn while {@link
 * #hasWaiting} says more tasks are queued behind it, and that work is done before the executor is
 * next idle or changes thread.
 */
public final class SerialExecutor implements Executor {
  /** Tasks a submitter runs before it hands the rest off: 256. */
  public static final int DEFAULT_BATCH = 256;

  private final Queue<Runnable> tasks = new ConcurrentLinkedQueue<>();
  private final Queue<Runnable> urgent = new ConcurrentLinkedQueue<>();
  private final AtomicInteger wip = new AtomicInteger();
  private final int batch;
  private final Executor continuation;
  private final Runnable turnEnd;
  private final Consumer<Throwable> onError;
  /**
   * Whether the task run last came from the urgent lane; touched only by the thread that holds
   * {@code wip} above 0, so {@code wip} orders it between threads.
   */
  private boolean lastUrgent;
  /**
   * Units of work the running task declared beyond itself ({@link #charge}); touched only by the
   * thread that holds {@code wip} above 0, and taken into the turn's count after each task.
   */
  private int charged;

  /** Drains on the submitting thread only, without bound (a continuation is never needed). */
  public SerialExecutor(Consumer<Throwable> onError) {
    this(Integer.MAX_VALUE, Runnable::run, () -> {}, onError);
  }

  /**
   * @param batch tasks run per turn, on a submitter or on the continuation
   * @param continuation where a drain goes on once a turn has run {@code batch} tasks; if it
   *     rejects the hand-off, the error is reported and the turn goes on where it is
   * @param turnEnd run at the end of every turn (see above); it may submit tasks
   */
  public SerialExecutor(
      int batch, Executor continuation, Runnable turnEnd, Consumer<Throwable> onError) {
    if (batch < 1) {
      throw new IllegalArgumentException("batch must be positive: " + batch);
    }
    this.batch = batch;
    this.continuation = continuation;
    this.turnEnd = turnEnd;
    this.onError = onError;
  }

  @Override
  public void execute(Runnable task) {
    submit(task, tasks);
  }

  /**
   * Runs {@code task} ahead of the ordinary tasks waiting now (see the lanes above); on an idle
   * executor, at once on this thread, as {@link #execute} does.
   */
  public void executeUrgent(Runnable task) {
    submit(task, urgent);
  }

  /**
   * Whether tasks are queued behind the one running. Meaningful only from a task or {@code
   * turnEnd}: it then means that this turn will go on, so work left for its end is not delayed by
   * an idle executor.
   */
  public boolean hasWaiting() {
    return !tasks.isEmpty() || !urgent.isEmpty();
  }

  /**
   * Counts {@code units} more tasks against the running turn's batch: a task that did the work of
   * many (published a run of values) lets its turn hand off as soon as that many tasks would have.
   * Only from a task of this executor.
   */
  public void charge(int units) {
    if (units < 0) {
      throw new IllegalArgumentException("units must not be negative: " + units);
    }
    charged += units;
  }

  /**
   * Whether a task submitted now would be queued rather than run at once: some thread is running
   * the executor's tasks. Any thread; by the time the caller acts on it, it may have changed.
   */
  public boolean isBusy() {
    return wip.get() != 0;
  }

  private void submit(Runnable task, Queue<Runnable> lane) {
    if (wip.get() == 0 && wip.compareAndSet(0, 1)) {
      // Idle: the task runs at once and is never enqueued (see the state machine above).
      lastUrgent = lane == urgent;
      run(task);
      int ran = plusUnits(1);
      run(turnEnd);
      int missed = wip.decrementAndGet();
      if (missed != 0) {
        drain(missed, ran);
      }
      return;
    }
    lane.offer(task);
    if (wip.getAndIncrement() == 0) {
      lastUrgent = false; // a drain from idle starts fair
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

  /** {@code ran} plus the units charged since, which it takes; saturates at the int range. */
  private int plusUnits(int ran) {
    long sum = (long) ran + charged;
    charged = 0;
    return (int) Math.min(sum, Integer.MAX_VALUE);
  }

  /** The next task: urgent first, unless the last one was urgent and an ordinary one waits. */
  private @Nullable Runnable next() {
    Runnable r;
    if (!lastUrgent && (r = urgent.poll()) != null) {
      lastUrgent = true;
      return r;
    }
    if ((r = tasks.poll()) != null) {
      lastUrgent = false;
      return r;
    }
    r = urgent.poll();
    lastUrgent = r != null;
    return r;
  }

  /**
   * Runs one turn; {@code missed} submissions are already counted as taken on, and {@code ran}
   * tasks of this turn have run. Before each task it checks the batch, so a turn begun by a task
   * run at once ({@code ran == 1}) is bounded too.
   */
  private void drain(int missed, int ran) {
    boolean ranSinceEnd = false; // a task run at once was followed by its turn end already
    for (;;) {
      for (;;) {
        if (ran >= batch && hasWaiting()) {
          run(turnEnd);
          if (handedOff(missed)) {
            return;
          }
          ran = Integer.MIN_VALUE; // the continuation refused: finish the turn here
        }
        Runnable r = next();
        if (r == null && ranSinceEnd) {
          ranSinceEnd = false;
          run(turnEnd); // may submit: what it submits runs in this turn
          r = next();
        }
        if (r == null) {
          break;
        }
        run(r);
        ran = plusUnits(ran + 1);
        ranSinceEnd = true;
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
