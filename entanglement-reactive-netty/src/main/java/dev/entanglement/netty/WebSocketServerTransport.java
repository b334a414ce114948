package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import io.netty.channel.Channel;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.websocketx.WebSocketFrameDecoder;
import java.net.SocketAddress;
import java.util.Objects;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import java.util.function.BiFunction;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.ConnectionObserver;
import reactor.netty.DisposableServer;
import reactor.netty.http.server.HttpServer;
import reactor.netty.http.server.HttpServerRequest;
import reactor.netty.http.server.HttpServerResponse;
import reactor.netty.http.server.WebsocketServerSpec;

/**
 * Serves the protocol over WebSocket. An application hook maps the HTTP upgrade request (a cookie,
 * a header, a token, or the TLS client certificate) to the peer's identity; a refusal is answered
 * with 401 or 403 and nothing is upgraded.
 *
 * <p>Mount it on an existing Reactor Netty server with {@link #handler()}:
 *
 * <pre>{@code
 * HttpServer.create().route(r -> r.get("/sync", ws.handler()))
 * }</pre>
 *
 * or let {@link #bind()} start a server. Defaults: path {@code /entanglement}, host {@code
 * 127.0.0.1}, port 0, no TLS, every upgrade refused with 403 until a hook is set, maximum frame 1
 * MiB, no bandwidth limit (the upgrade hook may set one per connection with {@link
 * Upgrade#accept(PeerId, long)}); for {@link #bind()}, at most {@value
 * ServerLimits#DEFAULT_MAX_CONNECTIONS} connections open at once and a handshake timeout of 10 s.
 */
public final class WebSocketServerTransport {
  private static final Logger log = LoggerFactory.getLogger(WebSocketServerTransport.class);

  /** The outcome of the upgrade hook. */
  public sealed interface Upgrade {
    /**
     * Upgrade, and treat the connection as {@code peer}.
     *
     * @param bandwidth this connection's outbound limit in bytes per second (0: unlimited), or
     *     empty for the transport's {@linkplain Builder#bandwidth default}
     */
    record Accept(PeerId peer, OptionalLong bandwidth) implements Upgrade {
      public Accept {
        Objects.requireNonNull(peer, "peer");
        Objects.requireNonNull(bandwidth, "bandwidth");
        if (bandwidth.isPresent() && bandwidth.getAsLong() < 0) {
          throw new IllegalArgumentException("bandwidth must not be negative: " + bandwidth.getAsLong());
        }
      }

      /** The limit for this connection: its own, or else {@code transportDefault}. */
      long bandwidthOr(long transportDefault) {
        return bandwidth.orElse(transportDefault);
      }
    }

    /** Do not upgrade; answer with {@code status} (401 or 403). */
    record Refuse(int status) implements Upgrade {}

    /** Accepts as {@code peer}, with the transport's bandwidth limit. */
    static Upgrade accept(PeerId peer) {
      return new Accept(peer, OptionalLong.empty());
    }

    /**
     * Accepts as {@code peer}, limiting what the server sends on this connection to {@code
     * bytesPerSecond} (0: unlimited) instead of the transport's limit. Frames are then spaced as
     * on any throttled link: the engine's per-object coalescing keeps what waits current.
     */
    static Upgrade accept(PeerId peer, long bytesPerSecond) {
      return new Accept(peer, OptionalLong.of(bytesPerSecond));
    }

    static Upgrade unauthorized() {
      return new Refuse(401);
    }

    static Upgrade forbidden() {
      return new Refuse(403);
    }
  }

  private final EntanglementNode node;
  private final String path;
  private final String host;
  private final int port;
  private final @Nullable TlsConfig tls;
  private final Function<HttpServerRequest, Mono<Upgrade>> upgrade;
  private final int maxFrame;
  private final long bandwidth;
  private final ServerLimits limits;

  private WebSocketServerTransport(Builder b) {
    this.node = b.node;
    this.path = b.path;
    this.host = b.host;
    this.port = b.port;
    this.tls = b.tls;
    this.upgrade = b.upgrade;
    this.maxFrame = b.maxFrame;
    this.bandwidth = b.bandwidth;
    this.limits = b.limits.build();
  }

  public static Builder builder(EntanglementNode node) {
    return new Builder(node);
  }

  /** The route handler: decides the upgrade, then runs the protocol until the socket closes. */
  public BiFunction<HttpServerRequest, HttpServerResponse, Publisher<Void>> handler() {
    return (req, res) ->
        WebSocketFrames.decide(Mono.defer(() -> upgrade.apply(req)))
            .flatMap(
                decision -> {
                  if (decision instanceof Upgrade.Refuse r) {
                    log.warn("refused WebSocket upgrade from {}: {}", req.remoteAddress(), r.status());
                    return res.status(HttpResponseStatus.valueOf(r.status())).send().then();
                  }
                  Upgrade.Accept accepted = (Upgrade.Accept) decision;
                  PeerId peer = accepted.peer();
                  long limit = accepted.bandwidthOr(bandwidth);
                  return res.sendWebsocket(
                          (in, out) -> {
                            Connection[] c = new Connection[1];
                            in.withConnection(conn -> c[0] = conn);
                            return node.attach(
                                WebSocketFrames.link(c[0], in, out, peer, maxFrame, limit));
                          },
                          WebsocketServerSpec.builder()
                              .maxFramePayloadLength(maxFrame + Framing.HEADER_BYTES)
                              .handlePing(true) // answered in WebSocketFrames, while writable
                              .build())
                      .then();
                });
  }

  /** Starts a server that serves only this transport's path. */
  public Mono<DisposableServer> bind() {
    HttpServer server =
        HttpServer.create()
            .host(host)
            .port(port)
            .doOnChannelInit(limits.onChannelInit().then(this::upgradeDeadline));
    if (tls != null) {
      server = server.secure(limits.tls(tls));
    }
    return server.route(r -> r.get(path, handler())).bind().map(s -> (DisposableServer) s);
  }

  /**
   * Closes a connection of {@link #bind()} that has not upgraded to WebSocket within the handshake
   * timeout (TLS handshake and upgrade request included): a client that connects and then sends
   * nothing, or its request byte by byte, cannot hold a connection longer.
   */
  private void upgradeDeadline(ConnectionObserver observer, Channel ch, @Nullable SocketAddress remote) {
    var check =
        ch.eventLoop()
            .schedule(
                () -> {
                  if (ch.isActive() && ch.pipeline().get(WebSocketFrameDecoder.class) == null) {
                    log.warn("closed connection from {}: no WebSocket upgrade within {}",
                        ch.remoteAddress(), limits.handshakeTimeout());
                    ch.close();
                  }
                },
                limits.handshakeTimeout().toNanos(),
                TimeUnit.NANOSECONDS);
    ch.closeFuture().addListener(f -> check.cancel(false));
  }

  /** Builds a {@link WebSocketServerTransport}. */
  public static final class Builder {
    private final EntanglementNode node;
    private String path = "/entanglement";
    private String host = "127.0.0.1";
    private int port;
    private @Nullable TlsConfig tls;
    private Function<HttpServerRequest, Mono<Upgrade>> upgrade = r -> Mono.just(Upgrade.forbidden());
    private int maxFrame = Framing.DEFAULT_MAX_FRAME;
    private long bandwidth;
    private final ServerLimits.Builder limits = new ServerLimits.Builder();

    private Builder(EntanglementNode node) {
      this.node = Objects.requireNonNull(node);
    }

    public Builder path(String path) {
      this.path = Objects.requireNonNull(path);
      return this;
    }

    public Builder host(String host) {
      this.host = Objects.requireNonNull(host);
      return this;
    }

    public Builder port(int port) {
      this.port = port;
      return this;
    }

    /** TLS for {@link #bind()}; peers must present certificates from the trusted CAs. */
    public Builder tls(TlsConfig tls) {
      this.tls = Objects.requireNonNull(tls);
      return this;
    }

    /** Maps an upgrade request to a peer identity or a refusal. Default: refuse with 403. */
    public Builder upgrade(Function<HttpServerRequest, Mono<Upgrade>> hook) {
      this.upgrade = Objects.requireNonNull(hook);
      return this;
    }

    public Builder maxFrameSize(int bytes) {
      this.maxFrame = bytes;
      return this;
    }

    /** A bandwidth limit per connection, in bytes per second. Default 0: unlimited. */
    public Builder bandwidth(long bytesPerSecond) {
      this.bandwidth = bytesPerSecond;
      return this;
    }

    /**
     * For {@link #bind()}: the most connections open at once, upgraded or not; one more is closed
     * as soon as it is accepted, and logged. Default {@value ServerLimits#DEFAULT_MAX_CONNECTIONS}.
     * A {@link #handler()} mounted in another server is bound by that server's limits.
     */
    public Builder maxConnections(int connections) {
      limits.maxConnections(connections);
      return this;
    }

    /**
     * For {@link #bind()}: how long a connection may take to complete the TLS handshake, and how
     * long it may stay silent before its upgrade request, before it is closed. Default 10 s. The
     * node's own {@link EntanglementNode.Builder#handshakeTimeout handshake timeout} then bounds
     * the wait for HELLO.
     */
    public Builder handshakeTimeout(java.time.Duration timeout) {
      limits.handshakeTimeout(timeout);
      return this;
    }

    public WebSocketServerTransport build() {
      return new WebSocketServerTransport(this);
    }
  }
}
