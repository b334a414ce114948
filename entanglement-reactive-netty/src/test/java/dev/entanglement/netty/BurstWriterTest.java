package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.transport.FrameSubscription;
import dev.entanglement.transport.Link;
import io.netty.bootstrap.Bootstrap;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.channel.ChannelPromise;
import io.netty.channel.DefaultEventLoopGroup;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.channel.local.LocalAddress;
import io.netty.channel.local.LocalChannel;
import io.netty.channel.local.LocalServerChannel;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;

@ExtendWith(LeakDetection.class)
class BurstWriterTest {
  private static final byte[] END = Link.END_OF_BURST;

  /**
   * A source driven by the test: records what is asked for, emits what the test says. Counting
   * bytes, it is a {@link FrameSubscription} as a node's is, and records the order of the requests.
   */
  private static final class Source implements Publisher<byte[]> {
    private final boolean countsBytes;
    Subscriber<? super byte[]> subscriber;
    final AtomicLong requested = new AtomicLong();
    final AtomicLong requestedBytes = new AtomicLong();
    final List<String> requests = new java.util.concurrent.CopyOnWriteArrayList<>();
    final AtomicBoolean cancelled = new AtomicBoolean();

    Source() {
      this(false);
    }

    Source(boolean countsBytes) {
      this.countsBytes = countsBytes;
    }

    @Override
    public void subscribe(Subscriber<? super byte[]> s) {
      subscriber = s;
      s.onSubscribe(countsBytes ? new Counting() : new Plain());
    }

    private class Plain implements Subscription {
      @Override
      public void request(long n) {
        requested.addAndGet(n);
        requests.add("frames " + n);
      }

      @Override
      public void cancel() {
        cancelled.set(true);
      }
    }

    private final class Counting extends Plain implements FrameSubscription {
      @Override
      public void request(long frames, long bytes) {
        requested.addAndGet(frames);
        requestedBytes.addAndGet(bytes);
        requests.add("frames " + frames + " bytes " + bytes);
      }
    }

    void emit(byte[]... bodies) {
      for (byte[] b : bodies) {
        subscriber.onNext(b);
      }
    }
  }

  /** Holds every write's promise until released, and counts flushes. */
  private static final class HeldWrites extends ChannelOutboundHandlerAdapter {
    final List<ChannelPromise> promises = new ArrayList<>();
    final List<byte[]> written = new ArrayList<>();
    int flushes;

    @Override
    public void write(ChannelHandlerContext ctx, Object msg, ChannelPromise promise) {
      ByteBuf buf = (ByteBuf) msg;
      byte[] bytes = new byte[buf.readableBytes()];
      buf.readBytes(bytes);
      buf.release();
      written.add(bytes);
      promises.add(promise);
    }

    @Override
    public void flush(ChannelHandlerContext ctx) {
      flushes++;
    }

    void completeAll() {
      promises.forEach(ChannelPromise::setSuccess);
      promises.clear();
    }
  }

  /** A writer on an embedded channel whose writes are held, fed by a {@link Source}. */
  private static final class Harness implements AutoCloseable {
    final HeldWrites held = new HeldWrites();
    final EmbeddedChannel ch = new EmbeddedChannel(held);
    final Source source;
    final AtomicBoolean completed = new AtomicBoolean();
    final AtomicReference<Throwable> failure = new AtomicReference<>();
    final Disposable subscription;

    Harness(int window) {
      this(window, new Source());
    }

    Harness(int window, Source source) {
      this.source = source;
      subscription =
          BurstWriter.write(ch, source, window, BurstWriter::streamRun)
              .subscribe(null, failure::set, () -> completed.set(true));
    }

    @Override
    public void close() {
      ch.finishAndReleaseAll();
    }
  }

  private static byte[] body(int size, int seed) {
    byte[] b = new byte[size];
    new Random(seed).nextBytes(b);
    b[0] = 3; // any non-empty body is a frame to the writer
    return b;
  }

  private static byte[] framed(byte[]... bodies) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] b : bodies) {
      out.writeBytes(ByteBuffer.allocate(Framing.HEADER_BYTES).putInt(b.length).putInt(0).array());
      out.writeBytes(b);
    }
    return out.toByteArray();
  }

  @Test
  @DisplayName("on a channel no longer registered (closed while the engine sends) the writer fails; the source's onNext does not throw")
  void deregisteredChannelFailsTheWriter() {
    EmbeddedChannel ch = new EmbeddedChannel(false, false); // as a closed channel: no event loop
    Source source = new Source();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe(null, failure::set);
    source.emit(body(10, 1), END);
    assertInstanceOf(IllegalStateException.class, failure.get());
    assertTrue(source.cancelled.get());
    source.emit(body(10, 2), END); // after the end: ignored
  }

  @Test
  @DisplayName("a run's frames wait for its end, then leave in one write and one flush")
  void runLeavesAtItsEnd() {
    try (Harness h = new Harness(128)) {
      assertEquals(128, h.source.requested.get(), "the window");
      byte[] a = body(40, 1);
      byte[] b = body(50, 2);
      byte[] c = body(60, 3);
      h.source.emit(a, b, c);
      assertEquals(0, h.held.written.size(), "held until the run ends");
      h.source.emit(END);
      assertEquals(1, h.held.written.size());
      assertArrayEquals(framed(a, b, c), h.held.written.get(0));
      assertEquals(1, h.held.flushes);
      assertEquals(128, h.source.requested.get(), "nothing more asked for before the socket took the run");
      h.held.completeAll();
      assertEquals(128 + 4, h.source.requested.get(), "the window, and the three frames and the marker again");
    }
  }

  @Test
  @DisplayName("from a source that counts bytes: frames and bytes are asked for in one signal, at the start and after each run, as many as the run held")
  void framesAndBytesAreAskedForTogether() {
    try (Harness h = new Harness(128, new Source(true))) {
      assertEquals(List.of("frames 128 bytes " + BurstWriter.MAX_UNWRITTEN), h.source.requests);
      h.source.emit(body(40, 1), body(60, 2), END);
      h.source.emit(END); // a marker that ends nothing: its unit at once, no bytes
      h.held.completeAll();
      assertEquals(List.of("frames 128 bytes " + BurstWriter.MAX_UNWRITTEN, "frames 1", "frames 3 bytes 100"),
          h.source.requests);
    }
  }

  /**
   * Property: a source that hands over frames as a node does (while it has frame demand and byte
   * demand left, a marker at the end of each run while frame demand is left) with sizes that
   * change without warning, from 10 bytes to 300 kB. The bytes handed over and not yet written
   * never exceed {@link BurstWriter#MAX_UNWRITTEN} plus the one frame that crossed the line, and
   * demand keeps coming.
   */
  @ParameterizedTest
  @ValueSource(longs = {1, 2, 3, 4, 5})
  void unwrittenBytesStayBoundedWhateverTheFrameSizes(long seed) {
    Random random = new Random(seed);
    try (Harness h = new Harness(BurstWriter.WINDOW, new Source(true))) {
      long framesHanded = 0;
      long bytesHanded = 0;
      long unwritten = 0;
      long sent = 0;
      long largest = 0; // of the frames handed over and not yet written
      for (int round = 0; round < 200; round++) {
        int size = random.nextBoolean() ? 10 + random.nextInt(200) : 100_000 + random.nextInt(200_000);
        boolean open = false;
        while (framesHanded < h.source.requested.get() && bytesHanded < h.source.requestedBytes.get()) {
          int n = Math.max(1, size + random.nextInt(100) - 50);
          h.source.emit(body(n, round));
          framesHanded++;
          bytesHanded += n;
          unwritten += n;
          largest = Math.max(largest, n);
          sent++;
          open = true;
        }
        if (open && framesHanded < h.source.requested.get()) {
          h.source.emit(END);
          framesHanded++;
        }
        assertTrue(unwritten <= BurstWriter.MAX_UNWRITTEN + largest,
            "round " + round + ": " + unwritten + " bytes handed over and not written");
        if (random.nextInt(3) > 0) { // now and then the socket takes nothing for a round
          h.held.completeAll();
          unwritten = 0;
          largest = 0;
        }
      }
      assertTrue(sent > 200, "demand keeps coming: " + sent + " frames");
    }
  }

  @Test
  @DisplayName("from a source that does not count bytes, frames are asked for again in full: the window bounds them")
  void framesOnlyFromAPlainSource() {
    try (Harness h = new Harness(128)) {
      for (int i = 0; i < 5; i++) {
        h.source.emit(body(200, i), body(200, i + 100), END);
        h.held.completeAll();
      }
      assertEquals(128 + 15, h.source.requested.get());
      assertEquals(0, h.source.requestedBytes.get());
    }
  }

  @Test
  @DisplayName("the last frame asked for ends a run without a marker")
  void exhaustedDemandEndsARun() {
    try (Harness h = new Harness(2)) {
      byte[] a = body(10, 1);
      h.source.emit(a);
      assertEquals(0, h.held.written.size());
      byte[] b = body(10, 2);
      h.source.emit(b);
      assertArrayEquals(framed(a, b), h.held.written.get(0));
      h.held.completeAll();
      assertEquals(4, h.source.requested.get());
    }
  }

  @Test
  @DisplayName("a run larger than the buffer bound goes out in several buffers, a larger frame in its own")
  void largeRunsAreSplit() {
    try (Harness h = new Harness(128)) {
      byte[] a = body(30_000, 1);
      byte[] b = body(30_000, 2);
      byte[] c = body(30_000, 3);
      byte[] huge = body(BurstWriter.MAX_BUFFER + 10, 4);
      h.source.emit(a, b, c, huge, END);
      assertEquals(3, h.held.written.size());
      assertArrayEquals(framed(a, b), h.held.written.get(0));
      assertArrayEquals(framed(c), h.held.written.get(1));
      assertArrayEquals(framed(huge), h.held.written.get(2));
      assertEquals(1, h.held.flushes);
      h.held.completeAll();
      assertEquals(128 + 5, h.source.requested.get(), "the four frames and the marker again");
    }
  }

  @Test
  @DisplayName("a run of only a marker writes nothing and asks for one more")
  void markerAlone() {
    try (Harness h = new Harness(128)) {
      h.source.emit(END);
      assertEquals(0, h.held.written.size());
      assertEquals(0, h.held.flushes);
      assertEquals(129, h.source.requested.get());
    }
  }

  @Test
  @DisplayName("a marker that ends no frame held gives its unit back at once, from the sender's thread, while the event loop is busy")
  void aMarkerWithoutFramesNeedsNoEventLoop() throws Exception {
    // A plain thread, not Netty's: the test holds this loop on a latch.
    DefaultEventLoopGroup group = new DefaultEventLoopGroup(1, (java.util.concurrent.ThreadFactory) r -> new Thread(r, "burst-writer-test-loop"));
    CountDownLatch busy = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    try {
      HeldWrites held = new HeldWrites();
      LocalChannel ch = new LocalChannel();
      ch.pipeline().addLast(held);
      group.register(ch).sync();
      Source source = new Source();
      BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe();
      ch.eventLoop().execute(() -> {
        busy.countDown();
        try {
          release.await(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      });
      assertTrue(busy.await(10, TimeUnit.SECONDS));
      source.emit(END);
      assertEquals(129, source.requested.get(), "asked for again before the event loop ran anything");
      release.countDown();
      ch.eventLoop().submit(() -> {}).sync();
      assertEquals(0, held.written.size());
      assertEquals(0, held.flushes);
      assertEquals(129, source.requested.get());
      ch.close().sync();
    } finally {
      release.countDown();
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
    }
  }

  @Test
  @DisplayName("completion writes the pending run and completes once the channel took it")
  void completionWritesAndWaits() {
    try (Harness h = new Harness(128)) {
      h.source.emit(body(20, 1), END);
      byte[] last = body(20, 2);
      h.source.emit(last);
      h.source.subscriber.onComplete();
      assertEquals(2, h.held.written.size());
      assertArrayEquals(framed(last), h.held.written.get(1));
      assertTrue(!h.completed.get(), "not before the writes are done");
      h.held.completeAll();
      assertTrue(h.completed.get());
      assertEquals(128 + 2, h.source.requested.get(), "the first run's items only: the source completed");
    }
  }

  @Test
  @DisplayName("a last run the channel does not take within LAST_WRITE fails the writer, so that the link is closed without it")
  void aLastRunNotWrittenInTimeFailsTheWriter() {
    try (Harness h = new Harness(128)) {
      h.ch.freezeTime(); // the channel's clock moves only as the test advances it
      h.source.emit(body(20, 1));
      h.source.subscriber.onComplete();
      assertEquals(1, h.held.written.size());
      h.ch.advanceTimeBy(BurstWriter.LAST_WRITE.toMillis() - 1, TimeUnit.MILLISECONDS);
      h.ch.runScheduledPendingTasks();
      assertNull(h.failure.get());
      h.ch.advanceTimeBy(1, TimeUnit.MILLISECONDS);
      h.ch.runScheduledPendingTasks();
      assertInstanceOf(TimeoutException.class, h.failure.get());
      assertFalse(h.completed.get());
      h.held.completeAll(); // written after all: too late, and nothing else happens
      assertFalse(h.completed.get());
    }
  }

  @Test
  @DisplayName("a last run written in time disarms the deadline")
  void aLastRunWrittenInTimeCompletes() {
    try (Harness h = new Harness(128)) {
      h.ch.freezeTime(); // the channel's clock moves only as the test advances it
      h.source.emit(body(20, 1));
      h.source.subscriber.onComplete();
      h.held.completeAll();
      assertTrue(h.completed.get());
      assertEquals(-1, h.ch.runScheduledPendingTasks(), "the deadline was cancelled, not left to fire");
      h.ch.advanceTimeBy(BurstWriter.LAST_WRITE.toMillis(), TimeUnit.MILLISECONDS);
      h.ch.runScheduledPendingTasks();
      assertNull(h.failure.get());
    }
  }

  @Test
  @DisplayName("a failed write cancels the source and fails the writer; nothing leaks")
  void failedWrite() {
    try (Harness h = new Harness(128)) {
      h.ch.close();
      h.source.emit(body(20, 1), END);
      assertTrue(h.source.cancelled.get());
      assertTrue(h.failure.get() != null);
      h.source.emit(body(20, 2), END); // a late frame is dropped
    }
  }

  @Test
  @DisplayName("a run that cannot be encoded (no direct memory left) fails the writer and cancels the source; the source's onNext does not throw (review, session 30)")
  void anEncodingThatThrowsFailsTheWriter() {
    EmbeddedChannel ch = new EmbeddedChannel();
    Source source = new Source();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    BurstWriter.write(ch, source, 128, (c, run) -> {
          throw new OutOfMemoryError("as Netty's OutOfDirectMemoryError");
        })
        .subscribe(null, failure::set);
    source.emit(body(10, 1), END); // the run is written inline: an embedded channel's loop is this thread
    assertInstanceOf(OutOfMemoryError.class, failure.get());
    assertTrue(source.cancelled.get());
    source.emit(body(10, 2), END); // after the end: ignored
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("cancelling drops the pending run and cancels the source")
  void cancellation() {
    try (Harness h = new Harness(128)) {
      h.source.emit(body(20, 1));
      h.subscription.dispose();
      assertTrue(h.source.cancelled.get());
      h.source.emit(END);
      assertEquals(0, h.held.written.size());
    }
  }

  @Test
  @DisplayName("with a window of one (a bandwidth cap) every frame is a run of its own")
  void windowOfOne() {
    try (Harness h = new Harness(1)) {
      h.source.emit(body(20, 1));
      assertEquals(1, h.held.written.size());
      assertEquals(1, h.source.requested.get());
      h.held.completeAll();
      assertEquals(2, h.source.requested.get());
    }
  }

  /**
   * Race: a producer on its own thread emits frames in runs of random length, each run ended by a
   * marker, or by the demand running out and then at times a marker once demand is back, never
   * more than asked for; the channel's event loop writes them to an in-JVM connection. The reader
   * gets every frame once, in order.
   */
  @ParameterizedTest
  @ValueSource(longs = {1, 2, 3})
  void producerThreadAgainstEventLoop(long seed) throws Exception {
    DefaultEventLoopGroup group = new DefaultEventLoopGroup(2);
    int frames = 20_000;
    ByteArrayOutputStream expected = new ByteArrayOutputStream();
    ByteArrayOutputStream received = new ByteArrayOutputStream();
    CountDownLatch all = new CountDownLatch(1);
    LocalAddress address = new LocalAddress("burst-writer-" + seed);
    Channel server = null;
    Channel client = null;
    try {
      List<byte[]> bodies = new ArrayList<>();
      Random random = new Random(seed);
      for (int i = 0; i < frames; i++) {
        byte[] b = body(1 + random.nextInt(300), i);
        bodies.add(b);
        expected.writeBytes(framed(b));
      }
      int total = expected.size();
      server =
          new ServerBootstrap()
              .group(group)
              .channel(LocalServerChannel.class)
              .childHandler(
                  new ChannelInitializer<LocalChannel>() {
                    @Override
                    protected void initChannel(LocalChannel c) {
                      c.pipeline().addLast(new ChannelInboundHandlerAdapter() {
                        @Override
                        public void channelRead(ChannelHandlerContext ctx, Object msg) {
                          ByteBuf buf = (ByteBuf) msg;
                          byte[] bytes = new byte[buf.readableBytes()];
                          buf.readBytes(bytes);
                          buf.release();
                          synchronized (received) {
                            received.writeBytes(bytes);
                            if (received.size() >= total) {
                              all.countDown();
                            }
                          }
                        }
                      });
                    }
                  })
              .bind(address)
              .sync()
              .channel();
      client =
          new Bootstrap()
              .group(group)
              .channel(LocalChannel.class)
              .handler(new ChannelInboundHandlerAdapter())
              .connect(address)
              .sync()
              .channel();
      Semaphore demand = new Semaphore(0);
      AtomicReference<Subscriber<? super byte[]>> subscriber = new AtomicReference<>();
      Publisher<byte[]> source =
          s -> {
            subscriber.set(s);
            s.onSubscribe(
                new Subscription() {
                  @Override
                  public void request(long n) {
                    demand.release((int) n);
                  }

                  @Override
                  public void cancel() {}
                });
          };
      AtomicReference<Throwable> failure = new AtomicReference<>();
      BurstWriter.write(client, source, BurstWriter.WINDOW, BurstWriter::streamRun)
          .subscribe(null, failure::set);
      int next = 0;
      while (next < frames) {
        int run = 1 + random.nextInt(40);
        for (int k = 0; k < run && next < frames; k++) {
          assertTrue(demand.tryAcquire(10, TimeUnit.SECONDS), "the writer asks for more");
          subscriber.get().onNext(bodies.get(next++));
        }
        // As the engine: a marker ends a run while demand is left, or else as soon as demand is
        // back, before any next frame (here at random, and after the last run): by then the writer
        // may have sent the run, at the last frame it asked for, so the marker ends nothing.
        boolean endNow = demand.tryAcquire();
        if (!endNow && (next == frames || random.nextBoolean())) {
          assertTrue(demand.tryAcquire(10, TimeUnit.SECONDS), "the writer asks for more");
          endNow = true;
        }
        if (endNow) {
          subscriber.get().onNext(END);
        }
      }
      assertTrue(all.await(30, TimeUnit.SECONDS), "every frame arrives");
      assertEquals(null, failure.get());
      synchronized (received) {
        assertArrayEquals(expected.toByteArray(), received.toByteArray());
      }
    } finally {
      if (client != null) {
        client.close().sync();
      }
      if (server != null) {
        server.close().sync();
      }
      group.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
    }
  }
}
