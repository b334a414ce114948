package dev.entanglement.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import reactor.test.util.RaceTestUtils;

class SerialExecutorTest {

  private final List<Throwable> errors = new CopyOnWriteArrayList<>();
  private final SerialExecutor executor = new SerialExecutor(errors::add);

  @Test
  void runsTasksInSubmissionOrderOnTheSubmittingThreadWhenIdle() {
    List<String> log = new ArrayList<>();
    Thread caller = Thread.currentThread();
    for (int i = 0; i < 5; i++) {
      int n = i;
      executor.execute(
          () -> {
            assertSame(caller, Thread.currentThread());
            log.add("t" + n);
          });
      // idle executor: the task has run before execute returns
      assertEquals(n + 1, log.size());
    }
    assertEquals(List.of("t0", "t1", "t2", "t3", "t4"), log);
    assertTrue(errors.isEmpty());
  }

  @Test
  void isBusyWhileATaskRunsAndUntilTheTasksQueuedBehindItHaveRun() {
    List<Boolean> seen = new ArrayList<>();
    assertEquals(false, executor.isBusy());
    executor.execute(() -> {
      seen.add(executor.isBusy());
      executor.execute(() -> seen.add(executor.isBusy())); // queued behind this one
    });
    assertEquals(List.of(true, true), seen);
    assertEquals(false, executor.isBusy());
  }

  @Test
  void aTaskSubmittedWhileAnotherThreadRunsATaskOnlyWaitsAndRunsAfterItOnThatThread()
      throws InterruptedException {
    List<String> log = new CopyOnWriteArrayList<>();
    CountDownLatch running = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    Thread first =
        new Thread(
            () ->
                executor.execute(
                    () -> {
                      log.add("first");
                      running.countDown();
                      await(release);
                    }));
    first.start();
    assertTrue(running.await(10, TimeUnit.SECONDS));
    Thread caller = Thread.currentThread();
    executor.execute(() -> log.add(Thread.currentThread() == caller ? "second on caller" : "second"));
    assertEquals(List.of("first"), log, "the executor is busy: the second task only waits");
    release.countDown();
    first.join(10_000);
    assertEquals(List.of("first", "second"), log, "run after the first, by the first's thread");
    executor.execute(() -> log.add("third"));
    assertEquals(List.of("first", "second", "third"), log, "idle again: run at once");
    assertTrue(errors.isEmpty());
  }

  private static void await(CountDownLatch latch) {
    try {
      assertTrue(latch.await(10, TimeUnit.SECONDS));
    } catch (InterruptedException e) {
      throw new AssertionError(e);
    }
  }

  @Test
  void reentrantSubmissionRunsAfterTheCurrentTask_notNested() {
    List<String> log = new ArrayList<>();
    executor.execute(
        () -> {
          log.add("outer-start");
          executor.execute(
              () -> {
                log.add("inner-start");
                executor.execute(() -> log.add("innermost"));
                log.add("inner-end");
              });
          log.add("outer-after-submit");
          executor.execute(() -> log.add("second"));
          log.add("outer-end");
        });
    assertEquals(
        List.of(
            "outer-start",
            "outer-after-submit",
            "outer-end",
            "inner-start",
            "inner-end",
            "second",
            "innermost"),
        log);
    assertTrue(errors.isEmpty());
  }

  @Test
  void throwingTaskIsReportedAndNextTaskStillRuns() {
    List<String> log = new ArrayList<>();
    RuntimeException boom = new IllegalStateException("boom");
    executor.execute(
        () -> {
          executor.execute(
              () -> {
                throw boom;
              });
          executor.execute(() -> log.add("after-throw"));
          log.add("first");
        });
    assertEquals(List.of("first", "after-throw"), log);
    assertEquals(List.of(boom), errors);

    // the executor is idle and usable again, and a throwing first task is handled too
    Error err = new AssertionError("an Error is reported as well");
    executor.execute(
        () -> {
          throw err;
        });
    executor.execute(() -> log.add("later"));
    assertEquals(List.of("first", "after-throw", "later"), log);
    assertEquals(List.of(boom, err), errors);
  }

  @Test
  void concurrentSubmittersNeverOverlapAndEveryTaskRuns() {
    for (int iteration = 0; iteration < 200; iteration++) {
      Race race = new Race(100);
      race.run(executor);
      // every task submitted has run by the time every execute() call has returned
      race.assertRanAloneInOrder("iteration " + iteration);
    }
    assertTrue(errors.isEmpty(), () -> "errors: " + errors);
  }

  /**
   * Two threads racing to submit {@code perThread} tasks each; records whether tasks overlapped
   * and the order they ran in.
   */
  private static final class Race {
    final int perThread;
    final AtomicInteger inTask = new AtomicInteger();
    final AtomicInteger maxInTask = new AtomicInteger();
    final ConcurrentLinkedQueue<Integer> order = new ConcurrentLinkedQueue<>();
    final java.util.concurrent.CountDownLatch done;
    /** Counted down by the first turn end after the last task. */
    final java.util.concurrent.CountDownLatch endedAfterLast = new java.util.concurrent.CountDownLatch(1);

    /** A turn end that counts as a task for overlaps, and notes the turn end after the last task. */
    Runnable turnEnd() {
      return () -> {
        maxInTask.accumulateAndGet(inTask.incrementAndGet(), Math::max);
        if (done.getCount() == 0) {
          endedAfterLast.countDown();
        }
        inTask.decrementAndGet();
      };
    }

    Race(int perThread) {
      this.perThread = perThread;
      this.done = new java.util.concurrent.CountDownLatch(2 * perThread);
    }

    void run(java.util.concurrent.Executor executor) {
      run(executor, executor);
    }

    /** The first submitter submits through {@code first}, the second through {@code second}. */
    void run(java.util.concurrent.Executor first, java.util.concurrent.Executor second) {
      Runnable[] submitters = new Runnable[2];
      for (int t = 0; t < 2; t++) {
        final int submitter = t;
        final java.util.concurrent.Executor lane = t == 0 ? first : second;
        submitters[t] =
            () -> {
              for (int i = 0; i < perThread; i++) {
                final int id = submitter * perThread + i;
                lane.execute(
                    () -> {
                      maxInTask.accumulateAndGet(inTask.incrementAndGet(), Math::max);
                      order.add(id);
                      inTask.decrementAndGet();
                      done.countDown();
                    });
              }
            };
      }
      RaceTestUtils.race(submitters);
    }

    /** Every task ran, never two at once, each submitter's in its submission order. */
    void assertRanAloneInOrder(String context) {
      assertEquals(0, done.getCount(), context + ": not every task ran");
      assertEquals(1, maxInTask.get(), context + ": tasks overlapped");
      int[] next = {0, perThread};
      for (int id : order) {
        int submitter = id / perThread;
        assertEquals(next[submitter], id, context + ": out of order");
        next[submitter]++;
      }
    }
  }

  @Test
  void aSubmitterRunsAtMostABatchThenTheContinuationGoesOnInOrder() {
    java.util.ArrayDeque<Runnable> handedOff = new java.util.ArrayDeque<>();
    SerialExecutor batched = new SerialExecutor(3, handedOff::add, () -> {}, errors::add);
    List<Integer> log = new ArrayList<>();
    Thread caller = Thread.currentThread();
    batched.execute(
        () -> {
          for (int i = 1; i <= 7; i++) {
            int n = i;
            batched.execute(() -> log.add(n));
          }
          log.add(0);
        });
    assertEquals(List.of(0, 1, 2), log, "one batch on the submitter");
    assertEquals(1, handedOff.size());
    batched.execute(() -> log.add(8)); // behind: only queued
    assertEquals(List.of(0, 1, 2), log);
    while (!handedOff.isEmpty()) {
      handedOff.poll().run(); // the continuation, a batch per call
    }
    assertEquals(List.of(0, 1, 2, 3, 4, 5, 6, 7, 8), log);
    batched.execute(() -> log.add(9)); // idle again: runs on the caller at once
    assertEquals(10, log.size());
    assertSame(caller, Thread.currentThread());
    assertTrue(errors.isEmpty());
  }

  @Test
  void aBatchOfOneRunsOnlyTheIdleSubmittersOwnTaskThenHandsOff() {
    java.util.ArrayDeque<Runnable> handedOff = new java.util.ArrayDeque<>();
    SerialExecutor batched = new SerialExecutor(1, handedOff::add, () -> {}, errors::add);
    List<Integer> log = new ArrayList<>();
    batched.execute(
        () -> {
          for (int i = 1; i <= 3; i++) {
            int n = i;
            batched.execute(() -> log.add(n));
          }
          log.add(0);
        });
    assertEquals(List.of(0), log, "the task run at once is the whole batch");
    for (int turn = 1; turn <= 3; turn++) {
      assertEquals(1, handedOff.size());
      handedOff.poll().run();
      assertEquals(turn + 1, log.size(), "one task per turn of the continuation");
    }
    assertTrue(handedOff.isEmpty());
    assertEquals(List.of(0, 1, 2, 3), log);
    assertTrue(errors.isEmpty());
  }

  @Test
  void unitsATaskChargesCountAgainstTheBatch_onTheSubmitterAndTheContinuation() {
    java.util.ArrayDeque<Runnable> handedOff = new java.util.ArrayDeque<>();
    SerialExecutor batched = new SerialExecutor(4, handedOff::add, () -> {}, errors::add);
    List<Integer> log = new ArrayList<>();
    batched.execute(
        () -> {
          for (int i = 1; i <= 5; i++) {
            int n = i;
            batched.execute(() -> {
              log.add(n);
              batched.charge(n == 3 ? 2 : 0); // the work of three tasks
            });
          }
          log.add(0);
          batched.charge(1); // the work of two
        });
    // 2 units, then 1, then 3: the batch of 4 is spent after the second task queued.
    assertEquals(List.of(0, 1, 2), log, "the submitter's turn counts the units charged");
    assertEquals(1, handedOff.size());
    handedOff.poll().run(); // 3 units, then 4 reaches the batch of 4 with 5 waiting
    assertEquals(List.of(0, 1, 2, 3, 4), log);
    assertEquals(1, handedOff.size(), "the continuation's turn counts them too");
    handedOff.poll().run();
    assertEquals(List.of(0, 1, 2, 3, 4, 5), log);
    assertTrue(handedOff.isEmpty());
    assertThrows(IllegalArgumentException.class, () -> batched.charge(-1));
    assertTrue(errors.isEmpty());
  }

  @Test
  void aRejectedHandOffIsReportedAndTheTurnGoesOnWhereItIs() {
    RuntimeException rejected = new java.util.concurrent.RejectedExecutionException("shut down");
    List<Integer> log = new ArrayList<>();
    SerialExecutor batched =
        new SerialExecutor(1, task -> { log.add(-1); throw rejected; }, () -> {}, errors::add);
    batched.execute(() -> {
      batched.execute(() -> log.add(2));
      batched.execute(() -> log.add(3));
      log.add(1);
    });
    assertEquals(List.of(1, -1, 2, 3), log, "handed off after the first task, refused once");
    assertEquals(List.of(rejected), errors);
    batched.execute(() -> log.add(4));
    assertEquals(List.of(1, -1, 2, 3, 4), log);
  }

  @Test
  void concurrentSubmittersWithHandOffsNeverOverlapAndEveryTaskRuns() throws InterruptedException {
    racesWithHandOffs(false);
  }

  @Test
  void anUrgentTaskRunsAheadOfWaitingOrdinaryOnesButNeverTwoInARowWhileOneWaits() {
    List<String> log = new ArrayList<>();
    executor.execute(() -> {
      for (int i = 1; i <= 3; i++) {
        int n = i;
        executor.execute(() -> log.add("o" + n));
      }
      for (int i = 1; i <= 4; i++) {
        int n = i;
        executor.executeUrgent(() -> log.add("u" + n));
      }
      log.add("first");
    });
    assertEquals(List.of("first", "u1", "o1", "u2", "o2", "u3", "o3", "u4"), log);
    executor.executeUrgent(() -> log.add("idle"));
    assertEquals("idle", log.get(log.size() - 1), "on an idle executor an urgent task runs at once");
    log.clear();
    executor.executeUrgent(() -> {
      executor.execute(() -> log.add("o"));
      executor.executeUrgent(() -> log.add("u"));
      log.add("urgent at once");
    });
    assertEquals(List.of("urgent at once", "o", "u"), log, "an urgent task run at once counts as the last");
    assertTrue(errors.isEmpty());
  }

  @Test
  void aBacklogOfOrdinaryTasksDelaysAnUrgentOneByAtMostOneTask() {
    List<String> log = new ArrayList<>();
    executor.execute(() -> {
      for (int i = 1; i <= 100; i++) {
        int n = i;
        executor.execute(() -> {
          log.add("o" + n);
          if (n == 50) {
            executor.executeUrgent(() -> log.add("urgent"));
          }
        });
      }
    });
    assertEquals("o50", log.get(49));
    assertEquals("urgent", log.get(50), "submitted during o50, run right after it");
    assertEquals(101, log.size());
    assertTrue(errors.isEmpty());
  }

  @Test
  void theTurnEndRunsAfterATaskRunAtOnceWhenTheLanesEmptyAndBeforeEachHandOff() {
    java.util.ArrayDeque<Runnable> handedOff = new java.util.ArrayDeque<>();
    List<String> log = new ArrayList<>();
    SerialExecutor[] ref = new SerialExecutor[1];
    SerialExecutor batched =
        new SerialExecutor(3, handedOff::add, () -> log.add("end" + (ref[0].hasWaiting() ? "+" : "")), errors::add);
    ref[0] = batched;
    batched.execute(() -> log.add("alone"));
    assertEquals(List.of("alone", "end"), log, "a task run at once on an idle executor ends a turn");
    log.clear();
    batched.execute(() -> {
      for (int i = 1; i <= 4; i++) {
        int n = i;
        batched.execute(() -> log.add("t" + n + (batched.hasWaiting() ? "+" : "")));
      }
      log.add("t0" + (batched.hasWaiting() ? "+" : ""));
    });
    assertEquals(List.of("t0+", "end+", "t1+", "t2+", "end+"), log,
        "after the task run at once, then before the hand-off, with tasks still waiting");
    log.clear();
    handedOff.poll().run();
    assertEquals(List.of("t3+", "t4", "end"), log, "the continuation's turn ends when the lanes empty");
    assertTrue(handedOff.isEmpty());
    assertTrue(errors.isEmpty());
  }

  @Test
  void whatTheTurnEndSubmitsRunsInTheSameTurn() {
    List<String> log = new ArrayList<>();
    SerialExecutor[] ref = new SerialExecutor[1];
    AtomicInteger ends = new AtomicInteger();
    SerialExecutor serial = new SerialExecutor(256, Runnable::run, () -> {
      log.add("end");
      if (ends.incrementAndGet() == 2) {
        ref[0].executeUrgent(() -> log.add("from the end"));
      }
    }, errors::add);
    ref[0] = serial;
    serial.execute(() -> {
      serial.execute(() -> log.add("queued"));
      log.add("first");
    });
    assertEquals(List.of("first", "end", "queued", "end", "from the end", "end"), log);
    assertTrue(errors.isEmpty());
  }

  @Test
  void aThrowingTurnEndIsReportedAndTheExecutorGoesOn() {
    RuntimeException boom = new IllegalStateException("boom");
    List<String> log = new ArrayList<>();
    SerialExecutor serial = new SerialExecutor(256, Runnable::run, () -> { throw boom; }, errors::add);
    serial.execute(() -> {
      serial.execute(() -> log.add("second"));
      log.add("first");
    });
    serial.execute(() -> log.add("third"));
    assertEquals(List.of("first", "second", "third"), log);
    assertTrue(errors.size() >= 3 && errors.stream().allMatch(e -> e == boom), () -> "errors: " + errors);
  }

  @Test
  void concurrentSubmittersToBothLanesWithHandOffsNeverOverlapAndEveryTaskRuns()
      throws InterruptedException {
    racesWithHandOffs(true);
  }

  /**
   * Races two submitters (the second on the urgent lane if {@code bothLanes}) on an executor that
   * hands off every 4 tasks; turn ends count as tasks for overlaps, and one must follow the last.
   */
  private void racesWithHandOffs(boolean bothLanes) throws InterruptedException {
    java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newSingleThreadExecutor();
    try {
      for (int iteration = 0; iteration < 50; iteration++) {
        Race race = new Race(200);
        SerialExecutor serial = new SerialExecutor(4, pool, race.turnEnd(), errors::add);
        race.run(serial, bothLanes ? serial::executeUrgent : serial);
        assertTrue(race.done.await(10, java.util.concurrent.TimeUnit.SECONDS), "iteration " + iteration);
        assertTrue(race.endedAfterLast.await(10, java.util.concurrent.TimeUnit.SECONDS),
            "iteration " + iteration + ": a turn end follows the last task");
        race.assertRanAloneInOrder("iteration " + iteration + " (turn ends included)");
      }
    } finally {
      pool.shutdownNow();
    }
    assertTrue(errors.isEmpty(), () -> "errors: " + errors);
  }
}
