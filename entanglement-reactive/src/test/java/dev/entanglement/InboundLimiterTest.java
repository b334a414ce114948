package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import dev.entanglement.internal.SerialExecutor;
import org.jspecify.annotations.Nullable;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;
import reactor.core.scheduler.Scheduler;
import reactor.test.scheduler.VirtualTimeScheduler;

/** The token bucket that paces a link's requests, on virtual time. */
class InboundLimiterTest {

  /**
   * Virtual time whose one-shot timers are recorded, so a test can tell whether any is still
   * pending (neither run nor disposed). Periodic tasks are not recorded.
   */
  static final class RecordingScheduler implements Scheduler {
    final VirtualTimeScheduler clock;
    private final List<Timer> timers = new ArrayList<>();

    private static final class Timer {
      boolean ran;
      Disposable task;
    }

    RecordingScheduler(VirtualTimeScheduler clock) {
      this.clock = clock;
    }

    @Override
    public Disposable schedule(Runnable task) {
      return clock.schedule(task);
    }

    @Override
    public Disposable schedule(Runnable task, long delay, TimeUnit unit) {
      Timer t = new Timer();
      t.task = clock.schedule(() -> {
        t.ran = true;
        task.run();
      }, delay, unit);
      synchronized (timers) {
        timers.add(t);
      }
      return t.task;
    }

    @Override
    public Disposable schedulePeriodically(Runnable task, long delay, long period, TimeUnit unit) {
      return clock.schedulePeriodically(task, delay, period, unit);
    }

    @Override
    public long now(TimeUnit unit) {
      return clock.now(unit);
    }

    @Override
    public Worker createWorker() {
      return clock.createWorker();
    }

    /** One-shot timers scheduled and neither run nor disposed. */
    long pending() {
      synchronized (timers) {
        return timers.stream().filter(t -> !t.ran && !t.task.isDisposed()).count();
      }
    }
  }

  /**
   * Counts what the limiter requests. A flooding peer delivers each requested frame at once,
   * through the serial executor as the engine does (so the limiter is never re-entered).
   */
  private final class Upstream implements Subscription {
    final boolean flooding;
    /** Whether every frame is followed by a marker, as a link that marks a frame per read. */
    final boolean marking;
    @Nullable InboundLimiter limiter;
    long requested;
    boolean cancelled;
    /** Frames delivered; markers are not counted. */
    long delivered;
    private boolean markerNext;

    Upstream(boolean flooding) {
      this(flooding, false);
    }

    Upstream(boolean flooding, boolean marking) {
      this.flooding = flooding;
      this.marking = marking;
    }

    @Override
    public void request(long n) {
      requested += n;
      for (long i = 0; flooding && i < n; i++) {
        if (markerNext) {
          markerNext = false;
          serial.execute(limiter::receivedMarker);
        } else {
          markerNext = marking;
          delivered++;
          serial.execute(limiter::received);
        }
      }
    }

    @Override
    public void cancel() {
      cancelled = true;
    }
  }

  private final RecordingScheduler scheduler = new RecordingScheduler(VirtualTimeScheduler.create());
  private final SerialExecutor serial = new SerialExecutor(e -> { throw new AssertionError(e); });

  /** A started limiter reading from {@code up}. */
  private InboundLimiter start(int rate, int burst, int window, Upstream up) {
    InboundLimiter l = new InboundLimiter(rate, burst, window, scheduler, serial);
    up.limiter = l;
    serial.execute(() -> l.start(up));
    return l;
  }

  @Test
  @DisplayName("without a rate: the window is requested at start and topped up each time half of it arrived")
  void windowOnly() {
    Upstream up = new Upstream(false);
    InboundLimiter l = start(0, 0, 256, up);
    assertEquals(256, up.requested);
    for (int i = 1; i <= 10_000; i++) {
      serial.execute(l::received);
      // Never more than the window outstanding, never less than half of it.
      assertEquals(256 + (i / 128) * 128, up.requested);
      assertTrue(up.requested - i <= 256 && up.requested - i > 128, "outstanding at frame " + i);
    }
    assertEquals(0, l.pauses());
    assertEquals(0, scheduler.pending());
  }

  @ParameterizedTest(name = "rate {0}/s, burst {1}, window {2}, a marker after each frame: {3}")
  @CsvSource({"100, 20, 256, false", "1000, 5000, 256, false", "100000, 10000, 256, false", "7, 1, 256, false",
      "50000, 3, 2, false", "100, 20, 256, true", "100000, 10000, 256, true", "7, 1, 256, true", "50000, 3, 2, true"})
  @DisplayName("a flood gets at most burst + rate × t frames by time t, and keeps getting the rate; markers are not counted")
  void floodIsPaced(int rate, int burst, int window, boolean marking) {
    Upstream up = new Upstream(true, marking);
    InboundLimiter l = start(rate, burst, window, up);
    assertEquals(burst, up.delivered, "the burst at once");
    Random random = new Random(rate * 31L + burst);
    long elapsed = 0;
    while (elapsed < 3_000_000_000L) {
      long step = 1 + random.nextInt(20_000_000); // up to 20 ms
      scheduler.clock.advanceTimeBy(Duration.ofNanos(step));
      elapsed += step;
      long delivered = up.delivered;
      long allowed = burst + rate * elapsed / 1_000_000_000L;
      assertTrue(delivered <= allowed, delivered + " frames by " + elapsed + " ns, allowed " + allowed);
      // It resumes once a batch (≤ 10 ms of tokens) is there and grants all it has: not starved.
      long batch = Math.max(1, Math.min(rate / 100, Math.min(window, burst)));
      long expectedAtLeast = rate * elapsed / 1_000_000_000L - batch;
      assertTrue(delivered >= expectedAtLeast, delivered + " frames by " + elapsed + " ns");
    }
    assertTrue(l.pauses() > 0);
    assertTrue(l.throttled().toMillis() > 0);
    assertEquals(1, scheduler.pending(), "one resume timer while paused");
  }

  @Test
  @DisplayName("a peer under the rate is never paused")
  void slowPeerNotPaused() {
    Upstream up = new Upstream(false);
    InboundLimiter l = start(100, 10, 256, up);
    for (int i = 0; i < 500; i++) {
      scheduler.clock.advanceTimeBy(Duration.ofMillis(20)); // 50 frames/s
      serial.execute(l::received);
    }
    assertEquals(0, l.pauses());
    assertEquals(Duration.ZERO, l.throttled());
    assertEquals(10, up.requested - 500, "the window is refilled up to the burst");
  }

  @Test
  @DisplayName("stop while paused disposes the resume timer and cancels the link's subscription; nothing is requested after it")
  void stopWhilePaused() {
    Upstream up = new Upstream(true);
    InboundLimiter l = start(10, 5, 256, up);
    assertEquals(5, up.requested);
    assertEquals(1, l.pauses());
    assertEquals(1, scheduler.pending());
    scheduler.clock.advanceTimeBy(Duration.ofMillis(50));
    assertFalse(up.cancelled);
    l.stop();
    assertTrue(up.cancelled, "what the transport holds unrequested is given back");
    assertEquals(0, scheduler.pending());
    assertEquals(Duration.ofMillis(50), l.throttled());
    scheduler.clock.advanceTimeBy(Duration.ofSeconds(10));
    assertEquals(5, up.requested);
    assertEquals(Duration.ofMillis(50), l.throttled(), "a stopped link is no longer throttled");
  }

  @Test
  @DisplayName("stop before start (a link closed at once) requests nothing, cancels the subscription when it comes, and leaves no timer")
  void stopBeforeStart() {
    InboundLimiter l = new InboundLimiter(10, 5, 256, scheduler, serial);
    l.stop();
    Upstream up = new Upstream(true);
    l.start(up);
    assertEquals(0, up.requested);
    assertTrue(up.cancelled);
    assertEquals(0, scheduler.pending());
  }
}
