package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.LocalTransport;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import reactor.core.publisher.Sinks;

/** The in-JVM transport against the conformance suite. */
@org.junit.jupiter.api.extension.ExtendWith(LeakDetection.class)
class LocalConformanceTest implements TransportConformance {
  @Override
  public Harness harness(EntanglementNode a, EntanglementNode b) {
    return new Harness() {
      LocalTransport.Connection conn;

      public EntanglementNode a() {
        return a;
      }

      public EntanglementNode b() {
        return b;
      }

      public PeerId bAsSeenByA() {
        return PeerId.of("b");
      }

      public PeerId aAsSeenByB() {
        return PeerId.of("a");
      }

      public void connect(long bytesPerSecond) {
        conn = LocalTransport.builder().bandwidth(bytesPerSecond).build().connect(PeerId.of("a"), PeerId.of("b"));
        a.attach(conn.a()).subscribe();
        b.attach(conn.b()).subscribe();
      }

      public void disconnect() {
        conn.close();
      }

      public List<Message> sendRaw(byte[] frame) {
        LocalTransport.Connection raw = LocalTransport.create().connect(PeerId.of("raw"), PeerId.of("b"));
        b.attach(raw.b()).subscribe();
        List<Message> got = new CopyOnWriteArrayList<>();
        Sinks.Many<byte[]> out = Sinks.many().unicast().onBackpressureBuffer();
        raw.a().receive().subscribe(f -> got.add(Raw.CODEC.decode(f)));
        raw.a().send(out.asFlux()).subscribe();
        out.tryEmitNext(Raw.hello("raw"));
        out.tryEmitNext(frame);
        raw.a().onClose().block(WAIT);
        return got;
      }

      public void close() {
        if (conn != null) {
          conn.close();
        }
        a.close().block(WAIT);
        b.close().block(WAIT);
      }
    };
  }
}
