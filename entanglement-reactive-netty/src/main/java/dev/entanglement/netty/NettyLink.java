package dev.entanglement.netty;

import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import java.util.function.Consumer;
import java.util.function.Function;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.NettyInbound;

/**
 * A {@link Link} over a Reactor Netty connection. Inbound frame bodies are copied out of their
 * buffers at once (the bridge releases the buffers after {@code onNext}), so no {@code ByteBuf}
 * escapes. Outbound frames are written a run at a time by a {@link BurstWriter}, which asks for
 * more only as the channel takes what it wrote; with a bandwidth limit, one at a time: after a
 * frame of {@code n} bytes the next is requested only {@code n / bytesPerSecond} seconds later, so
 * the rate never exceeds the cap and the engine's coalescing queue absorbs any overload.
 */
final class NettyLink implements Link {
  private static final Logger log = LoggerFactory.getLogger(NettyLink.class);

  private final Connection connection;
  private final NettyInbound inbound;
  private final PeerId remote;
  private final long bytesPerSecond;
  private final Function<NettyInbound, Flux<byte[]>> bodies;
  private final BurstWriter.Encoding encoding;
  private final Consumer<Connection> closeAfterLastFrame;

  /**
   * @param bodies turns the inbound messages into frame bodies (and {@code END_OF_BURST} markers)
   * @param encoding writes a run of frame bodies as the connection carries them
   * @param closeAfterLastFrame closes the connection once the engine ended its frames (after an
   *     ERROR or a GOAWAY), so that the peer reads every frame written before
   */
  NettyLink(
      Connection connection,
      NettyInbound inbound,
      PeerId remote,
      long bytesPerSecond,
      Function<NettyInbound, Flux<byte[]>> bodies,
      BurstWriter.Encoding encoding,
      Consumer<Connection> closeAfterLastFrame) {
    this.connection = connection;
    this.inbound = inbound;
    this.remote = remote;
    this.bytesPerSecond = bytesPerSecond;
    this.bodies = bodies;
    this.encoding = encoding;
    this.closeAfterLastFrame = closeAfterLastFrame;
  }

  /** A stream link: bodies arrive split by {@link FrameDecoder}; frames go out with a header. */
  static NettyLink stream(Connection c, PeerId remote, long bytesPerSecond) {
    return new NettyLink(
        c,
        c.inbound(),
        remote,
        bytesPerSecond,
        in -> in.receiveObject().map(NettyLink::streamBody),
        BurstWriter::streamRun,
        conn -> GracefulClose.afterFlush(conn.channel(), conn::dispose));
  }

  /** A body split by {@link FrameDecoder}, or the marker it puts after the bodies of one read. */
  private static byte[] streamBody(Object message) {
    return message == FrameDecoder.END_OF_READ ? END_OF_BURST : ByteBufUtil.getBytes((ByteBuf) message);
  }

  @Override
  public PeerId remote() {
    return remote;
  }

  @Override
  public Flux<byte[]> receive() {
    return bodies
        .apply(inbound)
        .onErrorResume(
            e -> {
              log.debug("link to {} ended with {}", remote, e.toString());
              connection.dispose();
              return Mono.empty();
            });
  }

  @Override
  public Mono<Void> send(Publisher<byte[]> source) {
    return BurstWriter.send(connection.channel(), source, bytesPerSecond, encoding)
        // The engine completes its frames to close after a last frame: it is flushed by now.
        .then(Mono.fromRunnable(() -> closeAfterLastFrame.accept(connection)))
        .then()
        .onErrorResume(
            e -> {
              if (e instanceof Error) {
                log.warn("sending to {} failed", remote, e);
              } else {
                log.debug("sending to {} ended with {}", remote, e.toString());
              }
              if (!GracefulClose.lingering(connection.channel())) {
                connection.dispose(); // otherwise its linger closes it, without a reset
              }
              return Mono.empty();
            });
  }

  @Override
  public Mono<Void> onClose() {
    return connection.onDispose();
  }

  /**
   * Set by {@link #dispose()} at once: the connection's close takes a while (a TLS close_notify
   * first), and the engine must meanwhile see the link as gone, so that a link closed because it
   * lost a crossing never replaces the one that won.
   */
  private volatile boolean disposed;

  @Override
  public void dispose() {
    disposed = true;
    connection.dispose();
  }

  @Override
  public boolean isDisposed() {
    return disposed || connection.isDisposed();
  }

  @Override
  public String toString() {
    return "NettyLink[" + remote + " " + connection.channel().remoteAddress() + "]";
  }
}
