package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.Link;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.jspecify.annotations.Nullable;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;

/** Plain TCP (no TLS; the accepting side knows the dialer by its address). */
@org.junit.jupiter.api.extension.ExtendWith(LeakDetection.class)
class TcpConformanceTest implements TransportConformance {

  /** Shared by the plain and TLS variants. */
  static Harness tcpHarness(
      EntanglementNode a, EntanglementNode b, TestPki.@Nullable Identity aId, TestPki.@Nullable Identity bId,
      TestPki.@Nullable Identity rawId) {
    AtomicReference<PeerId> seenByB = new AtomicReference<>();
    TcpServerTransport.Builder sb =
        TcpServerTransport.builder(b).unknownDestination(p -> {
          seenByB.compareAndSet(null, p);
          return Mono.just(true);
        });
    if (bId != null) {
      sb.tls(bId.tls());
    }
    DisposableServer server = sb.build().bind().block(WAIT);
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
        return aId != null ? aId.fingerprint() : seenByB.get();
      }

      public void connect(long bytesPerSecond) {
        TcpClientTransport.Builder cb =
            TcpClientTransport.builder(a).remote("localhost", server.port()).expect(bAsSeenByA())
                .bandwidth(bytesPerSecond);
        if (aId != null) {
          cb.tls(aId.tls());
        }
        seenByB.set(null);
        link = cb.build().connect().block(WAIT);
        a.attach(link).subscribe();
      }

      public void disconnect() {
        link.dispose();
      }

      public List<Message> sendRaw(byte[] frame) {
        return Raw.tcp(server.port(), rawId != null ? rawId.tls() : null, frame);
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
    return tcpHarness(a, b, null, null, null);
  }
}
