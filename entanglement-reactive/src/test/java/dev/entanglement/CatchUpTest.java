package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.store.InMemoryStateStore;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/** Catch-up on reconnect: per-owner watermarks, only newer states, full resync when needed. */
class CatchUpTest {

  @Test
  @DisplayName("a full resync's watermark stays full when a steady-state watermark of the owner is queued behind it")
  void aFullWatermarkStaysFullWhenMerged() {
    OwnerId o = OwnerId.of("owner-o");
    Destination.Outbound.Watermark full = new Destination.Outbound.Watermark(o, true);
    Destination.Outbound.Watermark steady = new Destination.Outbound.Watermark(o, false);
    assertEquals(full, Engine.mergeOutbound(full, steady));
    assertEquals(full, Engine.mergeOutbound(steady, full));
    assertEquals(steady, Engine.mergeOutbound(steady, steady));
  }

  @Test
  @DisplayName("a reconnecting peer receives only what changed while it was away")
  void onlyChangesAreResent() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      for (int i = 0; i < 100; i++) {
        mesh.get("a").publish(new Cursor("c" + i, i, 0)).block();
      }
      mesh.advance(Duration.ofSeconds(2)); // b learns its watermark
      mesh.disconnect("a", "b");
      for (int i = 0; i < 5; i++) {
        mesh.get("a").publish(new Cursor("c" + i, -1, -1)).block();
      }
      mesh.get("a").delete(CURSOR, "c50").block();
      long framesBefore = mesh.get("a").stats().framesSent();
      // A version committed with no link up keeps no frame (StoredState): each is encoded now.
      long encodedBefore = mesh.get("a").stats().statesEncoded();
      mesh.connect("a", "b");
      long frames = mesh.get("a").stats().framesSent() - framesBefore;
      // 6 states, plus HELLO, ROUTES, CATCH_UP and a watermark.
      assertTrue(frames <= 12, "frames sent on reconnect: " + frames);
      assertEquals(6, mesh.get("a").stats().statesEncoded() - encodedBefore);
      for (int i = 0; i < 100; i++) {
        assertEquals(
            mesh.get("a").get(CURSOR, "c" + i).map(Snapshot::version),
            mesh.get("b").get(CURSOR, "c" + i).map(Snapshot::version),
            "c" + i);
      }
      assertTrue(mesh.get("b").get(CURSOR, "c50").orElseThrow().deleted());
    }
  }

  @Test
  @DisplayName("a relay answers a reconnecting peer from its own store")
  void relayAnswersFromItsStore() {
    try (TestMesh mesh = ReplicationTest.line("a", "b", "c")) {
      for (int i = 0; i < 50; i++) {
        mesh.get("a").publish(new Cursor("k" + i, i, 0)).block();
      }
      mesh.advance(Duration.ofSeconds(3));
      mesh.disconnect("b", "c");
      mesh.get("a").publish(new Cursor("k1", 100, 0)).block();
      mesh.get("a").publish(new Cursor("new", 1, 0)).block();
      mesh.get("a").delete(CURSOR, "k2").block();
      long before = mesh.get("b").stats().framesSent();
      mesh.connect("b", "c");
      long frames = mesh.get("b").stats().framesSent() - before;
      assertTrue(frames <= 12, "frames the relay sent on reconnect: " + frames);
      assertEquals(100.0, mesh.get("c").get(CURSOR, "k1").orElseThrow().value().x());
      assertTrue(mesh.get("c").get(CURSOR, "new").isPresent());
      assertTrue(mesh.get("c").get(CURSOR, "k2").orElseThrow().deleted());
      assertEquals(0, mesh.get("b").stats().statesEncoded(), "relays forward the owner's bytes");
    }
  }

  @Test
  @DisplayName("a peer away longer than the tombstone retention gets a full resync and drops deleted objects")
  void behindRetentionGetsFullResync() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.tombstoneRetention(Duration.ofMinutes(1)).keepAlive(Duration.ZERO));
      mesh.node("b", b -> b.keepAlive(Duration.ZERO));
      deleteWhileApartAndDropTheTombstone(mesh);
      assertTrue(mesh.get("a").get(CURSOR, "gone").isEmpty());
      mesh.connect("a", "b");
      assertTrue(mesh.get("b").get(CURSOR, "gone").isEmpty(), "a full resync removes what no longer exists");
      assertEquals(2.0, mesh.get("b").get(CURSOR, "kept").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("an owner that dropped a tombstone and then restarted from its store still resyncs a peer behind it fully")
  void behindRetentionGetsFullResyncAfterTheOwnerRestarts() {
    InMemoryStateStore store = new InMemoryStateStore();
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.store(store).tombstoneRetention(Duration.ofMinutes(1)).keepAlive(Duration.ZERO))
          .start().block();
      mesh.node("b", b -> b.keepAlive(Duration.ZERO));
      deleteWhileApartAndDropTheTombstone(mesh);
      mesh.nodes.remove("a").close().block();
      mesh.node("a", b -> b.store(store).tombstoneRetention(Duration.ofMinutes(1)).keepAlive(Duration.ZERO))
          .start().block();
      assertTrue(mesh.get("a").get(CURSOR, "gone").isEmpty());
      mesh.connect("a", "b");
      assertTrue(mesh.get("b").get(CURSOR, "gone").isEmpty(), "the restarted owner still knows what it dropped");
      assertEquals(2.0, mesh.get("b").get(CURSOR, "kept").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a relay that dropped a tombstone does not take the deleted object back from a peer that was away longer and forgot it")
  void aRelayDoesNotResurrectWhatItDroppedFromAPeerBehindIt() {
    InMemoryStateStore pStore = new InMemoryStateStore();
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.keepAlive(Duration.ZERO));
      mesh.node("r", b -> b.tombstoneRetention(Duration.ofMinutes(1)).keepAlive(Duration.ZERO));
      mesh.node("p", b -> b.store(pStore).keepAlive(Duration.ZERO)).start().block();
      mesh.connect("a", "r");
      mesh.connect("r", "p");
      mesh.get("a").publish(new Cursor("gone", 1, 1)).block();
      mesh.get("a").publish(new Cursor("kept", 2, 2)).block();
      mesh.advance(Duration.ofSeconds(2));
      assertEquals(1.0, mesh.get("p").get(CURSOR, "gone").orElseThrow().value().x());
      mesh.disconnect("r", "p");
      mesh.get("a").delete(CURSOR, "gone").block();
      mesh.advance(Duration.ofMinutes(3)); // r drops the tombstone after its retention of 1 minute
      assertTrue(mesh.get("r").get(CURSOR, "gone").isEmpty());
      // p restarts from its store: it no longer remembers r, so it offers r every state it holds.
      mesh.nodes.remove("p").close().block();
      mesh.node("p", b -> b.store(pStore).keepAlive(Duration.ZERO)).start().block();
      assertTrue(mesh.get("p").get(CURSOR, "gone").isPresent());
      mesh.connect("r", "p");
      mesh.advance(Duration.ofSeconds(2));
      assertTrue(mesh.get("r").get(CURSOR, "gone").isEmpty(), "not resurrected at the relay");
      assertTrue(mesh.get("p").get(CURSOR, "gone").isEmpty(), "dropped by the relay's full resync");
      assertEquals(2.0, mesh.get("p").get(CURSOR, "kept").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a node that dropped tombstones of an owner still takes from that owner a state it never had below them (one that was hidden)")
  void anOwnersOwnStatesAreNotTakenForDeleted() {
    Set<String> hidden = ConcurrentHashMap.newKeySet();
    hidden.add("h");
    Policy hide = TestMesh.hidingKeys(hidden);
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.peerPolicy(hide).keepAlive(Duration.ZERO));
      mesh.node("r", b -> b.tombstoneRetention(Duration.ofMinutes(1)).keepAlive(Duration.ZERO));
      mesh.connect("a", "r");
      mesh.get("a").publish(new Cursor("h", 1, 1)).block(); // hidden from r
      mesh.get("a").publish(new Cursor("x", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(2));
      mesh.get("a").delete(CURSOR, "x").block();
      mesh.advance(Duration.ofMinutes(3)); // r drops x's tombstone, newer than h
      mesh.disconnect("a", "r");
      hidden.clear();
      mesh.get("a").refreshPolicy().block();
      mesh.connect("a", "r");
      assertEquals(1.0, mesh.get("r").get(CURSOR, "h").orElseThrow().value().x(), "from its owner");
    }
  }

  /** a publishes "gone" and "kept" to b, deletes "gone" while apart, and drops its tombstone. */
  private static void deleteWhileApartAndDropTheTombstone(TestMesh mesh) {
    mesh.connect("a", "b");
    mesh.get("a").publish(new Cursor("gone", 1, 1)).block();
    mesh.get("a").publish(new Cursor("kept", 2, 2)).block();
    mesh.advance(Duration.ofSeconds(2));
    mesh.disconnect("a", "b");
    mesh.get("a").delete(CURSOR, "gone").block();
    mesh.advance(Duration.ofMinutes(3)); // past the retention of 1 minute
  }

  @Test
  @DisplayName("an owner that lost its store comes back in a new epoch; receivers resync it fully")
  void newEpochResyncsFully() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("b");
      mesh.connect("a", "b");
      mesh.get("a").publish(new Cursor("old", 1, 1)).block();
      mesh.get("a").publish(new Cursor("both", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("a", "b");
      mesh.nodes.remove("a").close().block();
      EntanglementNode fresh = mesh.node("a", b -> b.epoch(2));
      fresh.publish(new Cursor("both", 9, 9)).block();
      mesh.connect("a", "b");
      assertTrue(mesh.get("b").get(CURSOR, "old").isEmpty(), "state from the lost epoch is dropped");
      assertEquals(new Version(2, 1), mesh.get("b").get(CURSOR, "both").orElseThrow().version());
    }
  }

  @Test
  @DisplayName("an in-memory owner restarted with an earlier epoch (its clock went back) moves above the one its peer holds; its states count again")
  void anEarlierEpochIsOutgrown() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.epoch(5_000));
      mesh.node("b");
      mesh.node("c");
      mesh.connect("a", "b");
      mesh.connect("b", "c");
      mesh.get("a").publish(new Cursor("old", 1, 1)).block();
      mesh.get("a").publish(new Cursor("both", 1, 1)).block();
      mesh.get("a").delete(CURSOR, "both").block();
      mesh.get("a").publish(new Cursor("both", 2, 2)).block(); // version 5000:4
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("a", "b");
      mesh.nodes.remove("a").close().block();
      EntanglementNode restarted = mesh.node("a", b -> b.epoch(3_000)); // a minute behind, say
      restarted.publish(new Cursor("both", 9, 9)).block();
      restarted.publish(new Cursor("new", 1, 1)).block();
      mesh.connect("a", "b");
      mesh.advance(Duration.ofSeconds(2));
      for (String n : List.of("b", "c")) {
        EntanglementNode node = mesh.get(n);
        assertEquals(new Cursor("both", 9, 9), node.get(CURSOR, "both").orElseThrow().value(), n);
        assertEquals(5_001, node.get(CURSOR, "both").orElseThrow().version().epoch(), n);
        assertTrue(node.get(CURSOR, "new").isPresent(), n);
        assertTrue(node.get(CURSOR, "old").isEmpty(), n + ": the earlier run's object is dropped");
      }
      restarted.publish(new Cursor("both", 10, 10)).block();
      assertEquals(10, mesh.get("c").get(CURSOR, "both").orElseThrow().value().x());
      assertEquals(5_001, restarted.get(CURSOR, "both").orElseThrow().version().epoch());
    }
  }

  @Test
  @DisplayName("a peer's epoch of a local owner more than a day ahead of the clock is not taken: the owner keeps its epoch")
  void anEpochFarAheadIsNotTaken() {
    try (TestMesh mesh = new TestMesh()) {
      long farAhead = Engine.EPOCH_LEAD_TAKEN + 60_000; // the virtual clock is near 0
      mesh.node("x", b -> b.owner(OwnerId.of("owner-a")).epoch(farAhead));
      mesh.node("b");
      mesh.connect("x", "b");
      mesh.get("x").publish(CURSOR, OwnerId.of("owner-a"), new Cursor("k", 1, 1)).block();
      mesh.disconnect("x", "b");
      mesh.nodes.remove("x").close().block();
      EntanglementNode a = mesh.node("a", b -> b.epoch(3_000));
      a.publish(new Cursor("k", 2, 2)).block();
      mesh.connect("a", "b");
      mesh.advance(Duration.ofSeconds(2));
      a.publish(new Cursor("k", 3, 3)).block();
      assertEquals(new Version(3_000, 2), a.get(CURSOR, "k").orElseThrow().version());
      assertEquals(farAhead, mesh.get("b").get(CURSOR, "k").orElseThrow().version().epoch());
    }
  }

  @Test
  @DisplayName("two nodes running one owner (a misconfiguration) do not move its epoch: a relay keeps the objects of both")
  void twoNodesOfOneOwnerLeaveItsEpoch() {
    OwnerId o = OwnerId.of("owner-o");
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("x", b -> b.owner(o).epoch(10));
      mesh.node("y", b -> b.owner(o).epoch(20));
      mesh.node("r");
      mesh.get("x").publish(CURSOR, o, new Cursor("fromX", 1, 1)).block();
      mesh.get("y").publish(CURSOR, o, new Cursor("fromY", 1, 1)).block();
      mesh.connect("y", "r");
      for (int i = 0; i < 2; i++) {
        mesh.connect("x", "r");
        mesh.advance(Duration.ofSeconds(2));
        mesh.disconnect("y", "r");
        mesh.connect("y", "r");
        mesh.advance(Duration.ofSeconds(2));
        mesh.disconnect("x", "r");
      }
      assertEquals(new Version(10, 1), mesh.get("r").get(CURSOR, "fromX").orElseThrow().version());
      assertEquals(new Version(20, 1), mesh.get("r").get(CURSOR, "fromY").orElseThrow().version());
      assertEquals(10, mesh.get("x").get(CURSOR, "fromX").orElseThrow().version().epoch());
    }
  }

  @Test
  @DisplayName("catch-up coexists with live traffic: objects changing during it arrive in their latest state, never regressing")
  void liveTrafficDuringCatchUp() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("b");
      mesh.connect("a", "b");
      for (int i = 0; i < 100; i++) {
        mesh.get("a").publish(new Cursor("k" + i, i, 0)).block();
      }
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("a", "b");
      for (int i = 0; i < 100; i++) {
        mesh.get("a").publish(new Cursor("k" + i, i, 1)).block(); // all changed while away
      }
      java.util.List<String> regressions = new java.util.ArrayList<>();
      java.util.Map<String, Version> last = new java.util.HashMap<>();
      mesh.get("b").watchAll(CURSOR).subscribe(s -> {
        Version prev = last.put(s.key().key(), s.version());
        if (prev != null && !s.version().isNewerThan(prev)) {
          regressions.add(s.key() + ": " + prev + " then " + s.version());
        }
      });
      // A slow link: the catch-up of 100 states takes about a second.
      mesh.connect("a", "b", dev.entanglement.transport.LocalTransport.builder()
          .scheduler(mesh.clock).bandwidth(8_000).build());
      for (int round = 0; round < 20; round++) {
        mesh.advance(Duration.ofMillis(50));
        for (int i = 0; i < 100; i += 7) {
          mesh.get("a").publish(new Cursor("k" + i, i, 2 + round)).block();
        }
      }
      mesh.advance(Duration.ofSeconds(10));
      for (int i = 0; i < 100; i++) {
        assertEquals(mesh.get("a").get(CURSOR, "k" + i).map(Snapshot::version),
            mesh.get("b").get(CURSOR, "k" + i).map(Snapshot::version), "k" + i);
      }
      assertTrue(regressions.isEmpty(), regressions.toString());
    }
  }

  @Test
  @DisplayName("an object that became visible while the link was down is sent at reconnect, though below the watermark")
  void whatBecameVisibleIsSent() {
    Set<String> hidden = ConcurrentHashMap.newKeySet();
    hidden.add("x");
    Policy hide = TestMesh.hidingKeys(hidden);
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.peerPolicy(hide));
      mesh.node("b");
      mesh.connect("a", "b");
      mesh.get("a").publish(new Cursor("x", 1, 1)).block();
      mesh.get("a").publish(new Cursor("y", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(2)); // b's watermark covers x, which it never got
      mesh.disconnect("a", "b");
      hidden.clear();
      mesh.get("a").refreshPolicy().block(); // no open link to b
      mesh.connect("a", "b");
      assertEquals(1.0, mesh.get("b").get(CURSOR, "x").orElseThrow().value().x());
      // Without a refresh while the link is down, catch-up stays incremental.
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("a", "b");
      long encodedBefore = mesh.get("a").stats().framesSent();
      mesh.connect("a", "b");
      assertTrue(mesh.get("a").stats().framesSent() - encodedBefore <= 5,
          "HELLO, ROUTES, CATCH_UP and at most a watermark, no state");
    }
  }

  @Test
  @DisplayName("states a policy refresh offered but a slow link had not sent when it closed are sent at reconnect")
  void refreshStillQueuedAtCloseIsSent() {
    Set<String> hidden = ConcurrentHashMap.newKeySet();
    Policy hide = TestMesh.hidingKeys(hidden);
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.peerPolicy(hide));
      mesh.node("b");
      for (int i = 0; i < 50; i++) {
        hidden.add("k" + i);
        mesh.get("a").publish(new Cursor("k" + i, i, 0)).block();
      }
      mesh.connect("a", "b");
      mesh.advance(Duration.ofSeconds(2)); // b's watermark covers the 50 states it never got
      mesh.disconnect("a", "b");
      mesh.connect("a", "b", dev.entanglement.transport.LocalTransport.builder()
          .scheduler(mesh.clock).bandwidth(1_000).build());
      hidden.clear();
      mesh.get("a").refreshPolicy().block(); // the link is open: offered, but sent slowly
      mesh.advance(Duration.ofMillis(500));
      assertTrue(mesh.get("b").get(CURSOR, "k49").isEmpty(), "still queued");
      mesh.disconnect("a", "b");
      mesh.connect("a", "b");
      for (int i = 0; i < 50; i++) {
        assertEquals(i, mesh.get("b").get(CURSOR, "k" + i).orElseThrow().value().x(), "k" + i);
      }
    }
  }

  @Test
  @DisplayName("a relay withdraws a hidden state from a peer whose catch-up named its owner, though it never sent it the object")
  void hiddenStateWithdrawnFromPeerThatNamedItsOwner() {
    Policy bigHiddenFromC =
        TestMesh.bigCursorsHiddenFrom("c");
    try (TestMesh mesh = new TestMesh()) {
      Registry reg = Registry.builder("big").type(CURSOR).policy(bigHiddenFromC).build();
      for (String n : List.of("o", "a", "b", "c")) {
        mesh.node(n, reg, b -> {});
      }
      mesh.connect("o", "a");
      mesh.connect("o", "b");
      mesh.connect("b", "c");
      mesh.get("o").publish(new Cursor("k", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(2)); // c holds k from b, with b's watermark for owner-o
      mesh.connect("a", "c"); // c's CATCH_UP names owner-o: a sends it nothing, c holds k already
      mesh.disconnect("b", "c"); // b, which sent k to c, cannot withdraw it any more
      List<Snapshot<Cursor>> atC = new java.util.ArrayList<>();
      mesh.get("c").watch(CURSOR, "k").subscribe(atC::add);
      mesh.get("o").publish(new Cursor("k", 200, 1)).block(); // reaches a; hidden from c
      assertEquals(200.0, mesh.get("a").get(CURSOR, "k").orElseThrow().value().x());
      assertTrue(mesh.get("c").get(CURSOR, "k").isEmpty(), "a withdraws k from c");
      assertTrue(atC.get(atC.size() - 1).deleted());
      assertFalse(atC.stream().anyMatch(s -> s.value() != null && s.value().x() >= 100));
    }
  }

  /**
   * Owner o hides big cursors from relay r; staff s holds r's watermark for o, which covers "h",
   * a big cursor committed while the link o–s was down and never sent to r. The registry policy
   * applies at every node.
   */
  private static TestMesh relayMesh(Consumer<EntanglementNode.Builder> ownerConfig, String... nodes) {
    TestMesh mesh = new TestMesh();
    Registry reg = Registry.builder("big").type(CURSOR).policy(TestMesh.bigCursorsHiddenFrom("r")).build();
    mesh.node("o", reg, ownerConfig);
    for (String n : nodes) {
      mesh.node(n, reg, b -> {});
    }
    return mesh;
  }

  /**
   * The owner commits "h" (hidden from r), then "v", so that r's watermark, which r's neighbours
   * adopt, covers "h". A watermark leaves a second after the queue drains: "w" drains r's queues
   * once r has the owner's watermark.
   */
  private static void commitHiddenThenVisible(TestMesh mesh) {
    mesh.get("o").publish(new Cursor("h", 200, 1)).block();
    mesh.get("o").publish(new Cursor("v", 1, 1)).block();
    mesh.advance(Duration.ofSeconds(2));
    mesh.get("o").publish(new Cursor("w", 1, 1)).block();
    mesh.advance(Duration.ofSeconds(2));
  }

  @Test
  @DisplayName("a peer that adopted a relay's watermark still gets from the owner what was hidden from the relay")
  void relayWatermarkDoesNotHideWhatTheRelayMayNotSee() {
    try (TestMesh mesh = relayMesh(b -> {}, "r", "s")) {
      mesh.connect("o", "r");
      mesh.connect("r", "s");
      mesh.connect("o", "s");
      mesh.get("o").publish(new Cursor("first", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("o", "s");
      commitHiddenThenVisible(mesh);
      assertTrue(mesh.get("s").get(CURSOR, "h").isEmpty(), "r never had h");
      assertEquals(1.0, mesh.get("s").get(CURSOR, "v").orElseThrow().value().x(), "v came through r");
      mesh.connect("o", "s"); // s asks o only for what is above r's watermark
      assertEquals(200.0, mesh.get("s").get(CURSOR, "h").orElseThrow().value().x());
      // The owner remembers s: a later reconnect without changes resends no state.
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("o", "s");
      mesh.connect("o", "s");
      long frames = mesh.get("o").stats().peers().stream()
          .filter(p -> p.peer().value().equals("s")).findFirst().orElseThrow().framesSent();
      assertTrue(frames <= 6, "HELLO, ROUTES twice, CATCH_UP, a watermark per owner; no state: " + frames);
    }
  }

  @Test
  @DisplayName("an owner that restarted and forgot a peer offers it every state, since the peer's watermarks may come from a relay that sees less")
  void restartedOwnerOffersEverythingToAForgottenPeer() {
    InMemoryStateStore store = new InMemoryStateStore();
    try (TestMesh mesh = relayMesh(b -> b.store(store), "r", "s")) {
      mesh.get("o").start().block();
      mesh.connect("o", "r");
      mesh.connect("r", "s");
      mesh.connect("o", "s");
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("o", "s");
      commitHiddenThenVisible(mesh);
      mesh.disconnect("o", "r");
      Registry reg = Registry.builder("big").type(CURSOR).policy(TestMesh.bigCursorsHiddenFrom("r")).build();
      mesh.nodes.remove("o").close().block();
      mesh.node("o", reg, b -> b.store(store)).start().block();
      mesh.connect("o", "s");
      assertEquals(200.0, mesh.get("s").get(CURSOR, "h").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a relay that learns a state below a watermark it gave a peer sends it at the peer's next catch-up")
  void stateLearnedLateBelowAGivenWatermarkIsSent() {
    // o – r – p – s, then o – p: p learns h from o only after it gave s r's watermark, which
    // covers h.
    try (TestMesh mesh = relayMesh(b -> {}, "r", "p", "s")) {
      mesh.connect("o", "r");
      mesh.connect("r", "p");
      mesh.connect("p", "s");
      mesh.advance(Duration.ofSeconds(2));
      commitHiddenThenVisible(mesh);
      assertEquals(1.0, mesh.get("s").get(CURSOR, "v").orElseThrow().value().x());
      mesh.disconnect("p", "s");
      mesh.connect("o", "p");
      assertEquals(200.0, mesh.get("p").get(CURSOR, "h").orElseThrow().value().x());
      mesh.connect("p", "s");
      assertEquals(200.0, mesh.get("s").get(CURSOR, "h").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a state lost in flight when the link closed is sent again, though the peer's watermark from a relay covers it")
  void stateLostInFlightIsSentAgain() {
    try (TestMesh mesh = relayMesh(b -> {}, "r", "s")) {
      mesh.connect("o", "r");
      mesh.connect("r", "s");
      mesh.connect("o", "s", dev.entanglement.transport.LocalTransport.builder()
          .scheduler(mesh.clock).latency(Duration.ofMillis(50)).build());
      mesh.advance(Duration.ofSeconds(2)); // o knows what s received
      mesh.get("o").publish(new Cursor("h", 200, 1)).block(); // leaves for s at once
      mesh.advance(Duration.ofMillis(10));
      mesh.disconnect("o", "s"); // h was still on its way
      mesh.get("o").publish(new Cursor("v", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(2));
      mesh.get("o").publish(new Cursor("w", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(2)); // s holds r's watermark, which covers h
      assertTrue(mesh.get("s").get(CURSOR, "h").isEmpty(), "h was lost with the link");
      mesh.connect("o", "s");
      assertEquals(200.0, mesh.get("s").get(CURSOR, "h").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a peer's state that crossed the withdrawal of that state is not taken as held: a refresh that shows it sends it")
  void stateCrossingAWithdrawalIsNotTakenAsHeld() {
    java.util.concurrent.atomic.AtomicBoolean hideFromB = new java.util.concurrent.atomic.AtomicBoolean();
    Registry reg = Registry.builder("b-hidden").type(CURSOR).policy(TestMesh.sendingOnly(
        (destination, s) -> !(hideFromB.get() && destination.value().equals("b")))).build();
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("o", "a", "b")) {
        mesh.node(n, reg, b -> {});
      }
      mesh.connect("o", "a");
      mesh.connect("o", "b");
      mesh.get("o").publish(new Cursor("k", 1, 1)).block(); // a and b hold k
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("o", "b");
      hideFromB.set(true); // b may not see k any more, but nobody linked to it can tell it yet
      // a withdraws k from b (b's CATCH_UP names owner-o) while b, which does not know a, sends
      // it k: the two cross.
      mesh.connect("a", "b");
      assertTrue(mesh.get("b").get(CURSOR, "k").isEmpty(), "withdrawn from b");
      hideFromB.set(false);
      mesh.get("a").refreshPolicy().block();
      assertEquals(1.0, mesh.get("b").get(CURSOR, "k").orElseThrow().value().x());
    }
  }
}
