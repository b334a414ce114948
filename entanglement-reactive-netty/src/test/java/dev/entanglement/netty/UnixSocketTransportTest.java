package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;

@org.junit.jupiter.api.extension.ExtendWith(LeakDetection.class)
class UnixSocketTransportTest {
  @TempDir Path dir;

  @BeforeEach
  void needsEpoll() {
    assumeTrue(
        UnixSocketTransport.isAvailable(),
        "skipped: Unix domain sockets need native epoll, unavailable here: "
            + UnixSocketTransport.unavailabilityCause());
  }

  @Test
  void peersIdentifiedByCredentialsExchangeStates() throws Exception {
    EntanglementNode a = TransportConformance.node("a");
    EntanglementNode b = TransportConformance.node("b");
    Path sock = dir.resolve("b.sock");
    AtomicReference<PeerId> admitted = new AtomicReference<>();
    DisposableServer server =
        UnixSocketTransport.serve(b, sock, peer -> {
          admitted.set(peer);
          return Mono.just(true);
        }).block(TransportConformance.WAIT);
    try {
      assertTrue(Files.exists(sock));
      Link link = UnixSocketTransport.connect(sock).block(TransportConformance.WAIT);
      a.attach(link).subscribe();
      a.publish(new TransportConformance.Cursor("u", 4, 4)).block(TransportConformance.WAIT);
      TransportConformance.await(b, "u", 4);
      // Both ends run as this process's user.
      assertEquals(link.remote(), admitted.get());
      assertTrue(admitted.get().value().startsWith("unix:uid="), admitted.get().value());
    } finally {
      server.disposeNow(TransportConformance.WAIT);
      a.close().block(TransportConformance.WAIT);
      b.close().block(TransportConformance.WAIT);
    }
  }

  @Test
  void refusedPeerIsClosed() {
    EntanglementNode b = TransportConformance.node("b");
    Path sock = dir.resolve("strict.sock");
    DisposableServer server =
        UnixSocketTransport.serve(b, sock, peer -> Mono.just(false)).block(TransportConformance.WAIT);
    try {
      Link link = UnixSocketTransport.connect(sock).block(TransportConformance.WAIT);
      link.onClose().block(TransportConformance.WAIT);
      assertTrue(link.isDisposed());
    } finally {
      server.disposeNow(TransportConformance.WAIT);
      b.close().block(TransportConformance.WAIT);
    }
  }
}
