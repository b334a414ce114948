package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.Link;
import java.util.List;
import org.jspecify.annotations.Nullable;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;
import reactor.netty.http.client.HttpClient;

/** WebSocket without TLS; the upgrade hook reads the peer's name from a header. */
@org.junit.jupiter.api.extension.ExtendWith(LeakDetection.class)
class WebSocketConformanceTest implements TransportConformance {

  static Harness wsHarness(
      EntanglementNode a, EntanglementNode b, TestPki.@Nullable Identity aId, TestPki.@Nullable Identity bId,
      TestPki.@Nullable Identity rawId) {
    WebSocketServerTransport.Builder sb =
        WebSocketServerTransport.builder(b)
            .upgrade(req -> {
              String name = req.requestHeaders().get("X-Peer");
              return Mono.just(name == null
                  ? WebSocketServerTransport.Upgrade.unauthorized()
                  : WebSocketServerTransport.Upgrade.accept(PeerId.of(name)));
            });
    if (bId != null) {
      sb.tls(bId.tls());
    }
    DisposableServer server = sb.build().bind().block(WAIT);
    String scheme = bId != null ? "wss" : "ws";
    String uri = scheme + "://localhost:" + server.port() + "/entanglement";
    return new Harness() {
      Link link;

      public EntanglementNode a() {
        return a;
      }

      public EntanglementNode b() {
        return b;
      }

      public PeerId bAsSeenByA() {
        return bId != null ? bId.fingerprint() : PeerId.of("b");
      }

      public PeerId aAsSeenByB() {
        return PeerId.of("a");
      }

      public void connect(long bytesPerSecond) {
        WebSocketClientTransport.Builder cb =
            WebSocketClientTransport.builder(a).uri(uri).expect(bAsSeenByA())
                .headers(h -> h.set("X-Peer", "a")).bandwidth(bytesPerSecond);
        if (aId != null) {
          cb.tls(aId.tls());
        }
        link = cb.build().connect().block(WAIT);
        a.attach(link).subscribe();
      }

      public void disconnect() {
        link.dispose();
      }

      public List<Message> sendRaw(byte[] frame) {
        HttpClient client = HttpClient.create().headers(h -> h.set("X-Peer", "raw"));
        if (rawId != null) {
          client = client.secure(spec -> spec.sslContext(rawId.tls().clientContext()));
        }
        return Raw.webSocket(client, uri, frame);
      }

      public void close() {
        if (link != null) {
          link.dispose();
        }
        server.disposeNow(WAIT);
        a.close().block(WAIT);
        b.close().block(WAIT);
      }
    };
  }

  @Override
  public Harness harness(EntanglementNode a, EntanglementNode b) {
    return wsHarness(a, b, null, null, null);
  }
}
