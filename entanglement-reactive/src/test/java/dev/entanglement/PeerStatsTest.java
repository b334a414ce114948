package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static dev.entanglement.TestMesh.SHAPE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.TestMesh.Shape;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.test.StepVerifier;

/** Per-neighbour statistics checked against workloads whose figures are known in advance. */
class PeerStatsTest {

  private static PeerStats peer(EntanglementNode node, String peer) {
    return node.statsConsistent().block().peers().stream()
        .filter(p -> p.peer().equals(PeerId.of(peer)))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no link to " + peer));
  }

  /** A link of 10 bytes/s: every frame occupies it for about ten seconds. */
  private static TestMesh slowPair() {
    TestMesh mesh = new TestMesh();
    mesh.node("a");
    mesh.node("b");
    mesh.connect("a", "b", LocalTransport.builder().scheduler(mesh.clock).bandwidth(10).build());
    mesh.advance(Duration.ofMinutes(5)); // handshake, routes, catch-up
    return mesh;
  }

  @Test
  @DisplayName("100 updates of one object on a stalled link: conflation ratio 100, one frame, the last state")
  void conflationRatioOfAStalledLink() {
    try (TestMesh mesh = slowPair()) {
      EntanglementNode a = mesh.get("a");
      a.publish(new Shape("busy", "red", 1, 1, false)).block(); // occupies the link for ~10 s
      PeerStats before = peer(a, "b");
      a.publish(new Cursor("c", 1, 1)).block();
      int depthAfterOne = peer(a, "b").queueDepth();
      for (int i = 2; i <= 100; i++) {
        a.publish(new Cursor("c", i, i)).block();
      }
      PeerStats stalled = peer(a, "b");
      assertEquals(100, stalled.updatesProduced() - before.updatesProduced());
      assertEquals(99, stalled.updatesCoalesced() - before.updatesCoalesced());
      assertEquals(depthAfterOne, stalled.queueDepth(), "the queue holds one entry per object, not per update");

      mesh.advance(Duration.ofMinutes(1));
      PeerStats after = peer(a, "b");
      long produced = after.updatesProduced() - before.updatesProduced();
      long kept = produced - (after.updatesCoalesced() - before.updatesCoalesced());
      assertEquals(100.0, (double) produced / kept);
      assertEquals(0, after.queueDepth());
      assertEquals(new Cursor("c", 100, 100), mesh.get("b").get(CURSOR, "c").orElseThrow().value());
    }
  }

  @Test
  @DisplayName("no coalescing gives a ratio of 1, and a link with no updates yet reports 1")
  void ratioWithoutCoalescing() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("b");
      mesh.connect("a", "b");
      mesh.settle();
      assertEquals(1.0, peer(mesh.get("a"), "b").conflationRatio());
      for (int i = 0; i < 10; i++) {
        mesh.get("a").publish(new Cursor("c" + i, i, i)).block();
        mesh.settle();
      }
      PeerStats s = peer(mesh.get("a"), "b");
      assertEquals(10, s.updatesProduced());
      assertEquals(0, s.updatesCoalesced());
      assertEquals(1.0, s.conflationRatio());
    }
  }

  @Test
  @DisplayName("staleness is how long after its commit a state went out: a state queued behind a 10-second frame is 10 s stale")
  void stalenessOfAQueuedState() {
    try (TestMesh mesh = slowPair()) {
      EntanglementNode a = mesh.get("a");
      assertEquals(Duration.ZERO, peer(a, "b").stalenessP50());
      a.publish(new Shape("busy", "red", 1, 1, false)).block(); // a frame of over 50 bytes
      a.publish(new Cursor("c", 1, 1)).block();
      mesh.advance(Duration.ofMinutes(1));
      PeerStats s = peer(a, "b");
      // The cursor waited at least for the busy frame's transmission at 10 bytes/s (over 5 s),
      // and at most for it plus a keepalive PING ahead of it.
      Duration p99 = s.stalenessP99();
      assertTrue(p99.compareTo(Duration.ofSeconds(5)) >= 0, "p99 " + p99);
      assertTrue(p99.compareTo(Duration.ofSeconds(20)) <= 0, "p99 " + p99);
      assertTrue(s.stalenessP50().compareTo(p99) <= 0);
    }
  }

  @Test
  @DisplayName("frames and bytes sent on one side of a link are the frames and bytes received on the other")
  void bytesAndFramesBothWays() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("b");
      mesh.connect("a", "b");
      for (int i = 0; i < 5; i++) {
        mesh.get("a").publish(new Cursor("a" + i, i, i)).block();
        mesh.get("b").publish(new Cursor("b" + i, i, i)).block();
      }
      mesh.settle();
      PeerStats ab = peer(mesh.get("a"), "b");
      PeerStats ba = peer(mesh.get("b"), "a");
      assertEquals(ab.framesSent(), ba.framesReceived());
      assertEquals(ab.bytesSent(), ba.bytesReceived());
      assertEquals(ba.framesSent(), ab.framesReceived());
      assertEquals(ba.bytesSent(), ab.bytesReceived());
      assertTrue(ab.framesSent() >= 5 + 2, "HELLO, ROUTES and five states at least");
      NodeStats node = mesh.get("a").stats();
      assertEquals(node.framesSent(), ab.framesSent());
      assertEquals(node.bytesSent(), ab.bytesSent());
    }
  }

  @Test
  @DisplayName("pending requests count on the proposer's link until the owner decides; transitions count on the owner's link to their origin")
  void pendingRequestsAndTransitions() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p");
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("t", 0, 0)).block();
      mesh.settle();
      List<Proposal<Cursor>> held = new ArrayList<>();
      mesh.get("owner").proposals(CURSOR).subscribe(held::add);
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 1.0)).subscribe(outcomes::add);
      mesh.settle();
      assertEquals(1, peer(mesh.get("p"), "owner").pendingRequests());
      held.get(0).commit();
      mesh.settle();
      assertEquals(0, peer(mesh.get("p"), "owner").pendingRequests());
      assertEquals(1, outcomes.size());

      Transition<Cursor> drag = mesh.get("p").beginTransition(CURSOR, "t");
      drag.update(Map.of("x", 5.0));
      mesh.settle();
      assertEquals(1, peer(mesh.get("owner"), "p").activeTransitions());
      assertEquals(0, peer(mesh.get("p"), "owner").activeTransitions());
      drag.abort().block();
      mesh.settle();
      assertEquals(0, peer(mesh.get("owner"), "p").activeTransitions());
    }
  }

  @Test
  @DisplayName("statsEvery ticks on the node's clock, skips ticks for a slow subscriber, and completes when the node closes")
  void periodicStatistics() {
    TestMesh mesh = new TestMesh();
    EntanglementNode a = mesh.node("a");
    mesh.node("b");
    mesh.connect("a", "b");
    StepVerifier.withVirtualTime(() -> a.statsEvery(Duration.ofSeconds(10)), () -> mesh.clock, 1)
        .expectSubscription()
        .expectNoEvent(Duration.ofSeconds(9))
        .thenAwait(Duration.ofSeconds(1))
        .assertNext(s -> assertEquals(1, s.peers().size()))
        .thenAwait(Duration.ofSeconds(30)) // no demand: these ticks are dropped, not queued
        .thenRequest(1)
        .thenAwait(Duration.ofSeconds(10))
        .assertNext(s -> assertEquals(1, s.peers().size()))
        .then(() -> a.close().subscribe())
        .thenAwait(Duration.ofSeconds(1))
        .verifyComplete();
    mesh.close();
    assertThrows(IllegalArgumentException.class, () -> a.statsEvery(Duration.ZERO));
  }
}
