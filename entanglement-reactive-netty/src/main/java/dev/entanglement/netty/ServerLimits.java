package dev.entanglement.netty;

import io.netty.channel.Channel;
import java.net.SocketAddress;
import java.time.Duration;
import java.util.Objects;
import java.util.function.Consumer;
import reactor.netty.ChannelPipelineConfigurer;
import reactor.netty.ConnectionObserver;
import reactor.netty.NettyPipeline;
import reactor.netty.tcp.SslProvider;

/**
 * What every server transport limits before the protocol starts: the connections open at once
 * ({@link ConnectionCap}) and the time a TLS handshake may take; it also logs refused handshakes
 * ({@link HandshakeLog}). The node's handshake timeout then bounds the wait for HELLO.
 */
final class ServerLimits {
  static final int DEFAULT_MAX_CONNECTIONS = 1024;
  static final Duration DEFAULT_HANDSHAKE_TIMEOUT = Duration.ofSeconds(10);

  private final Duration handshakeTimeout;
  private final ConnectionCap cap;

  private ServerLimits(int maxConnections, Duration handshakeTimeout) {
    this.handshakeTimeout = handshakeTimeout;
    this.cap = new ConnectionCap(maxConnections);
  }

  /** How long a TLS handshake (and, on WebSocket, the wait for the upgrade request) may take. */
  Duration handshakeTimeout() {
    return handshakeTimeout;
  }

  /** The TLS settings of a server: its context and the handshake timeout. */
  Consumer<SslProvider.SslContextSpec> tls(TlsConfig config) {
    return spec -> spec.sslContext(config.serverContext()).handshakeTimeout(handshakeTimeout);
  }

  /** Run when a server initializes an accepted channel: caps it, and watches its TLS handshake. */
  ChannelPipelineConfigurer onChannelInit() {
    return (ConnectionObserver observer, Channel ch, SocketAddress remote) -> {
      if (cap.admit(ch) && ch.pipeline().get(NettyPipeline.SslHandler) != null) {
        ch.pipeline().addAfter(NettyPipeline.SslHandler, HandshakeLog.NAME, HandshakeLog.INSTANCE);
      }
    };
  }

  /** Collects the limits of a transport builder; every default is documented there. */
  static final class Builder {
    private int maxConnections = DEFAULT_MAX_CONNECTIONS;
    private Duration handshakeTimeout = DEFAULT_HANDSHAKE_TIMEOUT;

    void maxConnections(int connections) {
      if (connections < 1) {
        throw new IllegalArgumentException("the connection cap must be at least 1: " + connections);
      }
      this.maxConnections = connections;
    }

    void handshakeTimeout(Duration timeout) {
      if (timeout.isNegative() || timeout.isZero()) {
        throw new IllegalArgumentException("the handshake timeout must be positive: " + timeout);
      }
      this.handshakeTimeout = Objects.requireNonNull(timeout);
    }

    ServerLimits build() {
      return new ServerLimits(maxConnections, handshakeTimeout);
    }
  }
}
