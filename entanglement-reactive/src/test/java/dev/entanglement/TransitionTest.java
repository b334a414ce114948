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

  /**
   * Node a holds b's object "t"; the raw peer y, connected to a and off b's path, has begun
   * transition "ty" on it. Returns y.
   */
  private static WireBehaviourTest.RawPeer transitionFromAPeerOffThePath(TestMesh mesh) {
    mesh.node("a");
    mesh.node("b");
    mesh.connect("a", "b");
    mesh.get("b").publish(new Cursor("t", 0, 0)).block();
    WireBehaviourTest.RawPeer y = new WireBehaviourTest.RawPeer(mesh, "a", "y");
    y.send(WireBehaviourTest.hello("y", "owner-y"));
    y.send(update(mesh, "t", "owner-b", "y", 1));
    return y;
  }

  /** An update of transition "ty" on {@code key}, judged on the version a holds. */
  private static dev.entanglement.protocol.Message.Transition update(
      TestMesh mesh, String key, String owner, String origin, long seq) {
    return update(mesh, key, owner, origin, "ty", seq, 7.0);
  }

  private static dev.entanglement.protocol.Message.Transition update(
      TestMesh mesh, String key, String owner, String origin, String tid, long seq, double x) {
    Version base = mesh.get("a").get(CURSOR, key).orElseThrow().version();
    return new dev.entanglement.protocol.Message.Transition(
        "Cursor", key, owner, base.epoch(), base.serial(), tid, origin, seq, true,
        tools.jackson.databind.node.JsonNodeFactory.instance.objectNode().put("x", x));
  }

  private static WireBehaviourTest.RawPeer peer(TestMesh mesh, String name) {
    WireBehaviourTest.RawPeer p = new WireBehaviourTest.RawPeer(mesh, "a", name);
    p.send(WireBehaviourTest.hello(name, "owner-" + name));
    return p;
  }

  @Test
  @DisplayName("an originator that sends its transition again after reconnecting may abort it")
  void anAbortAfterAReconnectEndsTheTransition() {
    try (TestMesh mesh = new TestMesh()) {
      List<Tentative<Cursor>> atA = new ArrayList<>();
      WireBehaviourTest.RawPeer y = transitionFromAPeerOffThePath(mesh);
      mesh.get("a").tentative(CURSOR, "t").subscribe(atA::add);
      y.connection.close();
      WireBehaviourTest.RawPeer again = peer(mesh, "y");
      again.send(update(mesh, "t", "owner-b", "y", 1)); // the same update: nothing new to show
      again.send(end("t", "ABORTED"));
      assertEquals(TransitionState.ABORTED, terminal(atA, "ty"));
    }
  }

  @Test
  @DisplayName("an update that does not match the transition held is ignored: another object under its id, another originator, another owner than the object's")
  void anUpdateThatDoesNotMatchTheTransitionIsIgnored() {
    try (TestMesh mesh = new TestMesh()) {
      List<Tentative<Cursor>> atA = new ArrayList<>();
      WireBehaviourTest.RawPeer y = transitionFromAPeerOffThePath(mesh);
      mesh.get("b").publish(new Cursor("u", 0, 0)).block();
      mesh.get("b").publish(new Cursor("v", 0, 0)).block();
      mesh.get("a").tentativeAll(CURSOR).subscribe(atA::add);
      WireBehaviourTest.RawPeer z = peer(mesh, "z");
      z.send(update(mesh, "u", "owner-b", "y", "ty", 5, 9.0)); // y's id on another object
      z.send(update(mesh, "t", "owner-b", "z", "ty", 2, 9.0)); // y's transition, another originator
      y.send(update(mesh, "v", "owner-y", "y", "tv", 1, 9.0)); // b's object, claimed as y's owner's
      assertTrue(atA.stream().allMatch(t -> t.transitionId().equals("ty") && t.origin().equals("y")
          && t.key().key().equals("t") && t.value().x() == 7.0), "a showed " + atA);
      z.send(end("t", "ABORTED")); // z is not on its originator's side
      y.send(end("t", "ABORTED"));
      assertEquals(TransitionState.ABORTED, terminal(atA, "ty"));
    }
  }

  @Test
  @DisplayName("a node's own transition is neither steered nor abandoned by a neighbour naming it as the originator")
  void aNodesOwnTransitionIsNotSteeredByANeighbour() {
    try (TestMesh mesh = new TestMesh()) {
      List<Tentative<Cursor>> atA = new ArrayList<>();
      WireBehaviourTest.RawPeer y = transitionFromAPeerOffThePath(mesh);
      mesh.get("a").tentative(CURSOR, "t").subscribe(atA::add);
      Transition<Cursor> own = mesh.get("a").beginTransition(CURSOR, "t");
      own.update(Map.of("x", 5.0));
      y.send(update(mesh, "t", "owner-b", "a", own.id(), 1, 5.0)); // an echo: y now "sent" it
      y.send(update(mesh, "t", "owner-b", "a", own.id(), 99, 9.0));
      y.send(new dev.entanglement.protocol.Message.TransitionEnd("Cursor", "t", own.id(), "ABORTED"));
      List<Tentative<Cursor>> ofOwn = atA.stream().filter(t -> t.transitionId().equals(own.id())).toList();
      assertEquals(5.0, ofOwn.get(ofOwn.size() - 1).value().x(), "a showed " + ofOwn);
      assertTrue(ofOwn.stream().noneMatch(t -> t.state().isTerminal()), "a showed " + ofOwn);
    }
  }

  @Test
  @DisplayName("a proposal naming a transition open on another object is refused INVALID_OPERATION, and the transition stays open")
  void aProposalNamingAnotherObjectsTransitionIsRefused() {
    try (TestMesh mesh = new TestMesh()) {
      List<Tentative<Cursor>> atB = new ArrayList<>();
      WireBehaviourTest.RawPeer y = transitionFromAPeerOffThePath(mesh);
      mesh.get("b").tentative(CURSOR, "t").subscribe(atB::add);
      mesh.get("b").publish(new Cursor("u", 0, 0)).block();
      y.send(new dev.entanglement.protocol.Message.Propose(5, dev.entanglement.protocol.Message.ProposalKind.UPDATE,
          "Cursor", "u", "owner-b", true,
          tools.jackson.databind.node.JsonNodeFactory.instance.objectNode().put("x", 3.0), "ty", 0));
      assertEquals("INVALID_OPERATION",
          y.of(dev.entanglement.protocol.Message.Error.class).get(0).code());
      assertEquals(0.0, mesh.get("b").get(CURSOR, "u").orElseThrow().value().x());
      y.send(end("t", "ABORTED"));
      assertEquals(TransitionState.ABORTED, terminal(atB, "ty"));
    }
  }

  private static dev.entanglement.protocol.Message.TransitionEnd end(String key, String state) {
    return new dev.entanglement.protocol.Message.TransitionEnd("Cursor", key, "ty", state);
  }

  @Test
  @DisplayName("an owner's decision on a transition is taken only from the owner's side; an abandonment also from the originator's")
  void transitionEndsComeFromTheirSide() {
    try (TestMesh mesh = new TestMesh()) {
      Map<String, List<Tentative<Cursor>>> signals = new LinkedHashMap<>();
      for (String n : List.of("a", "b")) {
        signals.put(n, new ArrayList<>());
      }
      WireBehaviourTest.RawPeer y = transitionFromAPeerOffThePath(mesh);
      signals.forEach((n, l) -> mesh.get(n).tentative(CURSOR, "t").subscribe(l::add));
      y.send(end("t", "CONFIRMED"));
      y.send(end("t", "REJECTED"));
      peer(mesh, "z").send(end("t", "ABORTED")); // z sent no update of it
      for (String n : List.of("a", "b")) {
        assertTrue(signals.get(n).stream().noneMatch(t -> t.state().isTerminal()), n + " saw " + signals.get(n));
      }
      y.send(end("t", "ABORTED"));
      assertEquals(TransitionState.ABORTED, terminal(signals.get("a"), "ty"));
      assertEquals(TransitionState.ABORTED, terminal(signals.get("b"), "ty"));
    }
  }

  @Test
  @DisplayName("an end that names another object than its transition's ends nothing, and the transition can still end")
  void anEndNamingAnotherObjectEndsNothing() {
    try (TestMesh mesh = new TestMesh()) {
      List<Tentative<Cursor>> atA = new ArrayList<>();
      WireBehaviourTest.RawPeer y = transitionFromAPeerOffThePath(mesh);
      mesh.get("a").tentative(CURSOR, "t").subscribe(atA::add);
      mesh.get("b").publish(new Cursor("u", 0, 0)).block();
      y.send(end("u", "ABORTED"));
      assertTrue(atA.stream().noneMatch(t -> t.state().isTerminal()), "a saw " + atA);
      y.send(end("t", "ABORTED"));
      assertEquals(TransitionState.ABORTED, terminal(atA, "ty"));
    }
  }

  private static dev.entanglement.protocol.Message.Transition transition(
      long baseEpoch, long baseSerial, long seq, double x) {
    return new dev.entanglement.protocol.Message.Transition(
        "Cursor", "t", "owner-x", baseEpoch, baseSerial, "tx", "x", seq, true,
        tools.jackson.databind.node.JsonNodeFactory.instance.objectNode().put("x", x));
  }
}
