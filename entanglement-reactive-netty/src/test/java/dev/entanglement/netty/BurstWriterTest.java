package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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

  /** A source driven by the test: records what is asked for, emits what the test says. */
  private static final class Source implements Publisher<byte[]> {
    Subscriber<? super byte[]> subscriber;
    final AtomicLong requested = new AtomicLong();
    final AtomicBoolean cancelled = new AtomicBoolean();

    @Override
    public void subscribe(Subscriber<? super byte[]> s) {
      subscriber = s;
      s.onSubscribe(
          new Subscription() {
            @Override
            public void request(long n) {
              requested.addAndGet(n);
            }

            @Override
            public void cancel() {
              cancelled.set(true);
            }
          });
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
  @DisplayName("a run's frames wait for its end, then leave in one write and one flush")
  void runLeavesAtItsEnd() {
    HeldWrites held = new HeldWrites();
    EmbeddedChannel ch = new EmbeddedChannel(held);
    Source source = new Source();
    BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe();
    assertEquals(128, source.requested.get());
    byte[] a = body(40, 1);
    byte[] b = body(50, 2);
    byte[] c = body(60, 3);
    source.emit(a, b, c);
    assertEquals(0, held.written.size(), "held until the run ends");
    source.emit(END);
    assertEquals(1, held.written.size());
    assertArrayEquals(framed(a, b, c), held.written.get(0));
    assertEquals(1, held.flushes);
    assertEquals(128, source.requested.get(), "nothing more asked for before the socket took the run");
    held.completeAll();
    assertEquals(128 + 4, source.requested.get(), "three frames and the marker asked for again");
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("the last frame asked for ends a run without a marker")
  void exhaustedDemandEndsARun() {
    HeldWrites held = new HeldWrites();
    EmbeddedChannel ch = new EmbeddedChannel(held);
    Source source = new Source();
    BurstWriter.write(ch, source, 2, BurstWriter::streamRun).subscribe();
    byte[] a = body(10, 1);
    source.emit(a);
    assertEquals(0, held.written.size());
    byte[] b = body(10, 2);
    source.emit(b);
    assertArrayEquals(framed(a, b), held.written.get(0));
    held.completeAll();
    assertEquals(4, source.requested.get());
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("a run larger than the buffer bound goes out in several buffers, a larger frame in its own")
  void largeRunsAreSplit() {
    HeldWrites held = new HeldWrites();
    EmbeddedChannel ch = new EmbeddedChannel(held);
    Source source = new Source();
    BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe();
    byte[] a = body(30_000, 1);
    byte[] b = body(30_000, 2);
    byte[] c = body(30_000, 3);
    byte[] huge = body(BurstWriter.MAX_BUFFER + 10, 4);
    source.emit(a, b, c, huge, END);
    assertEquals(3, held.written.size());
    assertArrayEquals(framed(a, b), held.written.get(0));
    assertArrayEquals(framed(c), held.written.get(1));
    assertArrayEquals(framed(huge), held.written.get(2));
    assertEquals(1, held.flushes);
    held.completeAll();
    assertEquals(128 + 5, source.requested.get());
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("a run of only a marker writes nothing and asks for one more")
  void markerAlone() {
    HeldWrites held = new HeldWrites();
    EmbeddedChannel ch = new EmbeddedChannel(held);
    Source source = new Source();
    BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe();
    source.emit(END);
    assertEquals(0, held.written.size());
    assertEquals(0, held.flushes);
    assertEquals(129, source.requested.get());
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("completion writes the pending run and completes once the channel took it")
  void completionWritesAndWaits() {
    HeldWrites held = new HeldWrites();
    EmbeddedChannel ch = new EmbeddedChannel(held);
    Source source = new Source();
    AtomicBoolean completed = new AtomicBoolean();
    BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe(null, null, () -> completed.set(true));
    byte[] a = body(20, 1);
    source.emit(a, END);
    byte[] last = body(20, 2);
    source.emit(last);
    source.subscriber.onComplete();
    assertEquals(2, held.written.size());
    assertArrayEquals(framed(last), held.written.get(1));
    assertTrue(!completed.get(), "not before the writes are done");
    held.completeAll();
    assertTrue(completed.get());
    assertEquals(128 + 2, source.requested.get(), "the first run's items only: the source completed");
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("a failed write cancels the source and fails the writer; nothing leaks")
  void failedWrite() {
    EmbeddedChannel ch = new EmbeddedChannel();
    Source source = new Source();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe(null, failure::set);
    ch.close();
    source.emit(body(20, 1), END);
    assertTrue(source.cancelled.get());
    assertTrue(failure.get() != null);
    source.emit(body(20, 2), END); // a late frame is dropped
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("cancelling drops the pending run and cancels the source")
  void cancellation() {
    HeldWrites held = new HeldWrites();
    EmbeddedChannel ch = new EmbeddedChannel(held);
    Source source = new Source();
    Disposable d = BurstWriter.write(ch, source, 128, BurstWriter::streamRun).subscribe();
    source.emit(body(20, 1));
    d.dispose();
    assertTrue(source.cancelled.get());
    source.emit(END);
    assertEquals(0, held.written.size());
    ch.finishAndReleaseAll();
  }

  @Test
  @DisplayName("with a window of one (a bandwidth cap) every frame is a run of its own")
  void windowOfOne() {
    HeldWrites held = new HeldWrites();
    EmbeddedChannel ch = new EmbeddedChannel(held);
    Source source = new Source();
    BurstWriter.write(ch, source, 1, BurstWriter::streamRun).subscribe();
    byte[] a = body(20, 1);
    source.emit(a);
    assertEquals(1, held.written.size());
    assertEquals(1, source.requested.get());
    held.completeAll();
    assertEquals(2, source.requested.get());
    ch.finishAndReleaseAll();
  }

  /**
   * Race: a producer on its own thread emits frames in runs of random length, each run ended by a
   * marker or by the demand running out, and never more than asked for; the channel's event loop
   * writes them to an in-JVM connection. The reader gets every frame once, in order.
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
        if (demand.tryAcquire()) { // a marker only with demand left, as the engine sends it
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
