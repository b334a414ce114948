package dev.entanglement.netty;

import dev.entanglement.ErrorCode;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame;
import io.netty.handler.codec.http.websocketx.CloseWebSocketFrame;
import io.netty.handler.codec.http.websocketx.PingWebSocketFrame;
import io.netty.handler.codec.http.websocketx.PongWebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketCloseStatus;
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import io.netty.util.AttributeKey;
import java.util.List;
import org.jspecify.annotations.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.http.websocket.WebsocketInbound;
import reactor.netty.http.websocket.WebsocketOutbound;

/**
 * The WebSocket mapping: one binary message carries one frame, header included, exactly as on a
 * stream. A text message, a header that disagrees with the message length, an oversize frame or
 * an unknown critical flag gets an ERROR frame and the connection is closed.
 *
 * <p>A connection the node ends is closed with the WebSocket close handshake, so that the peer
 * (a browser among them) sees a clean close with a status, not an abnormal one (1006): after the
 * engine's last frame (an ERROR or a GOAWAY) 1000; after a refused message 1003 (text), 1009 (too
 * long) or 1002 (any other refusal). The close frame is the last frame on the connection: once it
 * is written the channel is marked ({@link #markCloseSent}), and no binary message is written after
 * it. Then the output is shut ({@link GracefulClose}), and the connection closes when the peer
 * closes its side or after the linger.
 */
final class WebSocketFrames {
  private static final Logger log = LoggerFactory.getLogger(WebSocketFrames.class);
  private static final AttributeKey<Boolean> CLOSE_SENT = AttributeKey.valueOf("entanglement.wsCloseSent");

  private WebSocketFrames() {}

  /** An upgrade hook's answer, where a failure or no answer is a refusal with 403. */
  static Mono<WebSocketServerTransport.Upgrade> decide(Mono<WebSocketServerTransport.Upgrade> answer) {
    return answer
        .onErrorResume(
            e -> {
              log.warn("upgrade hook failed: {}", e.toString());
              return Mono.just(WebSocketServerTransport.Upgrade.forbidden());
            })
        .defaultIfEmpty(WebSocketServerTransport.Upgrade.forbidden());
  }

  static NettyLink link(
      Connection c,
      WebsocketInbound in,
      WebsocketOutbound out,
      dev.entanglement.PeerId remote,
      int maxFrame,
      long bandwidth) {
    // The aggregator goes in now, before the handshake's handler returns: added when the engine
    // subscribes, it would miss the fragments of a message that arrived in the meantime.
    WebsocketInbound whole = in.aggregateFrames(maxFrame + Framing.HEADER_BYTES);
    return new NettyLink(
        c,
        in,
        remote,
        bandwidth,
        ignored -> bodies(c, whole, out, maxFrame),
        WebSocketFrames::writeRun,
        conn -> closeHandshake(conn, WebSocketCloseStatus.NORMAL_CLOSURE));
  }

  /**
   * Marks {@code ch}'s close frame as sent: from now on {@link #writeRun} writes nothing. For a
   * close frame written by another layer (the WebFlux session's close).
   */
  static void markCloseSent(Channel ch) {
    ch.attr(CLOSE_SENT).set(Boolean.TRUE);
  }

  /**
   * Starts the close handshake, at most once per connection: writes a close frame with {@code
   * status} after whatever was written before, then shuts the output once it is flushed; closes
   * the connection if the frame is not flushed within {@link GracefulClose#LINGER}.
   */
  static void closeHandshake(Connection c, WebSocketCloseStatus status) {
    Channel ch = c.channel();
    if (!ch.eventLoop().inEventLoop()) {
      ch.eventLoop().execute(() -> closeHandshake(c, status));
      return;
    }
    if (ch.attr(CLOSE_SENT).getAndSet(Boolean.TRUE) != null) {
      return;
    }
    if (!ch.isActive()) {
      c.dispose();
      return;
    }
    ch.writeAndFlush(new CloseWebSocketFrame(status))
        .addListener(f -> GracefulClose.afterFlush(ch, c::dispose));
    GracefulClose.closeIfStuck(ch, c::dispose);
  }

  /**
   * A run of frames as binary messages, one frame each; returns the last write's future, or null
   * if nothing was written (a run after the close frame is dropped).
   */
  static @Nullable ChannelFuture writeRun(Channel ch, List<byte[]> run) {
    if (isCloseSent(ch)) {
      return null;
    }
    ChannelFuture last = null;
    for (byte[] body : run) {
      if (body.length > 0) {
        last = ch.write(new BinaryWebSocketFrame(Framing.encode(ch.alloc(), body)));
      }
    }
    return last;
  }

  /**
   * The frame bodies of {@code in}, whose fragmented messages are already aggregated. After a
   * refused message nothing more is delivered: messages read with it do not reach the engine.
   *
   * <p>Each frame is read while it is delivered: Reactor Netty releases it as soon as {@code
   * onNext} returns, so no operator that can hold a signal until the engine asks for more (as
   * {@code concatMap} with a prefetch does: it maps a queued frame later) may be given the frame.
   */
  private static Flux<byte[]> bodies(
      Connection c, WebsocketInbound in, WebsocketOutbound out, int maxFrame) {
    java.util.concurrent.atomic.AtomicBoolean refused = new java.util.concurrent.atomic.AtomicBoolean();
    return in.receiveFrames()
        .<byte[]>handle(
            (frame, sink) -> {
              if (refused.get()) {
                return;
              }
              if (frame instanceof PingWebSocketFrame) {
                answer(c.channel(), frame);
                return;
              }
              if (frame instanceof PongWebSocketFrame || frame instanceof CloseWebSocketFrame) {
                return;
              }
              String refusal = refusal(frame, maxFrame);
              if (refusal != null) {
                WebSocketCloseStatus status = frame instanceof BinaryWebSocketFrame
                    ? WebSocketCloseStatus.PROTOCOL_ERROR
                    : WebSocketCloseStatus.INVALID_MESSAGE_TYPE;
                refuse(c, out, refused, refusal, status).subscribe(v -> {}, e -> {});
                return;
              }
              ByteBuf content = frame.content();
              sink.next(
                  ByteBufUtil.getBytes(
                      content,
                      content.readerIndex() + Framing.HEADER_BYTES,
                      content.readableBytes() - Framing.HEADER_BYTES));
            })
        // A message split in fragments that add up to more than the maximum (one oversize frame
        // is refused by Netty's decoder with close code 1009).
        .onErrorResume(io.netty.handler.codec.TooLongFrameException.class,
            e -> refused.get() ? Mono.empty()
                : refuse(c, out, refused, "message longer than the maximum frame",
                    WebSocketCloseStatus.MESSAGE_TOO_BIG));
  }

  /**
   * Answers a PING with a PONG, unless the connection is not writable: a peer that sends PINGs and
   * reads nothing would otherwise have the PONGs queued here without bound (Reactor Netty's own
   * answer does not look). A peer that reads gets every answer.
   */
  private static void answer(Channel ch, WebSocketFrame ping) {
    if (ch.isWritable()) {
      ch.writeAndFlush(new PongWebSocketFrame(ping.content().retainedDuplicate()), ch.voidPromise());
    }
  }

  /**
   * Answers ERROR BAD_ENCODING, then closes with {@code status} after it (a reset could lose it).
   * Completes only once the connection is closed: a refusal that ends the inbound frames must not
   * let the engine close the link before the close frame is written. Called on the event loop,
   * where the close frame is written too: if it was already written, nothing more is (nothing may
   * follow it).
   */
  private static Mono<byte[]> refuse(
      Connection c,
      WebsocketOutbound out,
      java.util.concurrent.atomic.AtomicBoolean refused,
      String why,
      WebSocketCloseStatus status) {
    refused.set(true);
    log.warn("refusing {}: {}", c.channel().remoteAddress(), why);
    if (isCloseSent(c.channel())) {
      return c.onDispose().then(Mono.empty());
    }
    return out.sendObject(
            new BinaryWebSocketFrame(Framing.errorFrame(c.channel().alloc(), ErrorCode.BAD_ENCODING, why)))
        .then()
        .onErrorResume(e -> Mono.empty())
        .then(Mono.fromRunnable(() -> closeHandshake(c, status)))
        .then(c.onDispose())
        .then(Mono.<byte[]>empty());
  }

  private static boolean isCloseSent(Channel ch) {
    return ch.hasAttr(CLOSE_SENT) && ch.attr(CLOSE_SENT).get() != null;
  }

  private static @Nullable String refusal(WebSocketFrame frame, int maxFrame) {
    if (!(frame instanceof BinaryWebSocketFrame)) {
      return "only binary messages are allowed";
    }
    ByteBuf content = frame.content();
    int n = Math.min(content.readableBytes(), Framing.HEADER_BYTES);
    return Framing.messageRefusal(
        content.readableBytes(), content.nioBuffer(content.readerIndex(), n), maxFrame);
  }
}
