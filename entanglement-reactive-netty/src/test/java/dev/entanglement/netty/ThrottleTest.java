package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.transport.FrameSubscription;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

class ThrottleTest {
  /** 92 bytes of body and 8 of header: 100 ms on the wire at 1,000 bytes/s. */
  private static final byte[] FRAME = new byte[92];

  private static final long CAP = 1_000;

  /**
   * An engine-like source on virtual time: each frame asked for arrives {@code lag} later (the
   * hop to the engine's thread and back); records what is asked for, frames and bytes.
   */
  private static final class LaggingSource implements Publisher<byte[]> {
    final VirtualTimeScheduler time;
    final Duration lag;
    final AtomicLong requested = new AtomicLong();
    final AtomicLong requestedBytes = new AtomicLong();
    Subscriber<? super byte[]> subscriber;
    boolean cancelled;

    LaggingSource(VirtualTimeScheduler time, Duration lag) {
      this.time = time;
      this.lag = lag;
    }

    @Override
    public void subscribe(Subscriber<? super byte[]> s) {
      subscriber = s;
      s.onSubscribe(new FrameSubscription() {
        @Override
        public void request(long n) {
          requested.addAndGet(n);
          for (long i = 0; i < n; i++) {
            time.schedule(() -> {
              if (!cancelled) {
                subscriber.onNext(FRAME);
              }
            }, lag.toNanos(), TimeUnit.NANOSECONDS);
          }
        }

        @Override
        public void request(long frames, long bytes) {
          requestedBytes.addAndGet(bytes);
          if (frames > 0) {
            request(frames);
          }
        }

        @Override
        public void cancel() {
          cancelled = true;
        }
      });
    }
  }

  /** A writer with a window of one frame, asking again as soon as each frame arrives. */
  private static final class WindowOfOne extends BaseSubscriber<byte[]> {
    final List<Long> arrivals = new ArrayList<>();
    final VirtualTimeScheduler time;

    WindowOfOne(VirtualTimeScheduler time) {
      this.time = time;
    }

    @Override
    protected void hookOnSubscribe(Subscription s) {
      ((FrameSubscription) s).request(1, 1_000);
    }

    @Override
    protected void hookOnNext(byte[] frame) {
      arrivals.add(time.now(TimeUnit.MILLISECONDS));
      request(1);
    }
  }

  @Test
  @DisplayName("the next frame is asked for once the last one is paid for but the burst allowance (10 ms), and not before")
  void asksForTheNextFrameWhenTheLastIsPaidFor() {
    AtomicLong requested = new AtomicLong();
    StepVerifier.withVirtualTime(() -> Throttle.apply(
            Flux.range(0, 3).map(i -> FRAME).doOnRequest(requested::addAndGet), CAP))
        .expectSubscription()
        .expectNextCount(1)
        .then(() -> assertEquals(1, requested.get(), "none taken ahead while the first one's time runs"))
        .thenAwait(Duration.ofMillis(89))
        .then(() -> assertEquals(1, requested.get()))
        .thenAwait(Duration.ofMillis(1))
        .expectNextCount(1)
        .then(() -> assertEquals(2, requested.get()))
        .thenAwait(Duration.ofMillis(100))
        .expectNextCount(1)
        .thenAwait(Duration.ofMillis(100))
        .expectComplete()
        .verify(Duration.ofSeconds(10));
  }

  @Test
  @DisplayName("time lost between a request and its frame is made up: with a lag under the burst allowance, frames pass at the cap")
  void timeLostIsMadeUp() {
    VirtualTimeScheduler time = VirtualTimeScheduler.getOrSet();
    try {
      LaggingSource source = new LaggingSource(time, Duration.ofMillis(5));
      WindowOfOne writer = new WindowOfOne(time);
      Throttle.apply(source, CAP).subscribe(writer);
      time.advanceTimeBy(Duration.ofSeconds(10));
      // Paced from each send, as before, a frame took 105 ms: 96 in 10 s.
      assertTrue(writer.arrivals.size() >= 99, writer.arrivals.size() + " frames: " + writer.arrivals);
      assertEquals(1_000, source.requestedBytes.get(), "requests for bytes reach the source");
      writer.dispose();
    } finally {
      VirtualTimeScheduler.reset();
    }
  }

  @Test
  @DisplayName("over any stretch the bytes passed stay within the cap plus the burst allowance and one frame, however fast the source")
  void neverAboveTheCap() {
    VirtualTimeScheduler time = VirtualTimeScheduler.getOrSet();
    try {
      LaggingSource source = new LaggingSource(time, Duration.ZERO);
      WindowOfOne writer = new WindowOfOne(time);
      Throttle.apply(source, CAP).subscribe(writer);
      time.advanceTimeBy(Duration.ofSeconds(30));
      List<Long> at = writer.arrivals;
      for (int i = 0; i < at.size(); i++) {
        for (int j = i; j < at.size(); j++) {
          long bytes = (j - i + 1) * 100L;
          long allowed = CAP * (at.get(j) - at.get(i) + Throttle.BURST.toMillis()) / 1_000 + 100;
          assertTrue(bytes <= allowed, "frames " + i + ".." + j + ": " + bytes + " bytes in " + (at.get(j) - at.get(i)) + " ms");
        }
      }
      assertTrue(at.size() >= 300, "and it reaches the cap: " + at.size() + " frames of 100 bytes in 30 s");
      writer.dispose();
    } finally {
      VirtualTimeScheduler.reset();
    }
  }

  @Test
  @DisplayName("nothing is taken from the source while the writer asks for nothing, however long the bucket has been full")
  void noFrameAheadOfTheWritersDemand() {
    VirtualTimeScheduler time = VirtualTimeScheduler.getOrSet();
    try {
      LaggingSource source = new LaggingSource(time, Duration.ZERO);
      BaseSubscriber<byte[]> idle = new BaseSubscriber<>() {
        @Override
        protected void hookOnSubscribe(Subscription s) {
          // asks for nothing yet
        }
      };
      Throttle.apply(source, CAP).subscribe(idle);
      time.advanceTimeBy(Duration.ofSeconds(5));
      assertEquals(0, source.requested.get());
      idle.request(1);
      time.advanceTime();
      assertEquals(1, source.requested.get(), "asked at once: the bucket is full");
      time.advanceTimeBy(Duration.ofSeconds(5));
      assertEquals(1, source.requested.get(), "the frame is paid for, but the writer asked for no other");
      idle.dispose();
    } finally {
      VirtualTimeScheduler.reset();
    }
  }

  @Test
  @DisplayName("a marker (END_OF_BURST) costs nothing; cancelling stops the timer and the source")
  void markersAreFreeAndCancelStops() {
    VirtualTimeScheduler time = VirtualTimeScheduler.getOrSet();
    try {
      List<byte[]> got = new ArrayList<>();
      AtomicLong requested = new AtomicLong();
      Flux<byte[]> source = Flux.just(FRAME, new byte[0], FRAME, FRAME).doOnRequest(requested::addAndGet);
      BaseSubscriber<byte[]> writer = new BaseSubscriber<>() {
        @Override
        protected void hookOnSubscribe(Subscription s) {
          s.request(10);
        }

        @Override
        protected void hookOnNext(byte[] frame) {
          got.add(frame);
        }
      };
      Throttle.apply(source, CAP).subscribe(writer);
      time.advanceTime();
      assertEquals(1, got.size());
      time.advanceTimeBy(Duration.ofMillis(90));
      assertEquals(3, got.size(), "the marker, and the next frame at once: the marker took no time");
      writer.dispose(); // a timer is set for the fourth
      time.advanceTimeBy(Duration.ofSeconds(1));
      assertEquals(3, got.size());
      assertEquals(3, requested.get());
    } finally {
      VirtualTimeScheduler.reset();
    }
  }

  @Test
  @DisplayName("a timer that cannot be set (the timers shut down) fails the writer and cancels the source, rather than stall")
  void shutDownTimersFailTheStream() {
    VirtualTimeScheduler time = VirtualTimeScheduler.getOrSet();
    try {
      LaggingSource source = new LaggingSource(time, Duration.ZERO);
      java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
      BaseSubscriber<byte[]> writer = new BaseSubscriber<>() {
        @Override
        protected void hookOnSubscribe(Subscription s) {
          s.request(1);
        }

        @Override
        protected void hookOnError(Throwable t) {
          failure.set(t);
        }
      };
      Throttle.apply(source, CAP).subscribe(writer);
      time.advanceTime(); // the first frame: the bucket was full
      time.dispose();
      writer.request(1); // the next one must wait: a timer
      assertTrue(failure.get() instanceof java.util.concurrent.RejectedExecutionException, String.valueOf(failure.get()));
      assertTrue(source.cancelled);
    } finally {
      VirtualTimeScheduler.reset();
    }
  }

  /**
   * Race: the source emits on its own thread, the writer asks again from another, and the timers
   * fire on a third (real time, 500 µs a frame). Every frame arrives once, in order, never more
   * than asked for, and the stream completes.
   */
  @org.junit.jupiter.params.ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(longs = {1, 2, 3, 4, 5})
  void threadsRace(long seed) throws InterruptedException {
    int frames = 300;
    java.util.Random random = new java.util.Random(seed);
    reactor.core.scheduler.Scheduler emitter = Schedulers.newSingle("throttle-test-source");
    // A Reactor scheduler: the source's thread is a non-blocking one, where BlockHound allows its
    // hand-off and not a plain executor's.
    reactor.core.scheduler.Scheduler asker = Schedulers.newSingle("throttle-test-asker");
    try {
      List<Integer> got = java.util.Collections.synchronizedList(new ArrayList<>());
      java.util.concurrent.CountDownLatch done = new java.util.concurrent.CountDownLatch(1);
      AtomicLong outstanding = new AtomicLong();
      java.util.concurrent.atomic.AtomicBoolean overrun = new java.util.concurrent.atomic.AtomicBoolean();
      java.util.concurrent.atomic.AtomicReference<Throwable> failure = new java.util.concurrent.atomic.AtomicReference<>();
      Flux<byte[]> source = Flux.range(0, frames)
          .map(i -> {
            byte[] b = new byte[92];
            b[0] = (byte) (int) i;
            return b;
          })
          .subscribeOn(emitter, true)
          .publishOn(emitter, 1);
      Throttle.apply(source, 200_000).subscribe(new BaseSubscriber<>() {
        @Override
        protected void hookOnSubscribe(Subscription s) {
          outstanding.set(2);
          s.request(2);
        }

        @Override
        protected void hookOnNext(byte[] frame) {
          if (outstanding.decrementAndGet() < 0) {
            overrun.set(true);
          }
          got.add(frame[0] & 0xff);
          int n = random.nextInt(3);
          if (outstanding.get() == 0 && n == 0) {
            n = 1;
          }
          int ask = n;
          asker.schedule(() -> {
            if (ask > 0) {
              outstanding.addAndGet(ask);
              request(ask);
            }
          });
        }

        @Override
        protected void hookOnComplete() {
          done.countDown();
        }

        @Override
        protected void hookOnError(Throwable t) {
          failure.set(t);
          done.countDown();
        }
      });
      assertTrue(done.await(20, TimeUnit.SECONDS), got.size() + " frames arrived");
      assertEquals(null, failure.get());
      assertTrue(!overrun.get(), "a frame beyond the writer's demand");
      List<Integer> expected = new ArrayList<>();
      for (int i = 0; i < frames; i++) {
        expected.add(i & 0xff);
      }
      assertEquals(expected, got);
    } finally {
      emitter.dispose();
      asker.dispose();
    }
  }
}
