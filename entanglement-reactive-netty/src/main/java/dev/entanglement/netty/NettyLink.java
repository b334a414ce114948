package dev.entanglement.netty;

import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import java.util.function.Function;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.NettyInbound;
import reactor.netty.NettyOutbound;

/**
 * A {@link Link} over a Reactor Netty connection. Inbound frame bodies are copied out of their
 * buffers at once (the bridge releases the buffers after {@code onNext}), so no {@code ByteBuf}
 * escapes. Outbound frames are requested only while the channel is writable (Reactor Netty's
 * {@code send}), and, with a bandwidth limit, one at a time: after a frame of {@code n} bytes the
 * next is requested only {@code n / bytesPerSecond} seconds later, so the rate never exceeds the
 * cap and the engine's coalescing queue absorbs any overload.
 */
final class NettyLink implements Link {
  private static final Logger log = LoggerFactory.getLogger(NettyLink.class);

  private final Connection connection;
  private final NettyInbound inbound;
  private final NettyOutbound outbound;
  private final PeerId remote;
  private final long bytesPerSecond;
  private final Function<Flux<ByteBuf>, Flux<byte[]>> bodies;
  private final Function<Flux<byte[]>, Publisher<?>> frames;

  /**
   * @param bodies turns the inbound messages into frame bodies
   * @param frames turns frame bodies into what the outbound sends
   */
  NettyLink(
      Connection connection,
      NettyInbound inbound,
      NettyOutbound outbound,
      PeerId remote,
      long bytesPerSecond,
      Function<Flux<ByteBuf>, Flux<byte[]>> bodies,
      Function<Flux<byte[]>, Publisher<?>> frames) {
    this.connection = connection;
    this.inbound = inbound;
    this.outbound = outbound;
    this.remote = remote;
    this.bytesPerSecond = bytesPerSecond;
    this.bodies = bodies;
    this.frames = frames;
  }

  /** A stream link: bodies arrive split by {@link FrameDecoder}; frames go out with a header. */
  static NettyLink stream(Connection c, PeerId remote, long bytesPerSecond) {
    return new NettyLink(
        c,
        c.inbound(),
        c.outbound(),
        remote,
        bytesPerSecond,
        in -> in.map(ByteBufUtil::getBytes),
        out -> out.map(b -> Framing.encode(c.channel().alloc(), b)));
  }

  @Override
  public PeerId remote() {
    return remote;
  }

  @Override
  public Flux<byte[]> receive() {
    return bodies
        .apply(inbound.receive())
        .onErrorResume(
            e -> {
              log.debug("link to {} ended with {}", remote, e.toString());
              connection.dispose();
              return Mono.empty();
            });
  }

  @Override
  public Mono<Void> send(Publisher<byte[]> source) {
    @SuppressWarnings("unchecked")
    Publisher<Object> out =
        (Publisher<Object>) frames.apply(Throttle.apply(Flux.from(source), bytesPerSecond));
    // Deferred: Reactor Netty throws at assembly if the channel closed in the meantime.
    return Mono.defer(() -> outbound.sendObject(out).then())
        // The engine completes its frames to close after a last frame: it is flushed by now.
        .then(Mono.fromRunnable(() -> GracefulClose.afterFlush(connection.channel(), connection::dispose)))
        .then()
        .onErrorResume(
            e -> {
              log.debug("sending to {} ended with {}", remote, e.toString());
              connection.dispose();
              return Mono.empty();
            });
  }

  @Override
  public Mono<Void> onClose() {
    return connection.onDispose();
  }

  @Override
  public void dispose() {
    connection.dispose();
  }

  @Override
  public boolean isDisposed() {
    return connection.isDisposed();
  }

  @Override
  public String toString() {
    return "NettyLink[" + remote + " " + connection.channel().remoteAddress() + "]";
  }
}
