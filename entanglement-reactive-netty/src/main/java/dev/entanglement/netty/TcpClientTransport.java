package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import io.netty.handler.ssl.SslHandler;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.UnaryOperator;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import org.jspecify.annotations.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.tcp.TcpClient;

/**
 * Dials a peer over TCP, verifies that it reached the expected fingerprint, and attaches the
 * connection to the node.
 *
 * <pre>{@code
 * Disposable peering = TcpClientTransport.builder(node)
 *     .remote("b.example", 7000).expect(bFingerprint).tls(tls)
 *     .build().maintain();
 * }</pre>
 *
 * <p>With TLS the client verifies the server's host name against its certificate and refuses a
 * server whose fingerprint is not the expected one. Defaults: no TLS, maximum frame 1 MiB, no
 * bandwidth limit, reconnect backoff from 1 s to 60 s with full jitter.
 */
public final class TcpClientTransport {
  private static final Logger log = LoggerFactory.getLogger(TcpClientTransport.class);
  /**
   * How long a winning dial waits for the peer's HELLO before it may replace the peer's own dial:
   * 10 s, a node's default handshake timeout.
   */
  static final Duration HELLO_WAIT = Duration.ofSeconds(10);

  private final EntanglementNode node;
  private final String host;
  private final int port;
  private final @Nullable PeerId expected;
  private final @Nullable TlsConfig tls;
  private final String serverName;
  private final int maxFrame;
  private final long bandwidth;
  private final Backoff backoff;
  private final UnaryOperator<TcpClient> customizer;

  private TcpClientTransport(Builder b) {
    this.node = b.node;
    this.host = Objects.requireNonNull(b.host, "remote host");
    this.port = b.port;
    this.expected = b.expected;
    this.tls = b.tls;
    this.serverName = b.serverName != null ? b.serverName : b.host;
    this.maxFrame = b.maxFrame;
    this.bandwidth = b.bandwidth;
    this.backoff = b.backoff;
    this.customizer = b.customizer;
    if (tls != null && expected == null) {
      throw new IllegalStateException("with TLS, the expected fingerprint of the peer is required");
    }
  }

  public static Builder builder(EntanglementNode node) {
    return new Builder(node);
  }

  /**
   * Opens one connection and verifies the peer; the link is not attached. Fails with {@link
   * WrongPeerException} if the peer presents another fingerprint.
   */
  public Mono<Link> connect() {
    TcpClient client = TcpClient.create().host(host).port(port);
    if (tls != null) {
      client =
          client.secure(
              spec ->
                  spec.sslContext(tls.clientContext()).handlerConfigurator(this::serverNameIndication));
    }
    client = client.doOnConnected(c -> c.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(maxFrame)));
    return customizer.apply(client).connect().flatMap(this::verify);
  }

  private Mono<Link> verify(Connection c) {
    PeerId peer;
    try {
      peer = ServerIdentity.verify(c, serverName, expected);
    } catch (WrongPeerException e) {
      c.dispose();
      return Mono.error(e);
    }
    if (peer == null) {
      peer = expected != null ? expected : PeerId.of("tcp:" + c.channel().remoteAddress());
    }
    NettyLink link = NettyLink.stream(c, peer, bandwidth);
    PeerConnections.opened(node, link, PeerConnections.Side.DIALLED);
    return Mono.just(link);
  }

  /** Connects once and runs the link on the node until it closes. */
  public Mono<Void> connectAndAttach() {
    return connect().flatMap(node::attach);
  }

  /**
   * For {@link #maintain()}: attaches {@code link}, dialled by this transport, unless the peer's
   * own dial to this node is open and wins the tie-break ({@link PeerConnections}); then closes it
   * and completes (the dialer looks again later). When this dial wins, a dial of the peer's that
   * this node accepted meanwhile is closed first: it was registered before its check, as this dial
   * was before this one, so one of the two checks sees the other. If one is open, this dial first
   * waits for the peer's HELLO (at most {@link #HELLO_WAIT}): a peer that admits this node only on
   * its own dials refuses this one with an ERROR, and this dial is then closed and the peer's kept,
   * instead of replacing a working connection with one the peer closes.
   */
  Mono<Void> attachDialled(Link link) {
    PeerId local = localIdentity();
    PeerId peer = link.remote();
    if (local == null || !PeerConnections.open(node, peer, PeerConnections.Side.ACCEPTED)) {
      return node.attach(link);
    }
    if (!PeerOrder.localDialWins(local, peer)) {
      log.info("dropping our dial to {}: its own dial to us is open and wins", peer);
      link.dispose();
      return Mono.empty();
    }
    // Attaching replaces the working connection the peer dialled: only once the peer has shown,
    // by its HELLO, that it keeps ours (one that admits us only on its own dials refuses ours).
    AtomicBoolean nodeClosed = new AtomicBoolean();
    return AdmittedLink.afterHello(link)
        .timeout(HELLO_WAIT, Mono.fromRunnable(link::dispose))
        // A node that closes meanwhile ends the wait (the cancel closes the link): the link was
        // never attached, so its close owes the peer no GOAWAY, and must not wait for it either.
        .takeUntilOther(node.onClose().then(Mono.fromCallable(() -> nodeClosed.getAndSet(true))))
        .switchIfEmpty(Mono.fromRunnable(() -> {
          if (!nodeClosed.get()) {
            log.info("keeping {}'s dial to us: it did not admit ours", peer);
          }
        }))
        .flatMap(admitted -> {
          PeerConnections.closeAll(node, peer, PeerConnections.Side.ACCEPTED);
          return node.attach(admitted);
        });
  }

  /**
   * Keeps a connection to the peer: dials, attaches, and after every loss or failure dials again
   * after a backoff (full jitter). A wrong fingerprint is retried too: it may be a transient
   * misroute. While the node is connected to the peer by the peer's own dial, and that connection
   * wins the tie-break, no dial is made. Dispose the result to stop.
   */
  public Disposable maintain() {
    return new Dialer(this).start();
  }

  EntanglementNode node() {
    return node;
  }

  @Nullable PeerId expected() {
    return expected;
  }

  @Nullable PeerId localIdentity() {
    return tls != null ? tls.identity() : null;
  }

  Backoff backoff() {
    return backoff;
  }

  /** Sends the server name (SNI) when it is a DNS name; the certificate is checked after. */
  private void serverNameIndication(SslHandler handler) {
    if (serverName.chars().anyMatch(Character::isLetter) && serverName.indexOf(':') < 0) {
      SSLEngine engine = handler.engine();
      SSLParameters params = engine.getSSLParameters();
      params.setServerNames(java.util.List.of(new javax.net.ssl.SNIHostName(serverName)));
      engine.setSSLParameters(params);
    }
  }

  /** Builds a {@link TcpClientTransport}. */
  public static final class Builder {
    private final EntanglementNode node;
    private @Nullable String host;
    private int port;
    private @Nullable PeerId expected;
    private @Nullable TlsConfig tls;
    private @Nullable String serverName;
    private int maxFrame = Framing.DEFAULT_MAX_FRAME;
    private long bandwidth;
    private Backoff backoff = new Backoff(Duration.ofSeconds(1), Duration.ofSeconds(60));
    private UnaryOperator<TcpClient> customizer = UnaryOperator.identity();

    private Builder(EntanglementNode node) {
      this.node = Objects.requireNonNull(node, "node");
    }

    /** The peer's address. */
    public Builder remote(String host, int port) {
      this.host = Objects.requireNonNull(host);
      this.port = port;
      return this;
    }

    /** The fingerprint the peer must present. Required with TLS. */
    public Builder expect(PeerId fingerprint) {
      this.expected = Objects.requireNonNull(fingerprint);
      return this;
    }

    /** Mutual TLS. */
    public Builder tls(TlsConfig tls) {
      this.tls = Objects.requireNonNull(tls);
      return this;
    }

    /** The host name checked against the server's certificate. Default: the remote host. */
    public Builder serverName(String serverName) {
      this.serverName = Objects.requireNonNull(serverName);
      return this;
    }

    /** The largest frame body accepted. Default 1 MiB. */
    public Builder maxFrameSize(int bytes) {
      this.maxFrame = bytes;
      return this;
    }

    /** A bandwidth limit toward the peer, in bytes per second. Default 0: unlimited. */
    public Builder bandwidth(long bytesPerSecond) {
      this.bandwidth = bytesPerSecond;
      return this;
    }

    /** Reconnect backoff bounds. Default 1 s to 60 s. */
    public Builder backoff(Duration first, Duration cap) {
      this.backoff = new Backoff(first, cap);
      return this;
    }

    /** Adjusts the underlying Reactor Netty client. */
    public Builder tcpClient(UnaryOperator<TcpClient> customizer) {
      this.customizer = Objects.requireNonNull(customizer);
      return this;
    }

    public TcpClientTransport build() {
      return new TcpClientTransport(this);
    }
  }
}
