package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.test.StepVerifier;

/** Speculative changes: tentative streams and their terminal signals (reference §5). */
class TransitionTest {

  /** Records every tentative signal per node. */
  private static Map<String, List<Tentative<Cursor>>> record(TestMesh mesh, String key) {
    Map<String, List<Tentative<Cursor>>> signals = new LinkedHashMap<>();
    mesh.nodes.forEach(
        (id, n) -> {
          List<Tentative<Cursor>> l = new ArrayList<>();
          signals.put(id, l);
          n.tentative(CURSOR, key).subscribe(l::add);
        });
    return signals;
  }

  private static TransitionState terminal(List<Tentative<Cursor>> signals, String tid) {
    List<Tentative<Cursor>> ends =
        signals.stream().filter(t -> t.transitionId().equals(tid) && t.state().isTerminal()).toList();
    assertEquals(1, ends.size(), "terminal signals for " + tid + ": " + ends);
    return ends.get(0).state();
  }

  @Test
  @DisplayName("confirmed: a non-owner's transition is seen tentatively everywhere, then committed through the owner")
  void confirmedByOwner() {
    try (TestMesh mesh = ReplicationTest.line("client", "server", "manager")) {
      mesh.get("client").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      List<Snapshot<Cursor>> committed = new ArrayList<>();
      mesh.get("server").watch(CURSOR, "t").subscribe(committed::add);
      Transition<Cursor> t = mesh.get("manager").beginTransition(CURSOR, "t");
      for (int i = 1; i <= 11; i++) {
        t.update(Map.of("x", (double) i));
      }
      for (String n : List.of("client", "server", "manager")) {
        Tentative<Cursor> last = signals.get(n).get(signals.get(n).size() - 1);
        assertEquals(TransitionState.ACTIVE, last.state());
        assertEquals(new Cursor("t", 11, 0), last.value(), n);
        assertEquals("manager", last.origin());
      }
      assertEquals(1, committed.size(), "tentative values must not appear in watch");
      Outcome<Cursor> o = t.commit().block();
      assertEquals(new Cursor("t", 11, 0), assertInstanceOf(Outcome.Committed.class, o).snapshot().value());
      for (String n : List.of("client", "server", "manager")) {
        assertEquals(TransitionState.CONFIRMED, terminal(signals.get(n), t.id()), n);
        assertEquals(new Cursor("t", 11, 0), mesh.get(n).get(CURSOR, "t").orElseThrow().value());
      }
      assertEquals(2, committed.size());
      for (EntanglementNode n : mesh.nodes.values()) {
        assertEquals(0, n.statsConsistent().block().activeTransitions());
      }
    }
  }

  @Test
  @DisplayName("a transition's commit queued on a slow link does not merge with a plain proposal of the object: each is decided as sent")
  void aQueuedCommitDoesNotMergeWithAPlainProposal() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p");
      mesh.connect("owner", "p",
          dev.entanglement.transport.LocalTransport.builder().scheduler(mesh.clock).bandwidth(200).build());
      mesh.advance(Duration.ofSeconds(5));
      mesh.get("owner").publish(new Cursor("t", 0, 0)).block();
      mesh.advance(Duration.ofSeconds(5));
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("p").beginTransition(CURSOR, "t");
      t.update(Map.of("x", 1.0));
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      t.commit().subscribe(outcomes::add);
      mesh.get("p").propose(CURSOR, "t", Map.of("y", 2.0)).subscribe(outcomes::add);
      mesh.advance(Duration.ofSeconds(20));
      assertEquals(2, outcomes.size());
      assertTrue(outcomes.stream().allMatch(Outcome::isCommitted), outcomes.toString());
      assertEquals(TransitionState.CONFIRMED, terminal(signals.get("owner"), t.id()));
      assertEquals(new Cursor("t", 1, 2), mesh.get("owner").get(CURSOR, "t").orElseThrow().value());
    }
  }

  @Test
  @DisplayName("confirmed: the owner's own transition commits without asking anyone")
  void ownerTransition() {
    try (TestMesh mesh = ReplicationTest.line("client", "server")) {
      mesh.get("client").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("client").beginTransition(CURSOR, "t");
      t.update(new Cursor("t", 5, 5));
      assertEquals(new Cursor("t", 5, 5), signals.get("server").get(0).value());
      assertTrue(t.commit().block().isCommitted());
      assertEquals(TransitionState.CONFIRMED, terminal(signals.get("server"), t.id()));
      assertEquals(new Cursor("t", 5, 5), mesh.get("server").get(CURSOR, "t").orElseThrow().value());
    }
  }

  @Test
  @DisplayName("broken: the owner changes the object, every node ends the transition BROKEN, and its commit is refused")
  void brokenByOwnerChange() {
    try (TestMesh mesh = ReplicationTest.line("client", "server", "manager")) {
      mesh.get("client").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("manager").beginTransition(CURSOR, "t");
      t.update(Map.of("y", 3.0));
      mesh.get("client").publish(new Cursor("t", 7, 7)).block();
      for (String n : List.of("client", "server", "manager")) {
        assertEquals(TransitionState.BROKEN, terminal(signals.get(n), t.id()), n);
      }
      Outcome<Cursor> o = t.commit().block();
      assertEquals(ErrorCode.BROKEN_TRANSITION, assertInstanceOf(Outcome.Rejected.class, o).code());
      assertEquals(new Cursor("t", 7, 7), mesh.get("manager").get(CURSOR, "t").orElseThrow().value());
    }
  }

  @Test
  @DisplayName("a plain proposal committed by the owner breaks a transition on the object, and the proposer gets its commit without the transition's values")
  void aPlainProposalBreaksATransition() {
    try (TestMesh mesh = ReplicationTest.line("client", "server", "manager")) {
      mesh.get("client").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("server").beginTransition(CURSOR, "t");
      t.update(Map.of("y", 3.0));
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "t", Map.of("x", 5.0)).block();
      assertEquals(new Cursor("t", 5, 0), assertInstanceOf(Outcome.Committed.class, o).snapshot().value());
      for (String n : List.of("client", "server", "manager")) {
        assertEquals(TransitionState.BROKEN, terminal(signals.get(n), t.id()), n);
        assertEquals(new Cursor("t", 5, 0), mesh.get(n).get(CURSOR, "t").orElseThrow().value(), n);
      }
      assertEquals(ErrorCode.BROKEN_TRANSITION,
          assertInstanceOf(Outcome.Rejected.class, t.commit().block()).code());
    }
  }

  @Test
  @DisplayName("an aborted transition leaves nothing of its values in a later plain proposal")
  void anAbortedTransitionLeavesNothingBehind() {
    try (TestMesh mesh = ReplicationTest.line("client", "server", "manager")) {
      mesh.get("client").publish(new Cursor("t", 0, 0)).block();
      Transition<Cursor> t = mesh.get("manager").beginTransition(CURSOR, "t");
      t.update(Map.of("y", 3.0));
      t.abort().block();
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "t", Map.of("x", 5.0)).block();
      assertEquals(new Cursor("t", 5, 0), assertInstanceOf(Outcome.Committed.class, o).snapshot().value());
      for (String n : List.of("client", "server", "manager")) {
        assertEquals(new Cursor("t", 5, 0), mesh.get(n).get(CURSOR, "t").orElseThrow().value(), n);
      }
    }
  }

  @Test
  @DisplayName("competing: a newer transition breaks the older one at the owner; only the newer commits")
  void competingTransitions() {
    try (TestMesh mesh = ReplicationTest.line("client", "server", "manager")) {
      mesh.get("client").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> first = mesh.get("manager").beginTransition(CURSOR, "t");
      first.update(Map.of("x", 1.0));
      Transition<Cursor> second = mesh.get("server").beginTransition(CURSOR, "t");
      second.update(Map.of("x", 2.0));
      for (String n : List.of("client", "server", "manager")) {
        assertEquals(TransitionState.BROKEN, terminal(signals.get(n), first.id()), n);
      }
      assertEquals(ErrorCode.BROKEN_TRANSITION,
          assertInstanceOf(Outcome.Rejected.class, first.commit().block()).code());
      assertTrue(second.commit().block().isCommitted());
      for (String n : List.of("client", "server", "manager")) {
        assertEquals(TransitionState.CONFIRMED, terminal(signals.get(n), second.id()), n);
      }
      assertEquals(2.0, mesh.get("manager").get(CURSOR, "t").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("expired: a transition with no update for the TTL expires on every node; a later commit is refused")
  void expiresAfterTtl() {
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("a", "b", "c")) {
        mesh.node(n, b -> b.transitionTtl(Duration.ofSeconds(5)));
      }
      mesh.connect("a", "b");
      mesh.connect("b", "c");
      mesh.get("a").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("c").beginTransition(CURSOR, "t");
      t.update(Map.of("x", 1.0));
      mesh.advance(Duration.ofSeconds(4));
      t.update(Map.of("x", 2.0)); // an update restarts the TTL
      mesh.advance(Duration.ofSeconds(4));
      for (List<Tentative<Cursor>> l : signals.values()) {
        assertFalse(l.get(l.size() - 1).state().isTerminal());
      }
      mesh.advance(Duration.ofSeconds(2));
      for (String n : List.of("a", "b", "c")) {
        assertEquals(TransitionState.EXPIRED, terminal(signals.get(n), t.id()), n);
      }
      assertEquals(ErrorCode.BROKEN_TRANSITION,
          assertInstanceOf(Outcome.Rejected.class, t.commit().block()).code());
      assertEquals(new Cursor("t", 0, 0), mesh.get("a").get(CURSOR, "t").orElseThrow().value());
    }
  }

  @Test
  @DisplayName("aborted: the originator abandons the transition and every node ends it ABORTED")
  void aborted() {
    try (TestMesh mesh = ReplicationTest.line("a", "b", "c")) {
      mesh.get("a").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("c").beginTransition(CURSOR, "t");
      t.update(Map.of("x", 1.0));
      t.abort().block();
      for (String n : List.of("a", "b", "c")) {
        assertEquals(TransitionState.ABORTED, terminal(signals.get(n), t.id()), n);
      }
    }
  }

  @Test
  @DisplayName("rejected: the owner rejects the final state; every node ends the transition REJECTED")
  void rejectedByOwner() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      mesh.get("a").publish(new Cursor("t", 0, 0)).block();
      mesh.get("a").proposals(CURSOR).subscribe(p -> p.reject(ErrorCode.UNAUTHORIZED, "locked"));
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("b").beginTransition(CURSOR, "t");
      t.update(Map.of("x", 1.0));
      assertEquals(new Outcome.Rejected<Cursor>(ErrorCode.UNAUTHORIZED, "locked"), t.commit().block());
      for (String n : List.of("a", "b")) {
        assertEquals(TransitionState.REJECTED, terminal(signals.get(n), t.id()), n);
      }
    }
  }

  @Test
  @DisplayName("a transition in a cycle reaches every node once and does not break itself")
  void cycleDoesNotBreakTransition() {
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("a", "b", "c")) {
        mesh.node(n);
      }
      mesh.connect("a", "b");
      mesh.connect("b", "c");
      mesh.connect("c", "a");
      mesh.get("a").publish(new Cursor("t", 0, 0)).block();
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> t = mesh.get("b").beginTransition(CURSOR, "t");
      for (int i = 0; i < 5; i++) {
        t.update(Map.of("x", (double) i));
      }
      for (String n : List.of("a", "c")) {
        List<Tentative<Cursor>> l = signals.get(n);
        assertTrue(l.stream().noneMatch(s -> s.state().isTerminal()), n + " " + l);
        assertEquals(4.0, l.get(l.size() - 1).value().x());
      }
      assertTrue(t.commit().block().isCommitted());
      for (String n : List.of("a", "b", "c")) {
        assertEquals(TransitionState.CONFIRMED, terminal(signals.get(n), t.id()), n);
      }
    }
  }

  @Test
  @DisplayName("beginTransition on an unknown object fails with NOT_FOUND")
  void unknownObject() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementException e =
          assertThrows(EntanglementException.class, () -> a.beginTransition(CURSOR, "nope"));
      assertEquals(ErrorCode.NOT_FOUND, e.code());
    }
  }

  @Test
  @DisplayName("tentative stream: a slow subscriber gets the latest update and the terminal signal")
  void tentativeBackpressure() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      mesh.get("a").publish(new Cursor("t", 0, 0)).block();
      Transition<Cursor> t = mesh.get("b").beginTransition(CURSOR, "t");
      StepVerifier.create(mesh.get("a").tentative(CURSOR, "t"), 0)
          .then(() -> {
            for (int i = 1; i <= 100; i++) {
              t.update(Map.of("x", (double) i));
            }
          })
          .thenRequest(1)
          .assertNext(s -> assertEquals(100.0, s.value().x()))
          .then(() -> t.abort().block())
          .thenRequest(1)
          .assertNext(s -> {
            assertEquals(TransitionState.ABORTED, s.state());
            assertNull(s.value());
          })
          .thenCancel()
          .verify(Duration.ofSeconds(5));
    }
  }

  @Test
  @DisplayName("a tentative value obeys the send policy on the value the peer would see, not only on the committed state")
  void tentativeValueObeysSendPolicy() {
    Policy bigHiddenFromC =
        TestMesh.bigCursorsHiddenFrom("c");
    try (TestMesh mesh = new TestMesh()) {
      Registry reg = Registry.builder("big").type(CURSOR).policy(bigHiddenFromC).build();
      mesh.node("a", reg, b -> {});
      mesh.node("c", reg, b -> {});
      mesh.connect("a", "c");
      mesh.get("a").publish(new Cursor("t", 0, 0)).block(); // visible to c
      Map<String, List<Tentative<Cursor>>> signals = record(mesh, "t");
      Transition<Cursor> hidden = mesh.get("a").beginTransition(CURSOR, "t");
      hidden.update(Map.of("x", 200.0));
      hidden.abort().block();
      Transition<Cursor> shown = mesh.get("a").beginTransition(CURSOR, "t");
      shown.update(Map.of("x", 50.0));
      List<Tentative<Cursor>> atC = signals.get("c");
      assertTrue(atC.stream().noneMatch(t -> t.transitionId().equals(hidden.id())), "c saw " + atC);
      assertEquals(new Cursor("t", 50, 0), atC.get(atC.size() - 1).value());
      assertEquals(new Cursor("t", 200, 0), signals.get("a").get(0).value(), "the originator sees it");
    }
  }

  @Test
  @DisplayName("a transition judged on another committed version than the one held is not applied")
  void transitionOnAnotherBaseIsNotApplied() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      List<Tentative<Cursor>> seen = new ArrayList<>();
      mesh.get("a").tentativeAll(CURSOR).subscribe(seen::add);
      WireBehaviourTest.RawPeer x = new WireBehaviourTest.RawPeer(mesh, "a", "x");
      x.send(WireBehaviourTest.hello("x", "owner-x"));
      x.send(WireBehaviourTest.sync("t", "owner-x", 1, 10));
      x.send(WireBehaviourTest.sync("t", "owner-x", 2, 20)); // a holds 1:2
      x.send(transition(1, 1, 1, 500));
      assertTrue(seen.isEmpty(), "merged into 1:2 after being judged on 1:1: " + seen);
      x.send(transition(1, 2, 2, 30));
      assertEquals(List.of(new Cursor("t", 30, 0)), seen.stream().map(Tentative::value).toList());
    }
  }

  private static dev.entanglement.protocol.Message.Transition transition(
      long baseEpoch, long baseSerial, long seq, double x) {
    return new dev.entanglement.protocol.Message.Transition(
        "Cursor", "t", "owner-x", baseEpoch, baseSerial, "tx", "x", seq, true,
        tools.jackson.databind.node.JsonNodeFactory.instance.objectNode().put("x", x));
  }
}
