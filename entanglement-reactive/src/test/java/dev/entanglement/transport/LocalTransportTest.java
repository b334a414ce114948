package dev.entanglement.transport;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.PeerId;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.test.StepVerifier;
import reactor.test.publisher.TestPublisher;
import reactor.test.scheduler.VirtualTimeScheduler;
import reactor.test.util.RaceTestUtils;

class LocalTransportTest {

  private static final PeerId A = PeerId.of("a");
  private static final PeerId B = PeerId.of("b");

  private final VirtualTimeScheduler vts = VirtualTimeScheduler.create();

  @AfterEach
  void disposeScheduler() {
    vts.dispose();
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers
  // ---------------------------------------------------------------------------------------------

  private LocalTransport.Connection connect(long bytesPerSecond, Duration latency) {
    return LocalTransport.builder()
        .scheduler(vts)
        .bandwidth(bytesPerSecond)
        .latency(latency)
        .build()
        .connect(A, B);
  }

  private LocalTransport.Connection connect() {
    return connect(0, Duration.ZERO);
  }

  /** A frame of {@code size} (>= 4) bytes that carries its index in its first four bytes. */
  private static byte[] frame(int index, int size) {
    byte[] f = new byte[size];
    Arrays.fill(f, (byte) index);
    ByteBuffer.wrap(f).putInt(index);
    return f;
  }

  private static int indexOf(byte[] frame) {
    return ByteBuffer.wrap(frame).getInt();
  }

  private static List<byte[]> frames(int count, int size) {
    List<byte[]> out = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      out.add(frame(i, size));
    }
    return out;
  }

  private void advance(Duration d) {
    vts.advanceTimeBy(d);
  }

  private long nowNanos() {
    return vts.now(TimeUnit.NANOSECONDS);
  }

  /**
   * A receiver that requests explicitly, records frames and their virtual arrival times, and flags
   * any onNext beyond the demand it signalled.
   */
  class Receiver implements CoreSubscriber<byte[]> {
    final List<byte[]> frames = new CopyOnWriteArrayList<>();
    final List<Long> arrivals = new CopyOnWriteArrayList<>();
    final List<Throwable> errors = new CopyOnWriteArrayList<>();
    final List<String> violations = new CopyOnWriteArrayList<>();
    final AtomicInteger completions = new AtomicInteger();
    private final long initialRequest;
    Subscription subscription;
    long requested;

    Receiver(long initialRequest) {
      this.initialRequest = initialRequest;
    }

    Receiver() {
      this(0);
    }

    void request(long n) {
      requested = requested + n < 0 ? Long.MAX_VALUE : requested + n;
      subscription.request(n);
    }

    void cancel() {
      subscription.cancel();
    }

    @Override
    public void onSubscribe(Subscription s) {
      subscription = s;
      if (initialRequest > 0) {
        request(initialRequest);
      }
    }

    @Override
    public void onNext(byte[] f) {
      if (completions.get() > 0 || !errors.isEmpty()) {
        violations.add("onNext after a terminal signal");
      }
      frames.add(f);
      arrivals.add(nowNanos());
      if (frames.size() > requested) {
        violations.add("onNext #" + frames.size() + " beyond demand " + requested);
      }
    }

    @Override
    public void onError(Throwable t) {
      errors.add(t);
    }

    @Override
    public void onComplete() {
      completions.incrementAndGet();
    }

    long bytes() {
      return frames.stream().mapToLong(f -> f.length).sum();
    }

    List<Integer> indices() {
      return frames.stream().map(LocalTransportTest::indexOf).toList();
    }

    void assertClean() {
      assertTrue(violations.isEmpty(), () -> "violations: " + violations);
      assertTrue(errors.isEmpty(), () -> "errors: " + errors);
    }
  }

  private static List<Integer> range(int n) {
    List<Integer> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      out.add(i);
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Basics
  // ---------------------------------------------------------------------------------------------

  @Test
  void eachLinkNamesTheOtherEnd() {
    LocalTransport.Connection c = connect();
    assertEquals(B, c.a().remote());
    assertEquals(A, c.b().remote());
  }

  @Test
  void builderRejectsInvalidSettings() {
    assertThrows(IllegalArgumentException.class, () -> LocalTransport.builder().bandwidth(-1));
    assertThrows(NullPointerException.class, () -> LocalTransport.builder().latency(null));
    assertThrows(NullPointerException.class, () -> LocalTransport.builder().scheduler(null));
  }

  @Test
  void framesArriveInOrder_bothDirections() {
    LocalTransport.Connection c = connect();
    Receiver atB = new Receiver(Long.MAX_VALUE);
    Receiver atA = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    c.a().receive().subscribe(atA);
    // Senders that stay open: a completed sender closes the connection once delivered.
    c.a().send(Flux.fromIterable(frames(200, 16)).concatWith(Flux.never())).subscribe();
    c.b().send(Flux.fromIterable(frames(50, 8)).concatWith(Flux.never())).subscribe();
    assertEquals(range(200), atB.indices());
    assertEquals(range(50), atA.indices());
    // the bytes are delivered unchanged
    assertArrayEquals(frame(17, 16), atB.frames.get(17));
    atB.assertClean();
    atA.assertClean();
  }

  @Test
  void framesArriveInOrder_withBandwidthAndLatency() {
    LocalTransport.Connection c = connect(10_000, Duration.ofMillis(30));
    Random rnd = new Random(7);
    List<byte[]> sent = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      sent.add(frame(i, 4 + rnd.nextInt(500)));
    }
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    c.a().send(Flux.fromIterable(sent)).subscribe();
    advance(Duration.ofSeconds(60));
    assertEquals(range(100), atB.indices());
    for (int i = 0; i < 100; i++) {
      assertArrayEquals(sent.get(i), atB.frames.get(i), "frame " + i);
    }
    atB.assertClean();
  }

  @Test
  void bytesAreCountedPerDirection() {
    LocalTransport.Connection c = connect();
    c.b().receive().subscribe(new Receiver(Long.MAX_VALUE));
    c.a().receive().subscribe(new Receiver(Long.MAX_VALUE));
    assertEquals(0, c.bytesAtoB());
    assertEquals(0, c.bytesBtoA());
    c.a().send(Flux.just(frame(0, 10), frame(1, 20), frame(2, 30)).concatWith(Flux.never())).subscribe();
    c.b().send(Flux.just(frame(0, 5)).concatWith(Flux.never())).subscribe();
    assertEquals(60, c.bytesAtoB());
    assertEquals(5, c.bytesBtoA());
  }

  // ---------------------------------------------------------------------------------------------
  // Bandwidth
  // ---------------------------------------------------------------------------------------------

  @Test
  void bandwidthCapsThroughput_senderIsPulledOneFrameAtATime() {
    final long bw = 1_000; // bytes per second
    final int size = 100; // 100 ms on the wire per frame
    final int count = 50;
    LocalTransport.Connection c = connect(bw, Duration.ZERO);
    List<Long> requests = new CopyOnWriteArrayList<>();
    AtomicInteger emitted = new AtomicInteger();
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    c.a()
        .send(
            Flux.fromIterable(frames(count, size))
                .doOnRequest(requests::add)
                .doOnNext(f -> emitted.incrementAndGet()))
        .subscribe();

    long start = nowNanos();
    long[] instantsMs = {0, 1, 50, 99, 100, 101, 250, 500, 999, 1000, 1001, 2500, 4900, 4999, 5000,
        6000};
    long elapsed = 0;
    for (long t : instantsMs) {
      advance(Duration.ofMillis(t - elapsed));
      elapsed = t;
      long tNanos = nowNanos() - start;
      String ctx = "at " + t + " ms";
      // B*T + one frame, in exact integer arithmetic (bytes * 1e9 <= B * T_ns + frame * 1e9)
      long budget = bw * tNanos + size * 1_000_000_000L;
      assertTrue(atB.bytes() * 1_000_000_000L <= budget, ctx + ": delivered " + atB.bytes());
      assertTrue(c.bytesAtoB() * 1_000_000_000L <= budget, ctx + ": sent " + c.bytesAtoB());
      // and the link runs at its rate: frame k is on the wire during [k, k+1) * 100 ms
      int expectedDelivered = (int) Math.min(count, t / 100);
      assertEquals(expectedDelivered, atB.frames.size(), ctx + ": frames delivered");
      // pulled one at a time: every request is for one frame, never more than one outstanding
      assertTrue(requests.stream().allMatch(n -> n == 1), ctx + ": requests " + requests);
      assertTrue(requests.size() <= emitted.get() + 1, ctx + ": outstanding requests");
    }
    assertEquals(range(count), atB.indices());
    assertEquals((long) count * size, c.bytesAtoB());
    atB.assertClean();
  }

  @Test
  void bandwidthCapHoldsForUnevenFrameSizes() {
    final long bw = 2_000;
    LocalTransport.Connection c = connect(bw, Duration.ZERO);
    Random rnd = new Random(20240601L);
    List<byte[]> sent = new ArrayList<>();
    int maxFrame = 0;
    long total = 0;
    for (int i = 0; i < 120; i++) {
      int size = 4 + rnd.nextInt(400);
      maxFrame = Math.max(maxFrame, size);
      total += size;
      sent.add(frame(i, size));
    }
    List<Long> requests = new CopyOnWriteArrayList<>();
    AtomicInteger emitted = new AtomicInteger();
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    c.a()
        .send(
            Flux.fromIterable(sent)
                .doOnRequest(requests::add)
                .doOnNext(f -> emitted.incrementAndGet()))
        .subscribe();
    long start = nowNanos();
    long endNanos = (total * 1_000_000_000L) / bw + 1_000_000_000L;
    for (long t = 0; t <= endNanos; t += 7_000_000L) {
      advance(Duration.ofNanos(t - (nowNanos() - start)));
      long tNanos = nowNanos() - start;
      long budget = bw * tNanos + maxFrame * 1_000_000_000L;
      assertTrue(atB.bytes() * 1_000_000_000L <= budget, "delivered at " + tNanos + " ns");
      assertTrue(c.bytesAtoB() * 1_000_000_000L <= budget, "sent at " + tNanos + " ns");
      assertTrue(requests.size() <= emitted.get() + 1, "outstanding requests at " + tNanos);
    }
    assertTrue(requests.stream().allMatch(n -> n == 1), "requests " + requests);
    assertEquals(range(120), atB.indices());
    assertEquals(total, atB.bytes());
    atB.assertClean();
  }

  // ---------------------------------------------------------------------------------------------
  // Latency
  // ---------------------------------------------------------------------------------------------

  @Test
  void latencyDelaysDeliveryByExactlyTheConfiguredAmount() {
    Duration latency = Duration.ofMillis(250);
    LocalTransport.Connection c = connect(0, latency);
    Sinks.Many<byte[]> sender = Sinks.many().unicast().onBackpressureBuffer();
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    c.a().send(sender.asFlux()).subscribe();

    long t0 = nowNanos();
    sender.tryEmitNext(frame(0, 8)).orThrow();
    assertEquals(0, atB.frames.size());
    advance(latency.minusNanos(1));
    assertEquals(0, atB.frames.size(), "one nanosecond early");
    advance(Duration.ofNanos(1));
    assertEquals(1, atB.frames.size());
    assertEquals(t0 + latency.toNanos(), atB.arrivals.get(0));

    // frames sent at different instants each arrive exactly `latency` later
    advance(Duration.ofSeconds(1));
    long t1 = nowNanos();
    sender.tryEmitNext(frame(1, 8)).orThrow();
    sender.tryEmitNext(frame(2, 8)).orThrow();
    advance(Duration.ofMillis(100));
    long t2 = nowNanos();
    sender.tryEmitNext(frame(3, 8)).orThrow();
    advance(Duration.ofMillis(149));
    assertEquals(1, atB.frames.size());
    advance(Duration.ofMillis(1));
    assertEquals(3, atB.frames.size());
    advance(Duration.ofMillis(99));
    assertEquals(3, atB.frames.size());
    advance(Duration.ofMillis(1));
    assertEquals(List.of(0, 1, 2, 3), atB.indices());
    assertEquals(
        List.of(t0 + latency.toNanos(), t1 + latency.toNanos(), t1 + latency.toNanos(),
            t2 + latency.toNanos()),
        atB.arrivals);
    atB.assertClean();
  }

  @Test
  void latencyIsAddedToTransmissionTime() {
    LocalTransport.Connection c = connect(1_000, Duration.ofMillis(50));
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    long t0 = nowNanos();
    c.a().send(Flux.just(frame(0, 100), frame(1, 100))).subscribe();
    advance(Duration.ofMillis(149));
    assertEquals(0, atB.frames.size());
    advance(Duration.ofMillis(1));
    assertEquals(1, atB.frames.size());
    advance(Duration.ofMillis(200));
    // frame 0: [0,100) on the wire + 50 ms; frame 1: [100,200) on the wire + 50 ms
    assertEquals(
        List.of(t0 + Duration.ofMillis(150).toNanos(), t0 + Duration.ofMillis(250).toNanos()),
        atB.arrivals);
    atB.assertClean();
  }

  // ---------------------------------------------------------------------------------------------
  // Receiver demand
  // ---------------------------------------------------------------------------------------------

  @Test
  void receiverDemandBoundsWhatIsRequestedFromTheSender() {
    LocalTransport.Connection c = connect();
    TestPublisher<byte[]> sender = TestPublisher.create();
    Receiver atB = new Receiver();
    c.b().receive().subscribe(atB);
    c.a().send(sender).subscribe();
    sender.assertSubscribers(1);
    sender.assertMaxRequested(0); // no receiver demand: nothing is pulled

    atB.request(1);
    sender.assertMinRequested(1).assertMaxRequested(1);
    sender.next(frame(0, 8));
    assertEquals(List.of(0), atB.indices());
    sender.assertMaxRequested(0); // receiver demand exhausted: the pipe stops pulling

    atB.request(2);
    sender.assertMinRequested(2).assertMaxRequested(2);
    sender.next(frame(1, 8), frame(2, 8));
    assertEquals(List.of(0, 1, 2), atB.indices());
    sender.assertMaxRequested(0);
    sender.assertNotCancelled();
    atB.assertClean();
  }

  @Test
  void endOfBurstIsNotCarriedAndGivesItsUnitBack() {
    LocalTransport.Connection c = connect();
    TestPublisher<byte[]> sender = TestPublisher.create();
    Receiver atB = new Receiver();
    c.b().receive().subscribe(atB);
    c.a().send(sender).subscribe();
    atB.request(3);
    sender.assertMinRequested(3).assertMaxRequested(3);
    sender.next(frame(0, 8), Link.END_OF_BURST);
    assertEquals(List.of(0), atB.indices(), "the marker reaches no receiver");
    sender.next(frame(1, 8));
    assertEquals(List.of(0, 1), atB.indices());
    sender.assertMinRequested(1).assertMaxRequested(1); // the marker's unit asked for again
    sender.next(frame(2, 8));
    assertEquals(List.of(0, 1, 2), atB.indices());
    sender.assertMaxRequested(0);
    atB.assertClean();
  }

  @Test
  void framesInFlightCountAgainstReceiverDemand() {
    LocalTransport.Connection c = connect(0, Duration.ofMillis(100));
    TestPublisher<byte[]> sender = TestPublisher.create();
    Receiver atB = new Receiver();
    c.b().receive().subscribe(atB);
    c.a().send(sender).subscribe();
    atB.request(1);
    sender.assertMinRequested(1).assertMaxRequested(1);
    sender.next(frame(0, 8));
    // the frame is in flight (not yet delivered): no further frame is pulled for this demand
    sender.assertMaxRequested(0);
    assertEquals(0, atB.frames.size());
    advance(Duration.ofMillis(100));
    assertEquals(List.of(0), atB.indices());
    sender.assertMaxRequested(0);
    atB.assertClean();
  }

  @Test
  void receiverDemandBoundsPullingWithBandwidth() {
    LocalTransport.Connection c = connect(1_000, Duration.ZERO);
    TestPublisher<byte[]> sender = TestPublisher.create();
    Receiver atB = new Receiver();
    c.b().receive().subscribe(atB);
    c.a().send(sender).subscribe();
    atB.request(2);
    sender.assertMinRequested(1).assertMaxRequested(1); // one frame at a time
    sender.next(frame(0, 100));
    sender.assertMaxRequested(0); // busy for 100 ms
    advance(Duration.ofMillis(100));
    assertEquals(List.of(0), atB.indices());
    sender.assertMinRequested(1).assertMaxRequested(1);
    sender.next(frame(1, 100));
    advance(Duration.ofMillis(100));
    assertEquals(List.of(0, 1), atB.indices());
    advance(Duration.ofSeconds(1));
    sender.assertMaxRequested(0); // demand used up: nothing more pulled
    atB.assertClean();
  }

  @Test
  void receiverDemandBoundsDelivery_evenWhenMoreFramesAreDue() {
    // A sender that ignores backpressure: three frames are transmitted and due, one is requested.
    LocalTransport.Connection c = connect();
    TestPublisher<byte[]> sender =
        TestPublisher.createNoncompliant(TestPublisher.Violation.REQUEST_OVERFLOW);
    Receiver atB = new Receiver();
    c.b().receive().subscribe(atB);
    c.a().send(sender).subscribe();
    atB.request(1);
    sender.next(frame(0, 8), frame(1, 8), frame(2, 8));
    assertEquals(List.of(0), atB.indices());
    advance(Duration.ofSeconds(1));
    assertEquals(List.of(0), atB.indices());
    atB.request(1);
    assertEquals(List.of(0, 1), atB.indices());
    atB.request(5);
    assertEquals(List.of(0, 1, 2), atB.indices());
    atB.assertClean();
  }

  @Test
  void invalidReceiverRequestDoesNotThrowOrReduceDemand() {
    LocalTransport.Connection c = connect();
    Receiver atB = new Receiver();
    c.b().receive().subscribe(atB);
    c.a().send(Flux.fromIterable(frames(3, 8))).subscribe();
    assertDoesNotThrow(() -> atB.subscription.request(0));
    assertDoesNotThrow(() -> atB.subscription.request(-1));
    assertEquals(0, atB.frames.size());
    if (!atB.errors.isEmpty()) {
      // Reactive Streams rule 3.9: signalling IllegalArgumentException is a valid answer
      assertInstanceOf(IllegalArgumentException.class, atB.errors.get(0));
      return;
    }
    // otherwise the invalid requests must be ignored, not subtracted from the demand
    atB.request(1);
    assertEquals(List.of(0), atB.indices(), "request(1) after invalid requests delivers one frame");
    atB.assertClean();
  }

  @Test
  void framesSentBeforeTheReceiverSubscribesAreDeliveredOnItsDemand() {
    LocalTransport.Connection c = connect();
    // the sender is attached first; nothing is pulled while nobody receives
    List<Long> requests = new CopyOnWriteArrayList<>();
    c.a().send(Flux.fromIterable(frames(3, 8)).doOnRequest(requests::add)).subscribe();
    assertTrue(requests.isEmpty(), "pulled without receiver demand: " + requests);
    // then a receiver subscribes and requests in onSubscribe (as StepVerifier or any Reactor
    // operator does)
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    advance(Duration.ofSeconds(1));
    assertEquals(List.of(0, 1, 2), atB.indices(), "frames pulled for the receiver's demand");
    atB.assertClean();
  }

  @Test
  void framesSentBeforeTheReceiverSubscribes_receiverRequestingLater() {
    LocalTransport.Connection c = connect();
    c.a().send(Flux.fromIterable(frames(3, 8))).subscribe();
    Receiver atB = new Receiver();
    c.b().receive().subscribe(atB);
    atB.request(Long.MAX_VALUE);
    assertEquals(List.of(0, 1, 2), atB.indices());
    atB.assertClean();
  }

  // ---------------------------------------------------------------------------------------------
  // Close
  // ---------------------------------------------------------------------------------------------

  @Test
  void closeCompletesReceiversAndOnCloseAndCancelsSenders() {
    LocalTransport.Connection c = connect(0, Duration.ZERO);
    Receiver atA = new Receiver(Long.MAX_VALUE);
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.a().receive().subscribe(atA);
    c.b().receive().subscribe(atB);
    TestPublisher<byte[]> fromA = TestPublisher.create();
    TestPublisher<byte[]> fromB = TestPublisher.create();
    AtomicInteger sendADone = new AtomicInteger();
    AtomicInteger sendBDone = new AtomicInteger();
    AtomicInteger closeADone = new AtomicInteger();
    AtomicInteger closeBDone = new AtomicInteger();
    List<Throwable> errors = new CopyOnWriteArrayList<>();
    c.a().send(fromA).subscribe(v -> {}, errors::add, sendADone::incrementAndGet);
    c.b().send(fromB).subscribe(v -> {}, errors::add, sendBDone::incrementAndGet);
    c.a().onClose().subscribe(v -> {}, errors::add, closeADone::incrementAndGet);
    c.b().onClose().subscribe(v -> {}, errors::add, closeBDone::incrementAndGet);
    fromA.next(frame(0, 8));
    fromB.next(frame(0, 8));
    assertEquals(1, atB.frames.size());
    assertEquals(1, atA.frames.size());
    assertFalse(c.a().isDisposed());
    assertFalse(c.b().isDisposed());
    assertEquals(0, closeADone.get() + closeBDone.get() + sendADone.get() + sendBDone.get());

    c.close();

    assertEquals(1, atA.completions.get());
    assertEquals(1, atB.completions.get());
    assertEquals(1, closeADone.get());
    assertEquals(1, closeBDone.get());
    assertEquals(1, sendADone.get());
    assertEquals(1, sendBDone.get());
    fromA.assertCancelled();
    fromB.assertCancelled();
    assertTrue(c.a().isDisposed());
    assertTrue(c.b().isDisposed());
    assertTrue(errors.isEmpty(), () -> "errors: " + errors);

    // idempotent
    c.close();
    c.a().dispose();
    c.b().dispose();
    assertEquals(1, atA.completions.get());
    assertEquals(1, atB.completions.get());
    atA.assertClean();
    atB.assertClean();
    StepVerifier.create(c.a().onClose()).expectComplete().verify(Duration.ofSeconds(5));
  }

  @Test
  void disposingOneLinkClosesBothEnds() {
    LocalTransport.Connection c = connect();
    Receiver atA = new Receiver(1);
    Receiver atB = new Receiver(1);
    c.a().receive().subscribe(atA);
    c.b().receive().subscribe(atB);
    StepVerifier.create(c.a().onClose())
        .then(() -> c.b().dispose())
        .expectComplete()
        .verify(Duration.ofSeconds(5));
    assertTrue(c.a().isDisposed());
    assertEquals(1, atA.completions.get());
    assertEquals(1, atB.completions.get());
    atA.assertClean();
    atB.assertClean();
  }

  @Test
  void receiveAndSendAfterCloseCompleteImmediately() {
    LocalTransport.Connection c = connect();
    c.close();
    StepVerifier.create(c.b().receive()).expectComplete().verify(Duration.ofSeconds(5));
    TestPublisher<byte[]> late = TestPublisher.create();
    StepVerifier.create(c.a().send(late)).expectComplete().verify(Duration.ofSeconds(5));
    late.assertCancelled();
    StepVerifier.create(c.b().onClose()).expectComplete().verify(Duration.ofSeconds(5));
  }

  @Test
  void receiverThatClosesTheLinkFromOnSubscribeIsCompletedOnce() {
    LocalTransport.Connection c = connect();
    Receiver atB =
        new Receiver() {
          @Override
          public void onSubscribe(Subscription s) {
            super.onSubscribe(s);
            c.b().dispose(); // hang up straight away
          }
        };
    c.b().receive().subscribe(atB);
    assertTrue(c.b().isDisposed());
    assertEquals(1, atB.completions.get(), "onComplete count");
    atB.assertClean();
  }

  @Test
  void receiverSubscribingWhileTheConnectionClosesIsCompletedExactlyOnce() {
    for (int iteration = 0; iteration < 200; iteration++) {
      LocalTransport.Connection c = connect();
      Receiver atB = new Receiver(Long.MAX_VALUE);
      RaceTestUtils.race(() -> c.b().receive().subscribe(atB), c::close);
      assertEquals(1, atB.completions.get(), "iteration " + iteration + ": onComplete count");
      atB.assertClean();
    }
  }

  @Test
  void framesInFlightAreDroppedOnClose() {
    LocalTransport.Connection c = connect(0, Duration.ofMillis(100));
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    c.a().send(Flux.just(frame(0, 8))).subscribe();
    advance(Duration.ofMillis(50));
    c.close();
    advance(Duration.ofSeconds(1));
    assertEquals(0, atB.frames.size());
    assertEquals(1, atB.completions.get());
    atB.assertClean();
  }

  // ---------------------------------------------------------------------------------------------
  // One receiver per link
  // ---------------------------------------------------------------------------------------------

  @Test
  void secondReceiverGetsIllegalStateException() {
    LocalTransport.Connection c = connect();
    Receiver first = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(first);
    StepVerifier.create(c.b().receive())
        .expectErrorSatisfies(e -> assertInstanceOf(IllegalStateException.class, e))
        .verify(Duration.ofSeconds(5));
    // the first receiver still gets the frames
    c.a().send(Flux.just(frame(0, 8), frame(1, 8))).subscribe();
    assertEquals(List.of(0, 1), first.indices());
    first.assertClean();
  }

  @Test
  void rejectedSecondReceiverDoesNotAddDemandForTheFirst() {
    LocalTransport.Connection c = connect();
    Receiver first = new Receiver(1);
    c.b().receive().subscribe(first);
    // a second subscriber requesting in onSubscribe, as every Reactor subscriber does
    Receiver second = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(second);
    assertEquals(1, second.errors.size());
    assertInstanceOf(IllegalStateException.class, second.errors.get(0));

    c.a().send(Flux.fromIterable(frames(3, 8))).subscribe();
    assertEquals(List.of(0), first.indices(), "the first receiver requested one frame");
    first.assertClean();
    assertEquals(0, second.frames.size());
  }

  @Test
  void rejectedSecondReceiverCancellingDoesNotDetachTheFirst() {
    LocalTransport.Connection c = connect();
    Receiver first = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(first);
    Receiver second = new Receiver();
    c.b().receive().subscribe(second);
    assertEquals(1, second.errors.size());
    second.cancel(); // allowed, and must be a no-op for a rejected subscription

    c.a().send(Flux.fromIterable(frames(3, 8))).subscribe();
    assertEquals(List.of(0, 1, 2), first.indices());
    first.assertClean();
  }

  @Test
  void sendReturnsMonoThatCompletesOnClose() {
    LocalTransport.Connection c = connect();
    c.b().receive().subscribe(new Receiver(Long.MAX_VALUE));
    Mono<Void> sending = c.a().send(Flux.just(frame(0, 8)));
    StepVerifier.create(sending)
        .expectSubscription()
        .then(() -> assertEquals(8, c.bytesAtoB()))
        .then(c::close)
        .expectComplete().verify(Duration.ofSeconds(5));
  }

  @Test
  void completedSenderClosesTheConnectionAfterDelivery() {
    LocalTransport.Connection c = connect(10_000, Duration.ofMillis(30));
    Receiver atB = new Receiver(Long.MAX_VALUE);
    c.b().receive().subscribe(atB);
    c.a().send(Flux.fromIterable(frames(10, 100))).subscribe();
    assertFalse(c.a().isDisposed(), "frames are still in flight");
    advance(Duration.ofSeconds(5));
    assertEquals(range(10), atB.indices());
    assertTrue(c.a().isDisposed());
    assertTrue(c.b().isDisposed());
  }
}
