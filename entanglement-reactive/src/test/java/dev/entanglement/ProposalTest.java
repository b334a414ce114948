package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import reactor.core.Disposable;
import reactor.test.StepVerifier;

/** Proposals, creates and delete requests routed toward owners (reference §2.4, §4.3–§4.5). */
class ProposalTest {

  private static TestMesh gateway() {
    return ReplicationTest.line("client", "server", "manager");
  }

  private static void assertNoPending(TestMesh mesh) {
    for (var e : mesh.nodes.entrySet()) {
      NodeStats s = e.getValue().statsConsistent().block();
      assertEquals(0, s.pendingRequests(), e.getKey() + " pending requests");
      assertEquals(0, s.pendingDecisions(), e.getKey() + " pending decisions");
      assertEquals(0, e.getValue().engine.decisionDeadlinesHeld(), e.getKey() + " decision deadlines");
      assertEquals(0, e.getValue().engine.requestDeadlinesHeld(), e.getKey() + " request deadlines");
    }
  }

  @Test
  @DisplayName("forward: a proposal crosses a relay, the owner commits, and the proposer gets the committed state")
  void forwardAndResponse() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "t", Map.of("y", 9.0)).block();
      Outcome.Committed<Cursor> c = assertInstanceOf(Outcome.Committed.class, o);
      assertEquals(new Cursor("t", 1, 9), c.snapshot().value());
      assertEquals(OwnerId.of("owner-client"), c.snapshot().owner());
      for (String n : List.of("client", "server", "manager")) {
        assertEquals(c.snapshot().version(), mesh.get(n).get(CURSOR, "t").orElseThrow().version());
      }
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a relay answers with the committed state's own frame: it neither encodes the state nor keeps its tree")
  void relayForwardsTheCommittedStateWithoutEncodingIt() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      mesh.settle();
      long encodedBefore = mesh.get("server").statsConsistent().block().statesEncoded();
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "t", Map.of("y", 9.0)).block();
      Outcome.Committed<Cursor> c = assertInstanceOf(Outcome.Committed.class, o);
      assertEquals(new Cursor("t", 1, 9), c.snapshot().value());
      mesh.settle();
      assertEquals(c.snapshot().version(), mesh.get("server").get(CURSOR, "t").orElseThrow().version());
      assertEquals(encodedBefore, mesh.get("server").statsConsistent().block().statesEncoded(),
          "the relay re-encoded a state it received");
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("combined updates: two partial proposals on disjoint attributes both take effect")
  void combinedPartialUpdates() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client").publish(new Cursor("t", 0, 0)).block();
      mesh.get("server").propose(CURSOR, "t", Map.of("x", 1.0)).block();
      mesh.get("server").propose(CURSOR, "t", Map.of("y", 2.0)).block();
      assertEquals(new Cursor("t", 1, 2), mesh.get("client").get(CURSOR, "t").orElseThrow().value());
    }
  }

  @Test
  @DisplayName("pending proposals for one key coalesce on a slow link, and every proposer gets the outcome")
  void pendingProposalsCoalesce() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p");
      mesh.connect("owner", "p", LocalTransport.builder().scheduler(mesh.clock).bandwidth(200).build());
      mesh.advance(Duration.ofSeconds(5));
      mesh.get("owner").publish(new Cursor("t", 0, 0)).block();
      mesh.advance(Duration.ofSeconds(5));
      List<Proposal<Cursor>> seen = new ArrayList<>();
      mesh.get("owner").proposals(CURSOR).subscribe(p -> {
        seen.add(p);
        p.commit();
      });
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 1.0)).subscribe(outcomes::add);
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(outcomes::add);
      mesh.get("p").propose(CURSOR, "t", Map.of("y", 3.0)).subscribe(outcomes::add);
      mesh.advance(Duration.ofSeconds(10));
      assertEquals(3, outcomes.size());
      assertTrue(seen.size() <= 2, "proposals seen by the owner: " + seen.size());
      assertEquals(new Cursor("t", 2, 3), mesh.get("owner").get(CURSOR, "t").orElseThrow().value());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("owner decisions: reject travels back as a value with its code")
  void ownerRejects() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      Disposable d =
          mesh.get("client")
              .proposals(CURSOR)
              .subscribe(p -> p.reject(ErrorCode.UNAUTHORIZED, "locked"));
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "t", Map.of("x", 5.0)).block();
      assertEquals(new Outcome.Rejected<Cursor>(ErrorCode.UNAUTHORIZED, "locked"), o);
      assertEquals(new Cursor("t", 1, 1), mesh.get("client").get(CURSOR, "t").orElseThrow().value());
      d.dispose();
      // With the subscriber gone, the registry's default (commit) decides again.
      assertTrue(mesh.get("manager").propose(CURSOR, "t", Map.of("x", 5.0)).block().isCommitted());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("owner decisions: commit(modified) commits the owner's value")
  void ownerCommitsModifiedValue() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      mesh.get("client")
          .proposals(CURSOR)
          .subscribe(p -> p.commit(new Cursor("t", Math.min(p.proposed().x(), 10), p.proposed().y())));
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "t", new Cursor("t", 50, 2)).block();
      assertEquals(new Cursor("t", 10, 2), ((Outcome.Committed<Cursor>) o).snapshot().value());
    }
  }

  @Test
  @DisplayName("error: a proposal whose value does not decode is rejected with BAD_ENCODING")
  void badEncoding() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "t", Map.of("x", "not a number")).block();
      assertEquals(ErrorCode.BAD_ENCODING, ((Outcome.Rejected<Cursor>) o).code());
      Outcome<Cursor> unknown = mesh.get("manager").propose(CURSOR, "t", Map.of("z", 1)).block();
      assertEquals(ErrorCode.BAD_ENCODING, ((Outcome.Rejected<Cursor>) unknown).code());
    }
  }

  @Test
  @DisplayName("a proposal cannot create, and one about an unknown object is NOT_FOUND")
  void proposalCannotCreate() {
    try (TestMesh mesh = gateway()) {
      Outcome<Cursor> o = mesh.get("manager").propose(CURSOR, "nope", Map.of("x", 1.0)).block();
      assertEquals(ErrorCode.NOT_FOUND, ((Outcome.Rejected<Cursor>) o).code());
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      mesh.get("client").delete(CURSOR, "t").block();
      o = mesh.get("manager").propose(CURSOR, "t", Map.of("x", 1.0)).block();
      assertEquals(ErrorCode.NOT_FOUND, ((Outcome.Rejected<Cursor>) o).code());
    }
  }

  @Test
  @DisplayName("create: a non-owner asks the owner to create; a second create of the same key is refused")
  void create() {
    try (TestMesh mesh = gateway()) {
      OwnerId owner = OwnerId.of("owner-client");
      Outcome<Cursor> o = mesh.get("manager").create(CURSOR, owner, new Cursor("new", 3, 4)).block();
      Outcome.Committed<Cursor> c = assertInstanceOf(Outcome.Committed.class, o);
      assertEquals(owner, c.snapshot().owner());
      assertEquals(new Cursor("new", 3, 4), mesh.get("client").get(CURSOR, "new").orElseThrow().value());
      assertEquals(new Cursor("new", 3, 4), mesh.get("manager").get(CURSOR, "new").orElseThrow().value());
      Outcome<Cursor> again = mesh.get("server").create(CURSOR, owner, new Cursor("new", 0, 0)).block();
      assertEquals(ErrorCode.INVALID_OPERATION, ((Outcome.Rejected<Cursor>) again).code());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("create: the owner may assign the key")
  void createWithOwnerAssignedKey() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client")
          .proposals(CURSOR)
          .subscribe(p -> p.commit(new Cursor("assigned-1", p.proposed().x(), p.proposed().y())));
      Outcome<Cursor> o =
          mesh.get("manager").create(CURSOR, OwnerId.of("owner-client"), new Cursor("", 3, 4)).block();
      assertEquals("assigned-1", ((Outcome.Committed<Cursor>) o).snapshot().value().id());
      assertTrue(mesh.get("manager").get(CURSOR, "assigned-1").isPresent());
    }
  }

  @Test
  @DisplayName("non-owner delete: a request to the owner, which deletes and floods a tombstone")
  void nonOwnerDelete() {
    try (TestMesh mesh = gateway()) {
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      Outcome<Cursor> o = mesh.get("manager").delete(CURSOR, "t").block();
      Outcome.Committed<Cursor> c = assertInstanceOf(Outcome.Committed.class, o);
      assertTrue(c.snapshot().deleted());
      for (String n : List.of("client", "server", "manager")) {
        assertTrue(mesh.get(n).get(CURSOR, "t").orElseThrow().deleted(), n);
      }
      assertEquals(ErrorCode.NOT_FOUND,
          ((Outcome.Rejected<Cursor>) mesh.get("manager").delete(CURSOR, "t").block()).code());
    }
  }

  @Test
  @DisplayName("an undecided proposal is rejected with TIMEOUT after the decision timeout")
  void decisionTimeout() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner", b -> b.decisionTimeout(Duration.ofSeconds(3)));
      mesh.node("p");
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("t", 1, 1)).block();
      List<Proposal<Cursor>> ignored = new ArrayList<>();
      mesh.get("owner").proposals(CURSOR).subscribe(ignored::add);
      AtomicReference<Outcome<Cursor>> out = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(out::set);
      mesh.advance(Duration.ofSeconds(2));
      assertEquals(null, out.get());
      mesh.advance(Duration.ofSeconds(2));
      assertEquals(ErrorCode.TIMEOUT, ((Outcome.Rejected<Cursor>) out.get()).code());
      assertEquals(1, ignored.size());
      assertTrue(!ignored.get(0).commit(), "a late decision must not count");
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a proposal goes to a subscriber that has asked for one, not to a busy one before it")
  void aProposalGoesToADeciderThatAskedForIt() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p");
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("t", 1, 1)).block();
      List<Proposal<Cursor>> busy = new ArrayList<>();
      mesh.get("owner").proposals(CURSOR).subscribe(new reactor.core.publisher.BaseSubscriber<>() {
        @Override
        protected void hookOnSubscribe(org.reactivestreams.Subscription s) {
          s.request(1); // one, and no more
        }

        @Override
        protected void hookOnNext(Proposal<Cursor> p) {
          busy.add(p);
        }
      });
      List<Proposal<Cursor>> ready = new ArrayList<>();
      mesh.get("owner").proposals(CURSOR).subscribe(ready::add);
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(outcomes::add);
      mesh.get("p").propose(CURSOR, "t", Map.of("y", 3.0)).subscribe(outcomes::add);
      mesh.settle();
      assertEquals(1, busy.size());
      assertEquals(1, ready.size(), "the second went to the subscriber that asked");
      assertTrue(busy.get(0).commit());
      assertTrue(ready.get(0).commit());
      mesh.settle();
      assertEquals(1, outcomes.size());
      assertEquals(2, ready.size(), "the second was merged onto the first's commit and offered again");
      assertEquals(new Cursor("t", 2, 3), ready.get(1).proposed());
      assertTrue(ready.get(1).commit());
      mesh.settle();
      assertEquals(2, outcomes.size());
      assertTrue(outcomes.stream().allMatch(Outcome::isCommitted));
      assertNoPending(mesh);
    }
  }

  /**
   * Node "owner" (configured by {@code owner}) holding Cursor t, node "p" linked to it, and a
   * subscriber to the owner's proposals that has asked for none yet.
   */
  private static Decider ownerWithAnIdleDecider(TestMesh mesh, java.util.function.Consumer<EntanglementNode.Builder> owner) {
    mesh.node("owner", owner);
    mesh.node("p");
    mesh.connect("owner", "p");
    mesh.get("owner").publish(new Cursor("t", 1, 1)).block();
    Decider decider = new Decider();
    mesh.get("owner").proposals(CURSOR).subscribe(decider);
    return decider;
  }

  /** A proposals() subscriber that asks for nothing until the test calls {@code request}. */
  private static final class Decider extends reactor.core.publisher.BaseSubscriber<Proposal<Cursor>> {
    final List<Proposal<Cursor>> handed = new ArrayList<>();

    @Override
    protected void hookOnSubscribe(org.reactivestreams.Subscription s) {}

    @Override
    protected void hookOnNext(Proposal<Cursor> p) {
      handed.add(p);
    }
  }

  @Test
  @DisplayName("a partial proposal committed after the object was committed again is offered again, merged onto that commit; commit(value) is taken as given")
  void aPartialProposalDecidedLateKeepsTheCommitsMadeMeanwhile() {
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> {});
      AtomicReference<Outcome<Cursor>> first = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(first::set);
      mesh.settle();
      mesh.get("owner").publish(new Cursor("t", 1, 7)).block();
      decider.request(1);
      mesh.settle();
      assertEquals(new Cursor("t", 2, 1), decider.handed.get(0).proposed(), "merged at its arrival");
      assertTrue(decider.handed.get(0).commit());
      mesh.settle();
      assertEquals(null, first.get(), "offered again, not committed");
      assertEquals(new Cursor("t", 1, 7), mesh.get("owner").get(CURSOR, "t").orElseThrow().value());
      decider.request(1);
      mesh.settle();
      Proposal<Cursor> again = decider.handed.get(1);
      assertEquals(new Cursor("t", 1, 7), again.current().value());
      assertEquals(new Cursor("t", 2, 7), again.proposed());
      assertTrue(again.commit());
      mesh.settle();
      Outcome.Committed<Cursor> c = assertInstanceOf(Outcome.Committed.class, first.get());
      assertEquals(new Cursor("t", 2, 7), c.snapshot().value());
      assertEquals(new Cursor("t", 2, 7), mesh.get("owner").get(CURSOR, "t").orElseThrow().value());
      assertEquals(new Cursor("t", 2, 7), mesh.get("p").get(CURSOR, "t").orElseThrow().value());

      AtomicReference<Outcome<Cursor>> second = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 3.0)).subscribe(second::set);
      decider.request(1);
      mesh.settle();
      mesh.get("owner").publish(new Cursor("t", 2, 8)).block();
      assertTrue(decider.handed.get(2).commit(decider.handed.get(2).proposed()));
      mesh.settle();
      assertEquals(new Cursor("t", 3, 7), mesh.get("owner").get(CURSOR, "t").orElseThrow().value(),
          "the owner's own value, as given");
      assertTrue(second.get().isCommitted());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("the default decision takes effect at once: a publish queued between a proposal and the next does not make it stale, and one proposer's changes keep their order")
  void defaultDecisionsKeepAProposersOrderAcrossAPublish() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p");
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("t", 0, 0)).block();
      mesh.get("owner").publish(new Cursor("trigger", 0, 0)).block();
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      java.util.concurrent.atomic.AtomicBoolean queued = new java.util.concurrent.atomic.AtomicBoolean();
      // Runs on the owner's engine: what it submits is queued there, in this order.
      mesh.get("owner").watch(CURSOR, "trigger").subscribe(s -> {
        if (s.value().x() == 1 && queued.compareAndSet(false, true)) {
          mesh.get("p").propose(CURSOR, "t", Map.of("x", 1.0)).subscribe(outcomes::add);
          mesh.get("owner").publish(new Cursor("t", 0, 5)).subscribe();
          mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(outcomes::add);
        }
      });
      mesh.get("owner").publish(new Cursor("trigger", 1, 0)).block();
      mesh.settle();
      assertTrue(queued.get());
      assertEquals(new Cursor("t", 2, 5), mesh.get("owner").get(CURSOR, "t").orElseThrow().value());
      assertEquals(List.of(1.0, 2.0),
          outcomes.stream().map(o -> ((Outcome.Committed<Cursor>) o).snapshot().value().x()).toList(),
          "answered in the order proposed");
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a default decision takes effect after it returns: no engine work, watcher or other default decision runs inside the application's call")
  void aDefaultDecisionTakesEffectAfterItReturns() {
    java.util.concurrent.atomic.AtomicInteger depth = new java.util.concurrent.atomic.AtomicInteger();
    java.util.concurrent.atomic.AtomicInteger deepest = new java.util.concurrent.atomic.AtomicInteger();
    Registry counting = Registry.builder("counting").type(CURSOR).defaultDecision(p -> {
      deepest.accumulateAndGet(depth.incrementAndGet(), Math::max);
      p.commit();
      depth.decrementAndGet();
    }).build();
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner", counting, b -> {});
      mesh.node("p", counting, b -> {});
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("t", 0, 0)).block();
      List<Integer> depthsSeen = new ArrayList<>();
      mesh.get("owner").watch(CURSOR, "t").subscribe(s -> depthsSeen.add(depth.get()));
      Decider decider = new Decider();
      mesh.get("owner").proposals(CURSOR).subscribe(decider);
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 1.0)).subscribe(outcomes::add);
      mesh.get("p").propose(CURSOR, "t", Map.of("y", 2.0)).subscribe(outcomes::add);
      mesh.settle();
      decider.cancel(); // both get the default decision; the second, made stale by the first, again
      mesh.settle();
      assertEquals(2, outcomes.size());
      assertTrue(outcomes.stream().allMatch(Outcome::isCommitted), outcomes.toString());
      assertEquals(new Cursor("t", 1, 2), mesh.get("owner").get(CURSOR, "t").orElseThrow().value());
      assertEquals(1, deepest.get(), "a default decision ran inside another");
      assertTrue(depthsSeen.stream().allMatch(d -> d == 0), "watchers notified inside a decision: " + depthsSeen);
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a proposal offered again keeps its first decision deadline, also behind a later proposal's")
  void aProposalOfferedAgainKeepsItsDeadline() {
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> b.decisionTimeout(Duration.ofSeconds(3)));
      mesh.get("owner").publish(new Cursor("u", 1, 1)).block();
      AtomicReference<Outcome<Cursor>> first = new AtomicReference<>();
      AtomicReference<Outcome<Cursor>> second = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(first::set); // due at 3 s
      mesh.advance(Duration.ofSeconds(1));
      mesh.get("p").propose(CURSOR, "u", Map.of("x", 2.0)).subscribe(second::set); // due at 4 s
      mesh.get("owner").publish(new Cursor("t", 1, 10)).block();
      decider.request(1);
      mesh.settle();
      assertTrue(decider.handed.get(0).commit()); // stale: offered again, after the second
      mesh.advance(Duration.ofMillis(2500));
      assertEquals(ErrorCode.TIMEOUT, assertInstanceOf(Outcome.Rejected.class, first.get()).code(),
          "timed out by its first deadline");
      assertEquals(null, second.get());
      mesh.advance(Duration.ofSeconds(1));
      assertEquals(ErrorCode.TIMEOUT, assertInstanceOf(Outcome.Rejected.class, second.get()).code());
      assertEquals(List.of(), decider.handed.subList(1, decider.handed.size()), "never handed again");
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a partial proposal offered again, merged onto a newer state, is refused if the policy refuses the result")
  void aProposalMergedAgainIsCheckedByThePolicyAgain() {
    Policy noHighY = new Policy() {
      @Override
      public boolean shouldListenConstructed(PeerId sender, Operation op, Snapshot<?> s) {
        return op != Operation.PROPOSE || !(s.value() instanceof Cursor c && c.y() >= 5);
      }
    };
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> b.peerPolicy(noHighY));
      AtomicReference<Outcome<Cursor>> out = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(out::set);
      decider.request(1);
      mesh.settle();
      mesh.get("owner").publish(new Cursor("t", 1, 7)).block();
      assertTrue(decider.handed.get(0).commit());
      mesh.settle();
      assertEquals(ErrorCode.UNAUTHORIZED, assertInstanceOf(Outcome.Rejected.class, out.get()).code());
      assertEquals(new Cursor("t", 1, 7), mesh.get("owner").get(CURSOR, "t").orElseThrow().value());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a subscriber that has not asked for a proposal holds none: one that timed out meanwhile is never handed to it")
  void aDeciderWithoutDemandHoldsNoProposal() {
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> b.decisionTimeout(Duration.ofSeconds(3)));
      AtomicReference<Outcome<Cursor>> first = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(first::set);
      mesh.advance(Duration.ofSeconds(4));
      assertEquals(ErrorCode.TIMEOUT, ((Outcome.Rejected<Cursor>) first.get()).code());
      decider.request(1);
      mesh.settle();
      assertEquals(List.of(), decider.handed, "the timed-out proposal is not handed out");
      AtomicReference<Outcome<Cursor>> second = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 3.0)).subscribe(second::set);
      mesh.settle();
      assertEquals(1, decider.handed.size());
      assertEquals(3.0, decider.handed.get(0).proposed().x());
      assertTrue(decider.handed.get(0).commit());
      mesh.settle();
      assertTrue(second.get().isCommitted());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("proposals that wait for a subscriber to ask are handed to it in arrival order as it asks")
  void waitingProposalsAreHandedInOrder() {
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> {});
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      for (double x = 2; x <= 4; x++) {
        mesh.get("p").propose(CURSOR, "t", Map.of("x", x)).subscribe(outcomes::add);
      }
      mesh.settle();
      assertEquals(List.of(), decider.handed);
      decider.request(2);
      mesh.settle();
      assertEquals(List.of(2.0, 3.0), decider.handed.stream().map(p -> p.proposed().x()).toList());
      decider.request(1);
      mesh.settle();
      assertEquals(List.of(2.0, 3.0, 4.0), decider.handed.stream().map(p -> p.proposed().x()).toList());
      decider.handed.forEach(p -> assertTrue(p.reject(ErrorCode.INVALID_OPERATION, "no")));
      mesh.settle();
      assertEquals(3, outcomes.size());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("when the last subscriber leaves, the proposals that waited for it get the default decision, as later ones do")
  void waitingProposalsGetTheDefaultDecisionWhenTheLastDeciderLeaves() {
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> {});
      AtomicReference<Outcome<Cursor>> out = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(out::set);
      mesh.settle();
      assertEquals(null, out.get(), "waiting for the subscriber");
      decider.cancel();
      mesh.settle();
      assertTrue(out.get().isCommitted(), "the default decision: " + out.get());
      assertEquals(List.of(), decider.handed);
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a proposal made after the last subscriber cancelled, before the engine saw it leave, is decided after those that waited")
  void proposalsOfAnObjectAreDecidedInOrderWhenTheLastDeciderLeaves() {
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> {});
      EntanglementNode owner = mesh.get("owner");
      AtomicReference<Outcome<Cursor>> older = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(older::set);
      mesh.settle();
      AtomicReference<Outcome<Cursor>> newer = new AtomicReference<>();
      // On the engine's thread, so that both the new proposal and the subscriber's leaving wait
      // for the engine, in that order: the new one is handled first.
      owner.watch(CURSOR, "u").take(1).subscribe(u -> {
        owner.propose(CURSOR, "t", Map.of("x", 3.0)).subscribe(newer::set);
        decider.cancel();
      });
      owner.publish(new Cursor("u", 0, 0)).block();
      mesh.settle();
      assertTrue(older.get().isCommitted(), "default decision: " + older.get());
      assertTrue(newer.get().isCommitted(), "default decision: " + newer.get());
      assertEquals(3.0, owner.get(CURSOR, "t").orElseThrow().value().x(), "the newer proposal is the object's state");
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a node closed while a proposal was on its way rejects it, and nothing stays pending")
  void aProposalReadAfterCloseIsRejected() {
    try (TestMesh mesh = new TestMesh()) {
      Decider decider = ownerWithAnIdleDecider(mesh, b -> {});
      decider.request(1);
      EntanglementNode owner = mesh.get("owner");
      AtomicReference<Object> out = new AtomicReference<>();
      // On the owner's engine thread: the close waits for it, then the PROPOSE read meanwhile.
      owner.watch(CURSOR, "u").take(1).subscribe(u -> {
        owner.close().subscribe();
        mesh.get("p").propose(CURSOR, "t", Map.of("x", 3.0)).subscribe(out::set, out::set);
      });
      owner.publish(new Cursor("u", 0, 0)).block();
      mesh.settle();
      assertNotNull(out.get(), "the proposer is answered");
      assertEquals(List.of(), decider.handed);
      assertEquals(0, owner.stats().pendingDecisions(), "nothing left undecided");
    }
  }

  @Test
  @DisplayName("closing the owner's node rejects the proposals it has not decided, local and remote; a later decision does not count")
  void closeRejectsUndecidedProposals() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p");
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("t", 1, 1)).block();
      List<Proposal<Cursor>> undecided = new ArrayList<>();
      mesh.get("owner").proposals(CURSOR).subscribe(undecided::add);
      AtomicReference<Outcome<Cursor>> local = new AtomicReference<>();
      AtomicReference<Object> remote = new AtomicReference<>();
      mesh.get("owner").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(local::set);
      mesh.get("p").propose(CURSOR, "t", Map.of("y", 3.0)).subscribe(remote::set, remote::set);
      mesh.settle();
      assertEquals(2, undecided.size());
      mesh.get("owner").close().block();
      mesh.settle();
      assertEquals(ErrorCode.NOT_CONNECTED, ((Outcome.Rejected<Cursor>) local.get()).code());
      assertNotNull(remote.get(), "the remote proposer is answered too");
      assertTrue(undecided.stream().noneMatch(Proposal::commit), "a late decision must not count");
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a proposal or create whose value is not an object fails at once and leaves nothing pending")
  void aValueThatIsNotAnObjectLeavesNothingPending() {
    SyncType<String> name = SyncType.of("Name", String.class, s -> s);
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", Registry.builder("names").type(name).build(), b -> {});
      a.publish(name, "k").block();
      assertThrows(IllegalArgumentException.class, () -> a.propose(name, "k", "other").block());
      assertThrows(IllegalArgumentException.class, () -> a.create(name, a.owner(), "new").block());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("no route to the owner fails with NOT_CONNECTED; a lost link mid-flight ends as NO_RESPONSE")
  void noRouteAndNoResponse() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("client");
      mesh.node("server");
      mesh.node("manager");
      mesh.connect("client", "server",
          LocalTransport.builder().scheduler(mesh.clock).latency(Duration.ofSeconds(1)).build());
      mesh.connect("server", "manager");
      mesh.advance(Duration.ofSeconds(5));
      mesh.get("client").publish(new Cursor("t", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(5));
      assertTrue(mesh.get("manager").get(CURSOR, "t").isPresent());
      StepVerifier.create(mesh.get("manager").propose(CURSOR, "t", Map.of("x", 2.0)))
          .then(() -> mesh.advance(Duration.ofMillis(500)))
          .then(() -> mesh.disconnect("client", "server")) // the relay has sent it; the answer is lost
          .expectErrorSatisfies(e -> assertEquals(ErrorCode.NO_RESPONSE, ((EntanglementException) e).code()))
          .verify(Duration.ofSeconds(5));
      // The relay no longer announces the owner: there is no route at all.
      StepVerifier.create(mesh.get("manager").propose(CURSOR, "t", Map.of("x", 3.0)))
          .expectErrorSatisfies(e -> assertEquals(ErrorCode.NOT_CONNECTED, ((EntanglementException) e).code()))
          .verify(Duration.ofSeconds(5));
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("a request that gets no answer fails with TIMEOUT and leaves nothing pending")
  void requestTimeout() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p", b -> b.requestTimeout(Duration.ofSeconds(2)));
      mesh.connect("owner", "p", LocalTransport.builder().scheduler(mesh.clock).latency(Duration.ofSeconds(3)).build());
      mesh.advance(Duration.ofSeconds(10));
      mesh.get("owner").publish(new Cursor("t", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(10));
      AtomicReference<Throwable> error = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe(o -> {}, error::set);
      mesh.advance(Duration.ofSeconds(2));
      assertEquals(ErrorCode.TIMEOUT, ((EntanglementException) error.get()).code());
      mesh.advance(Duration.ofSeconds(10)); // the late answer arrives and is dropped
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("requests that end out of order: the open one still times out, the many answered behind it end once")
  void requestsEndingOutOfOrder() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner", b -> b.decisionTimeout(Duration.ofSeconds(60)));
      mesh.node("p", b -> b.requestTimeout(Duration.ofSeconds(5)));
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("held", 0, 0)).block();
      mesh.get("owner").publish(new Cursor("t", 0, 0)).block();
      List<Proposal<Cursor>> held = new ArrayList<>();
      mesh.get("owner").proposals(CURSOR).subscribe(p -> {
        if (p.key().key().equals("held")) {
          held.add(p); // left undecided: the proposer's request stays open
        } else {
          p.commit();
        }
      });
      AtomicReference<Throwable> heldError = new AtomicReference<>();
      mesh.get("p").propose(CURSOR, "held", Map.of("x", 1.0)).subscribe(o -> {}, heldError::set);
      // Far more answered requests behind the open one than it keeps ended ones (see Engine).
      int answered = 300;
      for (int i = 1; i <= answered; i++) {
        Outcome<Cursor> o = mesh.get("p").propose(CURSOR, "t", Map.of("x", (double) i)).block();
        assertTrue(o.isCommitted(), "proposal " + i + ": " + o);
        mesh.advance(Duration.ofMillis(10));
      }
      assertEquals(1, mesh.get("p").statsConsistent().block().pendingRequests());
      assertTrue(mesh.get("p").engine.requestDeadlinesHeld() <= 2 + Engine.ENDED_REQUESTS_KEPT,
          "deadlines held: " + mesh.get("p").engine.requestDeadlinesHeld());
      assertEquals(null, heldError.get());
      mesh.advance(Duration.ofSeconds(5));
      assertEquals(ErrorCode.TIMEOUT, ((EntanglementException) heldError.get()).code());
      assertEquals(0, mesh.get("p").statsConsistent().block().pendingRequests());
      assertEquals(0, mesh.get("p").engine.requestDeadlinesHeld());
      assertEquals(new Cursor("t", answered, 0), mesh.get("p").get(CURSOR, "t").orElseThrow().value());
      assertEquals(1, held.size());
      assertTrue(held.get(0).reject(ErrorCode.INVALID_OPERATION, "late"), "the owner still decides its own");
    }
  }

  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8})
  @DisplayName("a partial proposal's attribute tree is the one the mapper builds, whatever the values")
  void partialAttributeTreeMatchesTheMapper(long seed) {
    try (TestMesh mesh = new TestMesh()) {
      Engine engine = mesh.node("a").engine;
      java.util.Random random = new java.util.Random(seed);
      List<java.util.function.Supplier<Object>> values = List.of(
          () -> null,
          () -> "text-" + random.nextInt(1000),
          () -> "",
          random::nextInt,
          () -> Integer.MIN_VALUE,
          random::nextLong,
          () -> (long) random.nextInt(100),
          random::nextDouble,
          () -> Double.NaN,
          () -> -0.0,
          random::nextBoolean,
          // not a direct node: the whole map goes through the mapper
          random::nextFloat,
          () -> (short) random.nextInt(100),
          () -> java.math.BigDecimal.valueOf(random.nextInt(), 3),
          () -> List.of(random.nextInt(), "x"),
          () -> Map.of("nested", random.nextInt()));
      int direct = 0;
      for (int round = 0; round < 50; round++) {
        Map<Object, Object> attributes = new java.util.LinkedHashMap<>();
        int size = random.nextInt(6);
        boolean onlyDirect = true;
        for (int i = 0; i < size; i++) {
          int v = random.nextInt(values.size());
          onlyDirect &= v < 11; // the first eleven suppliers give the classes made nodes directly
          // now and then a name an unchecked map may hold: not text, or null
          Object name = random.nextInt(20) == 0 ? (Object) random.nextInt(3) : "k" + random.nextInt(8);
          attributes.put(name, values.get(v).get());
        }
        if (random.nextInt(25) == 0) {
          attributes.put(null, 1);
        }
        direct += onlyDirect && attributes.keySet().stream().allMatch(String.class::isInstance) ? 1 : 0;
        @SuppressWarnings("unchecked")
        Map<String, ?> unchecked = (Map<String, ?>) (Map<?, ?>) attributes;
        tools.jackson.databind.JsonNode expected;
        try {
          expected = engine.json.valueToTree(new java.util.LinkedHashMap<>(attributes));
        } catch (RuntimeException e) {
          assertEquals(e.getClass(), assertThrows(RuntimeException.class, () -> engine.attributesTree(unchecked)).getClass(),
              "attributes " + attributes);
          continue;
        }
        tools.jackson.databind.node.ObjectNode actual = engine.attributesTree(unchecked);
        assertEquals(expected, actual, "attributes " + attributes);
        var names = actual.propertyNames().iterator();
        for (String name : expected.propertyNames()) {
          assertEquals(name, names.next(), "order of " + attributes);
          assertEquals(expected.get(name).getClass(), actual.get(name).getClass(), name + " of " + attributes);
        }
      }
      assertTrue(direct >= 10, "maps made into nodes directly: " + direct);
    }
  }

  @Test
  @DisplayName("failover: when the route to the owner drops, proposals go through another neighbour")
  void failover() {
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("a", "b", "c", "d")) {
        mesh.node(n);
      }
      mesh.connect("a", "b");
      mesh.connect("a", "c");
      mesh.connect("b", "d");
      mesh.connect("c", "d");
      mesh.get("d").publish(new Cursor("t", 0, 0)).block();
      assertTrue(mesh.get("a").propose(CURSOR, "t", Map.of("x", 1.0)).block().isCommitted());
      mesh.disconnect("a", "b");
      assertTrue(mesh.get("a").propose(CURSOR, "t", Map.of("x", 2.0)).block().isCommitted());
      mesh.disconnect("c", "d");
      mesh.connect("a", "b");
      assertTrue(mesh.get("a").propose(CURSOR, "t", Map.of("x", 3.0)).block().isCommitted());
      assertEquals(3.0, mesh.get("a").get(CURSOR, "t").orElseThrow().value().x());
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("cancelling a proposal's subscription releases its pending request")
  void cancellationReleasesRequest() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner");
      mesh.node("p");
      mesh.connect("owner", "p", LocalTransport.builder().scheduler(mesh.clock).latency(Duration.ofSeconds(1)).build());
      mesh.advance(Duration.ofSeconds(5));
      mesh.get("owner").publish(new Cursor("t", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(5));
      Disposable d = mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).subscribe();
      assertEquals(1, mesh.get("p").statsConsistent().block().pendingRequests());
      d.dispose();
      assertEquals(0, mesh.get("p").statsConsistent().block().pendingRequests());
      mesh.advance(Duration.ofSeconds(5));
      assertNoPending(mesh);
    }
  }

  @Test
  @DisplayName("the registry's default decision applies when no one subscribes to proposals")
  void registryDefaultDecision() {
    Registry rejectAll =
        Registry.builder("strict")
            .type(CURSOR)
            .defaultDecision(p -> p.reject(ErrorCode.UNAUTHORIZED, "read-only"))
            .build();
    try (TestMesh mesh = new TestMesh()) {
      mesh.nodes.put("owner", EntanglementNode.builder().id("owner").registry(rejectAll).scheduler(mesh.clock).build());
      mesh.nodes.put("p", EntanglementNode.builder().id("p").registry(rejectAll).scheduler(mesh.clock).build());
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("t", 1, 1)).block();
      Outcome<Cursor> o = mesh.get("p").propose(CURSOR, "t", Map.of("x", 2.0)).block();
      assertEquals(new Outcome.Rejected<Cursor>(ErrorCode.UNAUTHORIZED, "read-only"), o);
    }
  }
}
