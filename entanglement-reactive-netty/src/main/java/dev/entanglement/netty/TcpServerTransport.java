package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.PeerId;
import io.netty.handler.ssl.SslHandler;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import java.util.function.Function;
import java.util.function.UnaryOperator;
import javax.net.ssl.SSLPeerUnverifiedException;
import org.jspecify.annotations.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.tcp.TcpServer;

/**
 * Accepts TCP connections for a node, authenticates the peer by its certificate fingerprint, and
 * attaches each admitted connection to the node.
 *
 * <pre>{@code
 * DisposableServer server = TcpServerTransport.builder(node)
 *     .port(7000).tls(tls).destination(peerFingerprint)
 *     .build().bind().block();
 * }</pre>
 *
 * <p>Defaults: host {@code 127.0.0.1}, port 0 (ephemeral), no TLS (the peer's identity is then only
 * its address, which is not authentication: use TLS on any real network), unknown peers refused,
 * maximum frame 1 MiB, no bandwidth limit, at most {@value ServerLimits#DEFAULT_MAX_CONNECTIONS}
 * connections open at once, TLS handshake timeout 10 s. With TLS, a peer connected by its own outbound dial
 * (see {@link TcpClientTransport#maintain()}) keeps the connection dialed by the lower fingerprint.
 */
public final class TcpServerTransport {
  private static final Logger log = LoggerFactory.getLogger(TcpServerTransport.class);

  private final EntanglementNode node;
  private final String host;
  private final int port;
  private final @Nullable TlsConfig tls;
  private final Admission admission;
  private final int maxFrame;
  private final long bandwidth;
  private final UnaryOperator<TcpServer> customizer;
  private final ServerLimits limits;

  private TcpServerTransport(Builder b) {
    this.node = b.node;
    this.host = b.host;
    this.port = b.port;
    this.tls = b.tls;
    this.admission = new Admission(b.destinations, b.unknownDestination);
    this.maxFrame = b.maxFrame;
    this.bandwidth = b.bandwidth;
    this.customizer = b.customizer;
    this.limits = b.limits.build();
  }

  public static Builder builder(EntanglementNode node) {
    return new Builder(node);
  }

  /** Starts listening. */
  public Mono<DisposableServer> bind() {
    TcpServer server = TcpServer.create().host(host).port(port);
    if (tls != null) {
      server = server.secure(limits.tls(tls));
    }
    server =
        server
            .doOnChannelInit(limits.onChannelInit())
            .doOnConnection(c -> c.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(maxFrame)))
            .handle(
                (in, out) -> {
                  Connection[] holder = new Connection[1];
                  in.withConnection(c -> holder[0] = c);
                  return accept(holder[0]);
                });
    return customizer.apply(server).bind().map(s -> (DisposableServer) s);
  }

  private Mono<Void> accept(Connection c) {
    PeerId peer;
    try {
      peer = identify(c);
    } catch (SSLPeerUnverifiedException e) {
      return refuse(c, "no client certificate");
    }
    return admission
        .admit(peer)
        .flatMap(
            admitted -> {
              if (!admitted) {
                return refuse(c, "unknown peer " + peer);
              }
              NettyLink link = NettyLink.stream(c, peer, bandwidth);
              // Registered before the check: this node's winning dial, registered before its own
              // check of accepted links (TcpClientTransport.attachDialled), sees this one or is
              // seen here, whatever the order.
              PeerConnections.opened(node, link, PeerConnections.Side.ACCEPTED);
              // Only this node's own dial, open and winning, is kept over the peer's: any other
              // connection from the peer (a half-open one whose side died) is replaced at once.
              if (tls != null
                  && PeerOrder.localDialWins(tls.identity(), peer)
                  && PeerConnections.open(node, peer, PeerConnections.Side.DIALLED)) {
                return refuse(c, "duplicate connection from " + peer + "; keeping the one we dialed");
              }
              log.info("accepted {} from {}", peer, c.channel().remoteAddress());
              if (tls != null && !PeerOrder.localDialWins(tls.identity(), peer)) {
                // The peer's dial wins: a dial of ours that crossed it gives way.
                PeerConnections.closeAll(node, peer, PeerConnections.Side.DIALLED);
              }
              return node.attach(link);
            });
  }

  private PeerId identify(Connection c) throws SSLPeerUnverifiedException {
    SslHandler ssl = c.channel().pipeline().get(SslHandler.class);
    if (ssl == null) {
      return PeerId.of("tcp:" + c.channel().remoteAddress());
    }
    return Fingerprints.of(ssl.engine().getSession().getPeerCertificates()[0]);
  }

  /** Answers ERROR UNAUTHORIZED and closes without losing it; completes once closed. */
  static Mono<Void> refuse(Connection c, String reason) {
    log.warn("refused connection from {}: {}", c.channel().remoteAddress(), reason);
    c.channel()
        .writeAndFlush(Framing.errorFrame(c.channel().alloc(), ErrorCode.UNAUTHORIZED, "refused"))
        .addListener(f -> GracefulClose.afterFlush(c.channel(), c::dispose));
    // Not empty: Reactor Netty closes a connection at once when its handler completes.
    return c.onDispose();
  }

  /** Builds a {@link TcpServerTransport}. */
  public static final class Builder {
    private final EntanglementNode node;
    private String host = "127.0.0.1";
    private int port = 0;
    private @Nullable TlsConfig tls;
    private final List<PeerId> destinations = new ArrayList<>();
    private Function<PeerId, Mono<Boolean>> unknownDestination = Admission.refuseUnknown();
    private int maxFrame = Framing.DEFAULT_MAX_FRAME;
    private long bandwidth;
    private UnaryOperator<TcpServer> customizer = UnaryOperator.identity();
    private final ServerLimits.Builder limits = new ServerLimits.Builder();

    private Builder(EntanglementNode node) {
      this.node = Objects.requireNonNull(node, "node");
    }

    /** The address to bind. Default {@code 127.0.0.1}. */
    public Builder host(String host) {
      this.host = Objects.requireNonNull(host);
      return this;
    }

    /** The port to bind; 0 (the default) picks a free one. */
    public Builder port(int port) {
      this.port = port;
      return this;
    }

    /** Mutual TLS. Without it the transport is plaintext and unauthenticated. */
    public Builder tls(TlsConfig tls) {
      this.tls = Objects.requireNonNull(tls);
      return this;
    }

    /** A peer admitted by fingerprint. */
    public Builder destination(PeerId fingerprint) {
      destinations.add(Objects.requireNonNull(fingerprint));
      return this;
    }

    /** Peers admitted by fingerprint. */
    public Builder destinations(Collection<PeerId> fingerprints) {
      destinations.addAll(fingerprints);
      return this;
    }

    /**
     * Decides about a peer that is not a configured destination: {@code true} admits it. An empty
     * answer, a failure, a throw or a null refuses, as a {@code false} does. Default: refuse.
     */
    public Builder unknownDestination(Function<PeerId, Mono<Boolean>> hook) {
      this.unknownDestination = Objects.requireNonNull(hook);
      return this;
    }

    /** The largest frame body accepted. Default 1 MiB. */
    public Builder maxFrameSize(int bytes) {
      if (bytes < 64) {
        throw new IllegalArgumentException("maximum frame size too small: " + bytes);
      }
      this.maxFrame = bytes;
      return this;
    }

    /** A bandwidth limit per connection, in bytes per second. Default 0: unlimited. */
    public Builder bandwidth(long bytesPerSecond) {
      this.bandwidth = bytesPerSecond;
      return this;
    }

    /**
     * The most connections open at once, authenticated or not; one more is closed as soon as it
     * is accepted, and logged. Default {@value ServerLimits#DEFAULT_MAX_CONNECTIONS}.
     */
    public Builder maxConnections(int connections) {
      limits.maxConnections(connections);
      return this;
    }

    /**
     * How long a connection may take to complete the TLS handshake before it is closed (against
     * peers that connect and send nothing, or send slowly). Default 10 s. The node's own {@link
     * EntanglementNode.Builder#handshakeTimeout handshake timeout} then bounds the wait for HELLO.
     */
    public Builder tlsHandshakeTimeout(java.time.Duration timeout) {
      limits.handshakeTimeout(timeout);
      return this;
    }

    /** Adjusts the underlying Reactor Netty server (event loops, options, metrics). */
    public Builder tcpServer(UnaryOperator<TcpServer> customizer) {
      this.customizer = Objects.requireNonNull(customizer);
      return this;
    }

    public TcpServerTransport build() {
      return new TcpServerTransport(this);
    }
  }
}
