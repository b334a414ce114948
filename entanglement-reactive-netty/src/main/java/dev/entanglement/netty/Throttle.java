package dev.entanglement.netty;

import dev.entanglement.transport.FrameSubscription;
import java.time.Duration;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.Disposable;
import reactor.core.publisher.Operators;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * A bandwidth cap on a link's frame bodies: a token bucket of {@link #BURST} at the cap, kept as
 * the time by which the frames handed on so far are paid for ({@code paidUntil}; the generic
 * cell rate algorithm). A frame costs its bytes on the wire (header and body; WebSocket and TLS
 * overhead are not counted) divided by the cap. The next frame is asked for once {@code
 * paidUntil} is less than {@link #BURST} away, and only while the downstream has demand: one
 * frame at a time, so the frame taken is the newest, and the engine's coalescing queue absorbs
 * the overload.
 *
 * <p>Why a bucket: pacing each frame from when it was sent lost, at every frame, the time the
 * request took to reach the engine and the frame to come back; with small frames on a busy
 * machine the rate stayed well below the cap (34 % of 1 MB/s with 100-byte frames, review of
 * session 30). Here time lost is made up, up to {@link #BURST}, so the rate is the cap or the
 * rate at which the writer and the engine can pass single frames, whichever is lower. Over any
 * interval {@code t} at most {@code cap × (t + BURST)} bytes plus one frame pass.
 *
 * <p>State machine: {@code IDLE} (no frame asked for) → {@code ASKED} (one frame asked for, on
 * its way) → {@code IDLE} when it arrives; from {@code IDLE}, with downstream demand but the
 * bucket in debt, {@code WAITING} (a timer set for when it is paid) → {@code IDLE} when it fires.
 * {@code DONE} on completion, error or cancellation, from any state, or when a timer cannot be
 * set (the timers shut down: the writer gets the error, the source is cancelled); its timer is
 * disposed. The
 * state and the counts are guarded by this object's lock; the upstream is asked outside it. The
 * downstream's subscription passes requests for bytes on to a node's {@link FrameSubscription}.
 */
final class Throttle implements CoreSubscriber<byte[]>, FrameSubscription {
  /** How far ahead of its paid time a frame may be asked for: 10 ms of the cap. */
  static final Duration BURST = Duration.ofMillis(10);

  private final CoreSubscriber<? super byte[]> downstream;
  private final long bytesPerSecond;
  private final Scheduler timers;
  private @Nullable Subscription upstream;
  /** Frames the downstream asked for and has not received. */
  private long requested;
  private boolean asked;
  private boolean done;
  /** A timer is set, or being set ({@code timer} is stored once scheduled, if it has not fired). */
  private boolean timerPending;
  private @Nullable Disposable timer;
  /** When the frames handed on so far are paid for, on {@code timers}' clock, in nanoseconds. */
  private long paidUntil;

  private Throttle(CoreSubscriber<? super byte[]> downstream, long bytesPerSecond, Scheduler timers) {
    this.downstream = downstream;
    this.bytesPerSecond = bytesPerSecond;
    this.timers = timers;
    this.paidUntil = timers.now(TimeUnit.NANOSECONDS);
  }

  /**
   * {@code frames} capped at {@code bytesPerSecond}, with timers on {@link Schedulers#parallel()};
   * {@code frames} itself if the cap is 0 or less (none).
   */
  static Publisher<byte[]> apply(Publisher<byte[]> frames, long bytesPerSecond) {
    if (bytesPerSecond <= 0) {
      return frames;
    }
    return s -> {
      // Looked up per subscriber, so that a test's virtual time replaces it.
      Scheduler timers = Schedulers.parallel();
      frames.subscribe(new Throttle(Operators.toCoreSubscriber(s), bytesPerSecond, timers));
    };
  }

  @Override
  public void onSubscribe(Subscription s) {
    upstream = s;
    downstream.onSubscribe(this);
  }

  @Override
  public void onNext(byte[] body) {
    synchronized (this) {
      if (done) {
        return;
      }
      asked = false;
      requested--;
      if (body.length > 0) { // Link.END_OF_BURST takes no time on the wire
        long now = timers.now(TimeUnit.NANOSECONDS);
        paidUntil = Math.max(paidUntil, now)
            + Framing.wireBytes(body) * 1_000_000_000L / bytesPerSecond;
      }
    }
    downstream.onNext(body);
    askIfPaid();
  }

  @Override
  public void onError(Throwable t) {
    if (end()) {
      downstream.onError(t);
    }
  }

  @Override
  public void onComplete() {
    if (end()) {
      downstream.onComplete();
    }
  }

  @Override
  public void request(long n) {
    if (Operators.validate(n)) {
      request(n, 0);
    }
  }

  /** Frames are this operator's to hand out, one at a time; bytes go on to a node's subscription. */
  @Override
  public void request(long frames, long bytes) {
    if (frames < 0 || bytes < 0) {
      return;
    }
    if (bytes > 0 && upstream instanceof FrameSubscription f) {
      f.request(0, bytes);
    }
    if (frames > 0) {
      synchronized (this) {
        requested = requested + frames < 0 ? Long.MAX_VALUE : requested + frames;
      }
      askIfPaid();
    }
  }

  @Override
  public void cancel() {
    if (end()) {
      upstream.cancel();
    }
  }

  /** Asks for the next frame if the downstream wants one and the bucket allows it; else sets a timer. */
  private void askIfPaid() {
    long wait;
    synchronized (this) {
      if (done || asked || requested == 0 || timerPending) {
        return;
      }
      wait = paidUntil - BURST.toNanos() - timers.now(TimeUnit.NANOSECONDS);
      if (wait <= 0) {
        asked = true;
      } else {
        timerPending = true;
      }
    }
    if (wait <= 0) {
      upstream.request(1);
      return;
    }
    Disposable t;
    try {
      t = timers.schedule(this::timerFired, wait, TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) { // the timers shut down (the application is stopping)
      if (end()) {
        upstream.cancel();
        downstream.onError(e);
      }
      return;
    }
    synchronized (this) {
      if (!done) {
        if (timerPending) {
          timer = t; // not fired yet
        }
        return;
      }
    }
    t.dispose();
  }

  private void timerFired() {
    synchronized (this) {
      timerPending = false;
      timer = null;
    }
    askIfPaid();
  }

  /** Moves to {@code DONE}; true for the caller that did. */
  private boolean end() {
    Disposable t;
    synchronized (this) {
      if (done) {
        return false;
      }
      done = true;
      t = timer;
      timer = null;
      timerPending = false;
    }
    if (t != null) {
      t.dispose();
    }
    return true;
  }
}
