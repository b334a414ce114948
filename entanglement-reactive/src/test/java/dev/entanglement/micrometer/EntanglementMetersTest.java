package dev.entanglement.micrometer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.SyncType;
import dev.entanglement.transport.LocalTransport;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.test.scheduler.VirtualTimeScheduler;

class EntanglementMetersTest {
  record Dot(String id, int x) {}

  static final SyncType<Dot> DOT = SyncType.of("Dot", Dot.class, Dot::id);

  private VirtualTimeScheduler clock;
  private EntanglementNode a;
  private EntanglementNode b;
  private LocalTransport.Connection link;
  private Disposable attachA;
  private Disposable attachB;

  private EntanglementNode node(String id) {
    return EntanglementNode.builder()
        .id(id)
        .owner(OwnerId.of("owner-" + id))
        .epoch(1)
        .registry(Registry.builder("meters").type(DOT).build())
        .scheduler(clock)
        .build();
  }

  @BeforeEach
  void mesh() {
    clock = VirtualTimeScheduler.create();
    a = node("a");
    b = node("b");
    link = LocalTransport.builder().scheduler(clock).build().connect(PeerId.of("a"), PeerId.of("b"));
    attachA = a.attach(link.a()).subscribe();
    attachB = b.attach(link.b()).subscribe();
    clock.advanceTime();
  }

  @AfterEach
  void close() {
    attachA.dispose();
    attachB.dispose();
    a.close().subscribe();
    b.close().subscribe();
    clock.dispose();
  }

  @Test
  @DisplayName("node-wide and per-peer meters carry the node's statistics as of the last refresh")
  void metersFollowStatistics() {
    SimpleMeterRegistry registry = new SimpleMeterRegistry();
    try (EntanglementMeters meters = EntanglementMeters.of(a, Duration.ofSeconds(5), Tags.of("app", "test"))) {
      meters.bindTo(registry);
      for (int i = 0; i < 20; i++) {
        a.publish(new Dot("d" + i, i)).block();
      }
      clock.advanceTimeBy(Duration.ofSeconds(5));

      var stats = a.statsConsistent().block();
      var peer = stats.peers().get(0);
      assertEquals(stats.framesSent(),
          registry.get("entanglement.frames.sent").tags("node", "a", "app", "test").functionCounter().count());
      assertEquals(peer.bytesSent(),
          registry.get("entanglement.peer.bytes.sent").tag("peer", "b").functionCounter().count());
      assertEquals(20, registry.get("entanglement.peer.updates.produced").tag("peer", "b").functionCounter().count());
      assertEquals(1.0, registry.get("entanglement.peer.conflation.ratio").tag("peer", "b").gauge().value());
      assertEquals(0.0, registry.get("entanglement.peer.queue.depth").tag("peer", "b").gauge().value());
    }
  }

  @Test
  @DisplayName("a closed link's meters leave the registry at the next refresh; close() removes the rest")
  void peerMetersFollowLinks() {
    SimpleMeterRegistry registry = new SimpleMeterRegistry();
    EntanglementMeters meters = EntanglementMeters.of(a, Duration.ofSeconds(5), Tags.empty());
    meters.bindTo(registry);
    clock.advanceTimeBy(Duration.ofSeconds(5));
    assertEquals(1, registry.find("entanglement.peer.frames.sent").functionCounters().size());

    link.close();
    clock.advanceTimeBy(Duration.ofSeconds(5));
    assertNull(registry.find("entanglement.peer.frames.sent").functionCounter());
    assertEquals(1, registry.find("entanglement.frames.sent").functionCounters().size());

    meters.close();
    assertThrows(IllegalStateException.class, () -> meters.bindTo(new SimpleMeterRegistry()));
  }

  @Test
  @DisplayName("one registry per instance, a positive refresh period")
  void misuse() {
    EntanglementMeters meters = EntanglementMeters.of(a);
    meters.bindTo(new SimpleMeterRegistry());
    assertThrows(IllegalStateException.class, () -> meters.bindTo(new SimpleMeterRegistry()));
    meters.close();
    assertThrows(IllegalArgumentException.class, () -> EntanglementMeters.of(a, Duration.ZERO, Tags.empty()));
  }
}
