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
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import java.util.List;
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
 */
final class WebSocketFrames {
  private static final Logger log = LoggerFactory.getLogger(WebSocketFrames.class);

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
        WebSocketFrames::writeRun);
  }

  /** A run of frames as binary messages, one frame each; returns the last write's future. */
  static ChannelFuture writeRun(Channel ch, List<byte[]> run) {
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
                refuse(c, out, refused, refusal).subscribe(v -> {}, e -> {});
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
            e -> refused.get() ? Mono.empty() : refuse(c, out, refused, "message longer than the maximum frame"));
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

  /** Answers ERROR BAD_ENCODING, then closes once it is flushed (a reset could lose it). */
  private static Mono<byte[]> refuse(
      Connection c, WebsocketOutbound out, java.util.concurrent.atomic.AtomicBoolean refused, String why) {
    refused.set(true);
    log.warn("refusing {}: {}", c.channel().remoteAddress(), why);
    return out.sendObject(
            new BinaryWebSocketFrame(Framing.errorFrame(c.channel().alloc(), ErrorCode.BAD_ENCODING, why)))
        .then()
        .doFinally(signal -> GracefulClose.afterFlush(c.channel(), c::dispose))
        .then(Mono.<byte[]>empty());
  }

  private static @org.jspecify.annotations.Nullable String refusal(WebSocketFrame frame, int maxFrame) {
    if (!(frame instanceof BinaryWebSocketFrame)) {
      return "only binary messages are allowed";
    }
    ByteBuf content = frame.content();
    int n = Math.min(content.readableBytes(), Framing.HEADER_BYTES);
    return Framing.messageRefusal(
        content.readableBytes(), content.nioBuffer(content.readerIndex(), n), maxFrame);
  }
}
