package dev.entanglement.benchmarks;

import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;

/**
 * The naive "send everything" sender: an unbounded FIFO of every encoded update, handed to the link
 * as its demand allows. Nothing coalesces, so under overload the queue (and the age of what is sent)
 * grows without bound. This is the baseline of {@link ConvergenceBenchmark}, not a design to copy.
 *
 * <p>{@link #offer} may be called from any thread; delivery to the one subscriber is serialized by a
 * work-in-progress counter (whoever moves it from 0 drains while there is demand).
 */
final class UnboundedFramePublisher implements Publisher<byte[]>, Subscription {
  private final Queue<byte[]> queue = new ConcurrentLinkedQueue<>();
  private final AtomicLong requested = new AtomicLong();
  private final AtomicInteger wip = new AtomicInteger();
  private final AtomicLong queuedFrames = new AtomicLong();
  private final AtomicLong queuedBytes = new AtomicLong();
  private final AtomicLong framesOut = new AtomicLong();
  private volatile Subscriber<? super byte[]> subscriber;
  private volatile boolean cancelled;

  @Override
  public void subscribe(Subscriber<? super byte[]> s) {
    if (subscriber != null) {
      s.onSubscribe(this);
      s.onError(new IllegalStateException("one subscriber only"));
      return;
    }
    subscriber = s;
    s.onSubscribe(this);
    drain();
  }

  /** Appends one frame; never blocks, never drops. */
  void offer(byte[] frame) {
    if (cancelled) {
      return;
    }
    queue.offer(frame);
    queuedFrames.incrementAndGet();
    queuedBytes.addAndGet(frame.length);
    drain();
  }

  /** Frames waiting in the FIFO. */
  long queuedFrames() {
    return queuedFrames.get();
  }

  /** Bytes waiting in the FIFO. */
  long queuedBytes() {
    return queuedBytes.get();
  }

  /** Frames handed to the link. */
  long framesOut() {
    return framesOut.get();
  }

  @Override
  public void request(long n) {
    if (n <= 0) {
      return;
    }
    long r;
    long u;
    do {
      r = requested.get();
      u = r + n < 0 ? Long.MAX_VALUE : r + n;
    } while (r != Long.MAX_VALUE && !requested.compareAndSet(r, u));
    drain();
  }

  @Override
  public void cancel() {
    cancelled = true;
    queue.clear();
  }

  private void drain() {
    if (wip.getAndIncrement() != 0) {
      return;
    }
    int missed = 1;
    do {
      Subscriber<? super byte[]> s = subscriber;
      if (s != null) {
        long r = requested.get();
        long e = 0;
        while (e != r && !cancelled) {
          byte[] f = queue.poll();
          if (f == null) {
            break;
          }
          queuedFrames.decrementAndGet();
          queuedBytes.addAndGet(-f.length);
          framesOut.incrementAndGet();
          s.onNext(f);
          e++;
        }
        if (e != 0 && r != Long.MAX_VALUE) {
          requested.addAndGet(-e);
        }
      }
      missed = wip.addAndGet(-missed);
    } while (missed != 0);
  }
}
