package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import io.netty.handler.codec.http.HttpHeaders;
import java.util.Objects;
import java.util.function.Consumer;
import org.jspecify.annotations.Nullable;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.http.client.HttpClient;
import reactor.netty.http.client.WebsocketClientSpec;

/**
 * Connects to a WebSocket endpoint of another node. With TLS ({@code wss://}) the server's
 * certificate must chain to the trusted CAs, match the URI's host name, and have the expected
 * fingerprint; a TLS configuration with a {@code ws://} URI is refused by {@link Builder#build}.
 * Defaults: no extra headers, maximum frame 1 MiB, no bandwidth limit.
 */
public final class WebSocketClientTransport {
  private final EntanglementNode node;
  private final String uri;
  private final PeerId expected;
  private final @Nullable TlsConfig tls;
  private final Consumer<HttpHeaders> headers;
  private final int maxFrame;
  private final long bandwidth;

  private WebSocketClientTransport(Builder b) {
    this.node = b.node;
    this.uri = Objects.requireNonNull(b.uri, "uri");
    this.expected = Objects.requireNonNull(b.expected, "expected peer");
    this.tls = b.tls;
    // Reactor Netty speaks plain HTTP to a ws:// URI even when TLS is configured: the peer would
    // then be taken for the expected one with no certificate checked.
    if (tls != null && !"wss".equalsIgnoreCase(java.net.URI.create(uri).getScheme())) {
      throw new IllegalArgumentException("TLS is configured, so the URI must be wss://: " + uri);
    }
    this.headers = b.headers;
    this.maxFrame = b.maxFrame;
    this.bandwidth = b.bandwidth;
  }

  public static Builder builder(EntanglementNode node) {
    return new Builder(node);
  }

  /** Opens one WebSocket and verifies the peer; the link is not attached. */
  public Mono<Link> connect() {
    HttpClient client = HttpClient.create().headers(headers);
    if (tls != null) {
      client = client.secure(spec -> spec.sslContext(tls.clientContext()));
    }
    HttpClient c = client;
    return Mono.create(
        sink -> sink.onCancel( // cancelled before the link is handed over: the connection closes
            c.websocket(
                    WebsocketClientSpec.builder()
                        .maxFramePayloadLength(maxFrame + Framing.HEADER_BYTES)
                        .handlePing(true) // answered in WebSocketFrames, while writable
                        .build())
                .uri(uri)
                .handle(
                    (in, out) -> {
                      Connection[] conn = new Connection[1];
                      in.withConnection(x -> conn[0] = x);
                      try {
                        ServerIdentity.verify(conn[0], java.net.URI.create(uri).getHost(), expected);
                      } catch (WrongPeerException e) {
                        sink.error(e);
                        return Mono.empty();
                      }
                      NettyLink link =
                          WebSocketFrames.link(conn[0], in, out, expected, maxFrame, bandwidth);
                      sink.success(link);
                      return link.onClose();
                    })
                .subscribe(v -> {}, sink::error)));
  }

  /** Connects once and runs the link on the node until it closes. */
  public Mono<Void> connectAndAttach() {
    return connect().flatMap(node::attach);
  }

  /** Builds a {@link WebSocketClientTransport}. */
  public static final class Builder {
    private final EntanglementNode node;
    private @Nullable String uri;
    private @Nullable PeerId expected;
    private @Nullable TlsConfig tls;
    private Consumer<HttpHeaders> headers = h -> {};
    private int maxFrame = Framing.DEFAULT_MAX_FRAME;
    private long bandwidth;

    private Builder(EntanglementNode node) {
      this.node = Objects.requireNonNull(node);
    }

    /** The endpoint, {@code ws://host:port/path} or {@code wss://…}. */
    public Builder uri(String uri) {
      this.uri = uri;
      return this;
    }

    /** The identity of the peer: its certificate fingerprint with TLS, otherwise a name. */
    public Builder expect(PeerId peer) {
      this.expected = peer;
      return this;
    }

    public Builder tls(TlsConfig tls) {
      this.tls = tls;
      return this;
    }

    /** Headers for the upgrade request (for example a token for the server's hook). */
    public Builder headers(Consumer<HttpHeaders> headers) {
      this.headers = Objects.requireNonNull(headers);
      return this;
    }

    public Builder maxFrameSize(int bytes) {
      this.maxFrame = bytes;
      return this;
    }

    public Builder bandwidth(long bytesPerSecond) {
      this.bandwidth = bytesPerSecond;
      return this;
    }

    public WebSocketClientTransport build() {
      return new WebSocketClientTransport(this);
    }
  }
}
