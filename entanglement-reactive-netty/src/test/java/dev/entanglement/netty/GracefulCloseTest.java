package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.embedded.EmbeddedChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link GracefulClose}: the output is shut first, and the connection closes when the peer closes
 * its side, not only when the linger runs out.
 */
class GracefulCloseTest {
  private EventLoopGroup group;

  @BeforeEach
  void start() {
    group = new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
  }

  @AfterEach
  void stop() throws InterruptedException {
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
  }

  /**
   * A connection whose reader had stopped asking (auto-read off: a full window, a paused link) still
   * reads the peer's end of stream while it lingers, so it closes then, before its linger runs out:
   * left unread, the end of stream (and the bytes before it) would wait for the linger, whose close
   * of a socket with unread input resets the connection.
   */
  @Test
  void aPausedReaderClosesWhenThePeerDoes() throws Exception {
    CompletableFuture<Channel> accepted = new CompletableFuture<>();
    Channel server =
        new ServerBootstrap()
            .group(group)
            .channel(NioServerSocketChannel.class)
            .childOption(ChannelOption.AUTO_READ, false)
            .childHandler(
                new ChannelInitializer<SocketChannel>() {
                  @Override
                  protected void initChannel(SocketChannel ch) {
                    accepted.complete(ch);
                  }
                })
            .bind("127.0.0.1", 0)
            .sync()
            .channel();
    try (Socket peer = new Socket()) {
      peer.connect((InetSocketAddress) server.localAddress(), 5_000);
      peer.setSoTimeout(10_000);
      Channel ch = accepted.get(10, TimeUnit.SECONDS);
      // Input the paused reader has not read, then the peer waits for the end of the output.
      peer.getOutputStream().write(new byte[] {1, 2, 3});
      peer.getOutputStream().flush();

      AtomicBoolean lingerRanOut = new AtomicBoolean();
      ch.eventLoop()
          .execute(
              () ->
                  GracefulClose.afterFlush(
                      ch,
                      () -> {
                        lingerRanOut.set(true);
                        ch.close();
                      }));
      InputStream in = peer.getInputStream();
      assertEquals(-1, in.read(), "the output is shut: the peer reads end of stream");
      peer.shutdownOutput(); // the peer closes its side in turn

      assertTrue(ch.closeFuture().await(10, TimeUnit.SECONDS), "the connection closes");
      assertFalse(lingerRanOut.get(), "closed on the peer's end of stream, not by the linger");
    } finally {
      server.close().sync();
    }
  }

  /**
   * A refused frame shuts the output and lingers; the engine, not told of the refusal, may send
   * another frame meanwhile. Its failed write must not close the connection at once, which would
   * reset it while the peer may still be sending and discard the ERROR the peer has not read
   * (review, session 30: it closed 14 ms after such a frame instead of at the linger's end).
   */
  @Test
  void aFrameSentWhileLingeringDoesNotCutTheLingerShort() throws Exception {
    reactor.core.publisher.Sinks.Many<byte[]> frames =
        reactor.core.publisher.Sinks.many().unicast().onBackpressureBuffer();
    CompletableFuture<reactor.netty.Connection> attached = new CompletableFuture<>();
    CompletableFuture<Long> closedAt = new CompletableFuture<>();
    reactor.netty.DisposableServer server =
        reactor.netty.tcp.TcpServer.create().host("127.0.0.1").port(0)
            .doOnConnection(c -> c.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(1 << 20)))
            .handle((in, out) -> {
              in.withConnection(c -> {
                c.channel().closeFuture().addListener(f -> closedAt.complete(System.nanoTime()));
                NettyLink link = NettyLink.stream(c, dev.entanglement.PeerId.of("raw"), 0);
                link.receive().subscribe(b -> {}, e -> {});
                link.send(frames.asFlux()).subscribe();
                attached.complete(c);
              });
              return reactor.core.publisher.Mono.never();
            })
            .bindNow();
    try (Socket peer = new Socket("127.0.0.1", server.port())) {
      reactor.netty.Connection c = attached.get(5, TimeUnit.SECONDS);
      peer.getOutputStream().write(new byte[8]); // a header announcing an empty body: refused
      peer.getOutputStream().flush();
      assertEquals(8, peer.getInputStream().readNBytes(8).length, "the ERROR's header arrived");
      Eventually.until("the refusal shut the output", java.time.Duration.ofSeconds(5),
          () -> GracefulClose.lingering(c.channel())
              && ((io.netty.channel.socket.DuplexChannel) c.channel()).isOutputShutdown());
      long sent = System.nanoTime();
      frames.tryEmitNext(new byte[] {7, 1, 2, 3}); // a frame the engine sends meanwhile
      frames.tryEmitNext(new byte[0]); // and the marker that ends its run
      long closed = closedAt.get(5, TimeUnit.SECONDS);
      long ms = (closed - sent) / 1_000_000;
      assertTrue(ms >= GracefulClose.LINGER.toMillis() - 500,
          "closed " + ms + " ms after the frame, not at the end of the linger");
    } finally {
      server.disposeNow();
    }
  }

  /** A channel that cannot shut its output alone closes at once. */
  @Test
  void aChannelThatIsNotDuplexClosesAtOnce() {
    EmbeddedChannel ch = new EmbeddedChannel();
    AtomicBoolean closed = new AtomicBoolean();
    GracefulClose.afterFlush(ch, () -> closed.set(true));
    assertTrue(closed.get());
    ch.finishAndReleaseAll();
  }
}
