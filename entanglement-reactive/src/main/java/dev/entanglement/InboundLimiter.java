package dev.entanglement;

import java.time.Duration;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;
import reactor.core.scheduler.Scheduler;

/**
 * Decides how many frames the engine asks of one link: a window of at most {@code window} frames
 * requested and not yet received, and, when a rate is set, a token bucket of {@code rate} frames
 * per second holding at most {@code burst}.
 *
 * <h2>Design</h2>
 *
 * <p>A link delivers only the frames its subscriber requested, so pacing the requests paces the
 * peer: a flooding peer's frames wait in its own transport (TCP flow control, the in-JVM sender's
 * queue) rather than in this node, and no frame is dropped. A token is spent when a frame is
 * requested, not when it arrives, and the bucket refills only up to {@code burst} minus the frames
 * requested and not yet received; so at any time {@code tokens + outstanding <= burst}, and over
 * any interval of length {@code t} at most {@code burst + rate * t} frames arrive. Time and timers
 * come from the node's scheduler, so virtual time drives it in tests.
 *
 * <p>State machine: {@code NEW} → {@code FLOWING} ({@link #start}: the first grant) → {@code
 * PAUSED} (every requested frame arrived and less than one token is left: a resume timer waits for
 * {@code resumeBatch} tokens) → {@code FLOWING} (the timer fired: those tokens are granted) … and
 * from any state → {@code STOPPED} ({@link #stop}: the timer is disposed, the link's subscription
 * is cancelled, and nothing is requested any more; terminal). Cancelled, not just left without
 * demand: a transport keeps what it received and nobody asked for until its subscriber cancels (a
 * Netty connection closed by its peer held such frames' pooled buffers for good; review, session
 * 30). Without a rate it never pauses: the window alone bounds what is requested
 * and not yet received, and is topped up each time half of it has arrived.
 *
 * <p>Confinement: every method runs on the engine's serial executor; the timer hops onto it.
 */
final class InboundLimiter {
  private static final long NANOS_PER_SECOND = 1_000_000_000L;
  /** A paused link is resumed at most this many times per second (it gets bigger grants instead). */
  private static final int RESUMES_PER_SECOND = 100;

  private final int rate;
  private final int burst;
  private final int window;
  private final Scheduler scheduler;
  private final Executor serial;
  /** Tokens earned in this many nanoseconds fill an empty bucket; caps the elapsed time counted. */
  private final long fillNanos;
  /** Tokens a paused link waits for: about {@value #RESUMES_PER_SECOND} resumes per second at most. */
  private final int resumeBatch;

  private @Nullable Subscription upstream;
  /** Tokens times 10^9 (nano-tokens), so that refills need no rounding; at most burst·10^9. */
  private long nanoTokens;
  private long refilledAt;
  /** Frames requested and not yet received; at most {@code window}. */
  private int outstanding;
  private @Nullable Disposable resume;
  private long pausedAt;
  private boolean stopped;
  private long pauses;
  private long throttledNanos;

  /**
   * @param rate frames per second, or 0 for no rate limit (the window alone)
   * @param burst tokens the bucket holds at most, at least 1 (ignored without a rate)
   * @param window frames requested and not yet received, at most; at least 1
   */
  InboundLimiter(int rate, int burst, int window, Scheduler scheduler, Executor serial) {
    this.rate = rate;
    this.burst = burst;
    this.window = window;
    this.scheduler = scheduler;
    this.serial = serial;
    this.fillNanos = rate == 0 ? 0 : ceilDiv(burst * NANOS_PER_SECOND, rate);
    this.resumeBatch = Math.max(1, Math.min(rate / RESUMES_PER_SECOND, Math.min(window, burst)));
    this.nanoTokens = rate == 0 ? 0 : burst * NANOS_PER_SECOND;
  }

  /** Makes the first request of the link; if already stopped, cancels it instead. */
  void start(Subscription s) {
    if (stopped) {
      s.cancel();
      return;
    }
    upstream = s;
    refilledAt = scheduler.now(TimeUnit.NANOSECONDS);
    grant();
  }

  /**
   * A requested frame has been handled: requests more (without a rate, only once half the window
   * has arrived), or pauses until tokens refill.
   */
  void received() {
    outstanding--;
    if (stopped || upstream == null) {
      return;
    }
    if (rate == 0) {
      // The window alone: topped up once half of it has arrived, one request per half window
      // rather than one per frame (each request runs through the link's operators).
      if (outstanding <= window / 2) {
        grant();
      }
      return;
    }
    refill();
    grant();
    if (outstanding == 0) {
      pauses++;
      pausedAt = scheduler.now(TimeUnit.NANOSECONDS);
      scheduleResume();
    }
  }

  /**
   * Whether some frames requested of the link have not arrived yet: false before the first
   * request, and once a paused link has received everything it asked for.
   */
  boolean awaiting() {
    return outstanding > 0;
  }

  /**
   * A requested item was the link's {@code END_OF_BURST} marker, not a frame: handled as {@link
   * #received} is, and its token is given back, so that a rate counts the peer's frames only (a
   * marker follows every read, which could otherwise halve a peer sending a frame per read).
   * {@code tokens + outstanding} is unchanged: one more token, one fewer outstanding.
   */
  void receivedMarker() {
    if (rate != 0) {
      nanoTokens += NANOS_PER_SECOND;
    }
    received();
  }

  /** Ends the limiter: cancels a pending resume; nothing is requested after. Idempotent. */
  void stop() {
    if (stopped) {
      return;
    }
    stopped = true;
    if (upstream != null) {
      upstream.cancel();
    }
    if (resume != null) {
      resume.dispose();
      resume = null;
      throttledNanos += scheduler.now(TimeUnit.NANOSECONDS) - pausedAt;
    }
  }

  /** How many times the link was paused for lack of tokens. */
  long pauses() {
    return pauses;
  }

  /** How long the link has been paused in total, the current pause included. */
  Duration throttled() {
    long now = resume == null ? 0 : scheduler.now(TimeUnit.NANOSECONDS) - pausedAt;
    return Duration.ofNanos(throttledNanos + now);
  }

  private void scheduleResume() {
    long missing = resumeBatch * NANOS_PER_SECOND - nanoTokens;
    resume =
        scheduler.schedule(
            () -> serial.execute(this::resume), ceilDiv(missing, rate), TimeUnit.NANOSECONDS);
  }

  private void resume() {
    if (stopped || resume == null) {
      return;
    }
    resume = null;
    refill();
    grant();
    if (outstanding == 0) { // the clock rounded down: wait for the rest
      scheduleResume();
      return;
    }
    throttledNanos += scheduler.now(TimeUnit.NANOSECONDS) - pausedAt;
  }

  /** Adds the tokens earned since the last refill, keeping {@code tokens + outstanding <= burst}. */
  private void refill() {
    if (rate == 0) {
      return;
    }
    long now = scheduler.now(TimeUnit.NANOSECONDS);
    long elapsed = Math.min(Math.max(0, now - refilledAt), fillNanos);
    refilledAt = now;
    long cap = (long) (burst - outstanding) * NANOS_PER_SECOND;
    nanoTokens = Math.min(cap, nanoTokens + elapsed * rate);
  }

  private static long ceilDiv(long a, long b) {
    return (a + b - 1) / b;
  }

  /** Requests as many frames as the window and the tokens allow. */
  private void grant() {
    Subscription s = upstream;
    int n = window - outstanding;
    if (rate > 0) {
      n = (int) Math.min(n, nanoTokens / NANOS_PER_SECOND);
      nanoTokens -= n * NANOS_PER_SECOND;
    }
    if (n > 0 && s != null) { // s is set before the first grant
      outstanding += n;
      s.request(n);
    }
  }
}
