package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.channel.ChannelPromise;
import java.nio.ByteBuffer;
import java.util.Objects;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.core.io.buffer.DataBuffer;
import org.springframework.http.HttpStatus;
import org.springframework.http.server.reactive.ServerHttpRequestDecorator;
import org.springframework.web.reactive.socket.CloseStatus;
import org.springframework.web.reactive.socket.WebSocketHandler;
import org.springframework.web.reactive.socket.WebSocketMessage;
import org.springframework.web.reactive.socket.WebSocketSession;
import org.springframework.web.reactive.socket.server.WebSocketService;
import org.springframework.web.reactive.socket.server.support.HandshakeWebSocketService;
import org.springframework.web.reactive.socket.server.support.WebSocketHandlerAdapter;
import org.springframework.web.server.ServerWebExchange;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Schedulers;

/**
 * The protocol's WebSocket endpoint inside a Spring WebFlux application (needs {@code
 * spring-webflux} on the class path). The upgrade hook sees the whole {@link ServerWebExchange}
 * (cookies, headers, principal) and either names the peer or refuses with 401/403 before anything
 * is upgraded. Frames are the same binary messages as {@link WebSocketServerTransport}'s.
 *
 * <pre>{@code
 * WebFluxEndpoint endpoint = WebFluxEndpoint.builder(node).upgrade(exchange -> ...).build();
 * @Bean HandlerMapping sync() {
 *   return new SimpleUrlHandlerMapping(Map.of("/sync", endpoint.handler()), -1);
 * }
 * @Bean WebSocketHandlerAdapter adapter() { return endpoint.adapter(); }
 * }</pre>
 *
 * <p>Defaults: every upgrade refused with 403 until a hook is set, maximum frame 1 MiB, no bandwidth
 * limit.
 */
public final class WebFluxEndpoint {
  private static final Logger log = LoggerFactory.getLogger(WebFluxEndpoint.class);

  private final EntanglementNode node;
  private final Function<ServerWebExchange, Mono<WebSocketServerTransport.Upgrade>> upgrade;
  private final int maxFrame;
  private final long bandwidth;
  private final HandshakeWebSocketService handshake;
  /** Spring's own handshake, for the WebSocket handlers of other endpoints. */
  private final HandshakeWebSocketService others = new HandshakeWebSocketService();
  /** The handler mapped to this endpoint's URL: the service recognises it and runs the protocol. */
  private final WebSocketHandler marker = WebSocketSession::close;

  private WebFluxEndpoint(Builder b) {
    this.node = b.node;
    this.upgrade = b.upgrade;
    this.maxFrame = b.maxFrame;
    this.bandwidth = b.bandwidth;
    // Spring's default caps a message at 64 KiB: a frame up to the maximum must pass.
    int maxPayload = maxFrame + Framing.HEADER_BYTES;
    this.handshake = new HandshakeWebSocketService(
        new org.springframework.web.reactive.socket.server.upgrade.ReactorNettyRequestUpgradeStrategy(
            () -> reactor.netty.http.server.WebsocketServerSpec.builder()
                .maxFramePayloadLength(maxPayload)
                .handlePing(true))); // answered in SessionLink, while writable
  }

  public static Builder builder(EntanglementNode node) {
    return new Builder(node);
  }

  /**
   * The handler to map to a URL. The protocol runs only through {@link #webSocketService()}, which
   * knows the peer; a session upgraded by any other service is closed.
   */
  public WebSocketHandler handler() {
    return marker;
  }

  /**
   * The upgrade service: for {@link #handler()}, applies the hook, then Spring's handshake, then
   * runs the protocol; any other handler (another endpoint of the application) gets Spring's plain
   * handshake, as without this service.
   */
  public WebSocketService webSocketService() {
    return (exchange, handler) -> handler != marker
        ? others.handleRequest(exchange, handler)
        : WebSocketFrames.decide(Mono.defer(() -> upgrade.apply(exchange)))
            .flatMap(
                decision -> {
                  if (decision instanceof WebSocketServerTransport.Upgrade.Refuse r) {
                    log.warn("refused WebSocket upgrade from {}: {}",
                        exchange.getRequest().getRemoteAddress(), r.status());
                    exchange.getResponse().setStatusCode(HttpStatus.valueOf(r.status()));
                    return exchange.getResponse().setComplete();
                  }
                  WebSocketServerTransport.Upgrade.Accept accepted =
                      (WebSocketServerTransport.Upgrade.Accept) decision;
                  PeerId peer = accepted.peer();
                  long limit = accepted.bandwidthOr(bandwidth);
                  @Nullable Channel channel = channel(exchange);
                  if (channel == null) {
                    log.warn("not upgrading {}: the endpoint runs on Reactor Netty, and the request's "
                        + "connection is not an open Reactor Netty one", exchange.getRequest().getRemoteAddress());
                    exchange.getResponse().setStatusCode(HttpStatus.SERVICE_UNAVAILABLE);
                    return exchange.getResponse().setComplete();
                  }
                  return handshake.handleRequest(
                      exchange,
                      session -> node.attach(new SessionLink(session, peer, maxFrame, limit, channel)));
                });
  }

  /**
   * The channel of the exchange's connection: the session's frames are written to it, its close
   * runs on its event loop and shuts its output (see {@link SessionLink}). Taken before the
   * handshake, while the request's connection is the live one; the upgrade keeps the channel and
   * changes its pipeline. Null if the request is not on a registered Reactor Netty connection:
   * another server, or a connection already closed. Such a request is answered 503, not upgraded.
   */
  static @Nullable Channel channel(ServerWebExchange exchange) {
    Object request = ServerHttpRequestDecorator.getNativeRequest(exchange.getRequest());
    return request instanceof reactor.netty.Connection c && c.channel().isRegistered() ? c.channel() : null;
  }

  /**
   * Turns the close Reactor Netty makes right after its close frame into a graceful one ({@link
   * GracefulClose}): the output is shut once the frame is flushed, and the channel closes when the
   * peer closes its side, or after the linger. Closing at once while the peer is still sending would
   * have the kernel answer with a reset, which can discard the last ERROR before the peer reads it.
   * Put in the pipeline by the session's close, on the event loop, just before Reactor Netty's
   * sendClose. Only that first close lingers: a later one (the server shutting down) closes at once,
   * as a disposed link of the Reactor Netty mount does; the peer's close and a reset close the
   * channel underneath the pipeline.
   */
  static final class Linger extends ChannelOutboundHandlerAdapter {
    static final String NAME = "entanglement.linger";
    private boolean started;

    /** Adds the handler to {@code ch}'s pipeline, once; on its event loop. */
    static void arm(Channel ch) {
      if (ch.isActive() && ch.pipeline().get(NAME) == null) {
        ch.pipeline().addLast(NAME, new Linger());
      }
    }

    @Override
    public void close(ChannelHandlerContext ctx, ChannelPromise promise) {
      if (!started) {
        started = true;
        promise.setUncancellable(); // completed by the close after the linger, whoever waits
        GracefulClose.afterFlush(ctx.channel(), () -> ctx.close(promise));
      } else {
        ctx.close(promise);
      }
    }
  }

  /**
   * A handler adapter to register as a bean, using {@link #webSocketService()}. Its order, 1,
   * comes before the adapter WebFlux declares itself (2), so that this endpoint's handler never
   * reaches Spring's; the handlers of other endpoints still get Spring's handshake through it.
   */
  public WebSocketHandlerAdapter adapter() {
    WebSocketHandlerAdapter adapter = new WebSocketHandlerAdapter(webSocketService());
    adapter.setOrder(1);
    return adapter;
  }

  /**
   * A {@link Link} over a WebFlux session; one binary message per frame, header included. Frames
   * are written to the session's channel by a {@link BurstWriter}, as on the Reactor Netty mount,
   * not through {@code WebSocketSession.send}: that asks for 128 messages ahead whatever their
   * size, so a slow browser held up to 128 frames (128 MiB of 1 MiB objects) taken out of the
   * engine's coalescing queue, to be delivered stale. The writer asks only for what the socket
   * takes, within its byte bound, and the queue keeps coalescing the rest.
   */
  private static final class SessionLink implements Link {
    private final WebSocketSession session;
    private final PeerId peer;
    private final int maxFrame;
    private final long bandwidth;
    private final Channel channel;
    private final Sinks.Empty<Void> closed = Sinks.empty();
    /**
     * The session's close, started at most once however many paths end the link (the end of the
     * outbound frames, an error, {@link #dispose}), only while the session is open, and on the
     * connection's event loop. Reactor Netty's sendClose makes its close frame, then writes it to the
     * connection it holds at that moment; from another thread the connection could be disposed in
     * between (its channel swapped for an unregistered placeholder), the write threw before taking
     * the frame, and the frame leaked. On the event loop nothing disposes it between check and write.
     * Reactor Netty closes the channel as soon as its close frame is written; {@link Linger}, armed
     * just before, shuts the output instead, so that a peer still sending reads the last frames.
     * Only one close frame goes: Reactor Netty does not echo the peer's once it has sent its own.
     */
    private final Mono<Void> close;
    private final Flux<WebSocketMessage> messages;
    /** A PONG is on its way: another PING is not answered until it has been written. */
    private final java.util.concurrent.atomic.AtomicBoolean pongPending =
        new java.util.concurrent.atomic.AtomicBoolean();

    /**
     * Set when the close starts: the session stays open while the connection lingers, and the
     * engine must meanwhile see the link as gone.
     */
    private volatile boolean closing;
    /**
     * The status of the session's close frame: 1000, or what a refused message sets before it
     * starts the close (PROTOCOL.md §1). The close that starts first sends its status.
     */
    private volatile CloseStatus closeStatus = CloseStatus.NORMAL;

    SessionLink(WebSocketSession session, PeerId peer, int maxFrame, long bandwidth, Channel channel) {
      this.session = session;
      this.channel = channel;
      // Now, during the handshake's handler: the frame aggregator goes in when receive() is
      // called, and added when the engine subscribes it would miss fragments read meanwhile.
      this.messages = session.receive();
      this.close =
          Mono.defer(() -> {
                closing = true;
                if (!session.isOpen()) {
                  return Mono.<Void>empty();
                }
                Linger.arm(channel);
                // The session closes the channel once its close frame is written: never, if the
                // peer reads nothing. Closed then through Linger, which drops what is unwritten.
                GracefulClose.closeIfStuck(channel, channel::close);
                WebSocketFrames.markCloseSent(channel); // no frame of a run still being written follows it
                return session.close(closeStatus);
              })
              .subscribeOn(Schedulers.fromExecutor(channel.eventLoop()))
              .cache();
      this.peer = peer;
      this.maxFrame = maxFrame;
      this.bandwidth = bandwidth;
      session.closeStatus().doFinally(s -> closed.tryEmitEmpty()).subscribe(v -> {}, e -> {});
    }

    @Override
    public PeerId remote() {
      return peer;
    }

    /**
     * The frame bodies of the session's messages; nothing after a refused one. Each message is
     * read while it is delivered: Reactor Netty releases its buffer as soon as {@code onNext}
     * returns, so nothing that waits for the engine's demand may hold the message itself.
     */
    @Override
    public Flux<byte[]> receive() {
      java.util.concurrent.atomic.AtomicBoolean refused = new java.util.concurrent.atomic.AtomicBoolean();
      return messages
          .<byte[]>handle(
              (m, sink) -> {
                if (refused.get()) {
                  return;
                }
                if (m.getType() == WebSocketMessage.Type.PING) {
                  answer(m);
                  return;
                }
                if (m.getType() == WebSocketMessage.Type.PONG) {
                  return; // control messages, as on the Reactor Netty transports
                }
                String refusal = refusal(m);
                if (refusal != null) {
                  refused.set(true);
                  log.warn("refusing {}: {}", peer, refusal);
                  if (closing) {
                    return; // the close frame may be out already: nothing may follow it
                  }
                  closeStatus = m.getType() == WebSocketMessage.Type.BINARY
                      ? CloseStatus.PROTOCOL_ERROR
                      : CloseStatus.NOT_ACCEPTABLE;
                  byte[] error = Framing.bytes(ErrorCode.BAD_ENCODING, refusal);
                  session
                      .send(Mono.just(session.binaryMessage(f -> f.wrap(error))))
                      .then(close) // deferred: a close frame made now would leak if the send fails
                      .subscribe(v -> {}, e -> {});
                  return;
                }
                DataBuffer payload = m.getPayload();
                byte[] body = new byte[payload.readableByteCount() - Framing.HEADER_BYTES];
                payload.readPosition(payload.readPosition() + Framing.HEADER_BYTES);
                payload.read(body);
                sink.next(body);
              })
          .onErrorResume(e -> Mono.empty());
    }

    /**
     * Answers a PING with a PONG, one at a time: a PING that arrives while the last PONG has not been
     * written yet (the peer is not reading) goes unanswered. Otherwise a peer that sends PINGs and
     * reads nothing would have the PONGs queued without bound, as Spring's own answer does.
     */
    private void answer(WebSocketMessage ping) {
      if (!pongPending.compareAndSet(false, true)) {
        return;
      }
      DataBuffer p = ping.getPayload();
      byte[] payload = new byte[p.readableByteCount()];
      p.read(payload);
      session.send(Mono.just(session.pongMessage(f -> f.wrap(payload))))
          .doFinally(signal -> pongPending.set(false))
          .subscribe(v -> {}, e -> {});
    }

    private @Nullable String refusal(WebSocketMessage m) {
      if (m.getType() != WebSocketMessage.Type.BINARY) {
        return "only binary messages are allowed";
      }
      DataBuffer p = m.getPayload();
      ByteBuffer header = ByteBuffer.allocate(Framing.HEADER_BYTES);
      p.toByteBuffer(p.readPosition(), header, 0, Math.min(p.readableByteCount(), Framing.HEADER_BYTES));
      return Framing.messageRefusal(p.readableByteCount(), header, maxFrame);
    }

    @Override
    public Mono<Void> send(Publisher<byte[]> frames) {
      return BurstWriter.send(channel, frames, bandwidth, WebSocketFrames::writeRun)
          .then(close)
          .onErrorResume(e -> {
            if (e instanceof Error) {
              log.warn("sending to {} failed", peer, e);
            } else {
              log.debug("sending to {} ended with {}", peer, e.toString());
            }
            return close;
          });
    }

    @Override
    public Mono<Void> onClose() {
      return closed.asMono();
    }

    @Override
    public void dispose() {
      closing = true;
      close.subscribe(v -> {}, e -> {});
    }

    @Override
    public boolean isDisposed() {
      return closing || !session.isOpen();
    }
  }

  /** Builds a {@link WebFluxEndpoint}. */
  public static final class Builder {
    private final EntanglementNode node;
    private Function<ServerWebExchange, Mono<WebSocketServerTransport.Upgrade>> upgrade =
        e -> Mono.just(WebSocketServerTransport.Upgrade.forbidden());
    private int maxFrame = Framing.DEFAULT_MAX_FRAME;
    private long bandwidth;

    private Builder(EntanglementNode node) {
      this.node = Objects.requireNonNull(node);
    }

    /** Maps an upgrade request to a peer identity or a refusal. Default: refuse with 403. */
    public Builder upgrade(Function<ServerWebExchange, Mono<WebSocketServerTransport.Upgrade>> hook) {
      this.upgrade = Objects.requireNonNull(hook);
      return this;
    }

    public Builder maxFrameSize(int bytes) {
      this.maxFrame = bytes;
      return this;
    }

    /** A bandwidth limit per session, in bytes per second. Default 0: unlimited. */
    public Builder bandwidth(long bytesPerSecond) {
      this.bandwidth = bytesPerSecond;
      return this;
    }

    public WebFluxEndpoint build() {
      return new WebFluxEndpoint(this);
    }
  }
}
