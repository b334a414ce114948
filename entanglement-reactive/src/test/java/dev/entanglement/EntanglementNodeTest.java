package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import dev.entanglement.store.InMemoryStateStore;
import dev.entanglement.store.StateStore;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

class EntanglementNodeTest {

  @Test
  void publish_replicatesToNeighbour() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementNode b = mesh.node("b");
      mesh.connect("a", "b");
      a.publish(new Cursor("c1", 1, 2)).block();
      mesh.settle();
      Snapshot<Cursor> s = b.get(CURSOR, "c1").orElseThrow();
      assertEquals(new Cursor("c1", 1, 2), s.value());
      assertEquals(a.owner(), s.owner());
      assertTrue(s.version().serial() > 0);
    }
  }

  @Test
  void defaultOwnerFollowsTheOwnersAddedAndRemoved() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      OwnerId first = a.owner();
      OwnerId second = OwnerId.of("owner-second");
      a.addOwner(second).block();
      assertEquals(first, a.owner());
      a.removeOwner(first).block();
      assertEquals(second, a.owner());
      assertEquals(second, a.publish(new Cursor("c1", 1, 2)).block().owner());
      a.removeOwner(second).block();
      IllegalStateException e = assertThrows(IllegalStateException.class, a::owner);
      assertTrue(e.getMessage().contains("no local owner"), e.getMessage());
    }
  }

  @Test
  void publishAllCommitsEveryValueInOrder_andTheNeighbourGetsTheLatest() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementNode b = mesh.node("b");
      mesh.connect("a", "b");
      // 500 objects, each updated twice in a row: the second value must win everywhere.
      Flux<Cursor> values =
          Flux.range(0, 1_000).map(i -> new Cursor("c" + (i / 2), i, i % 2));
      StepVerifier.create(a.publishAll(CURSOR, values)).verifyComplete();
      mesh.settle();
      for (int k = 0; k < 500; k++) {
        Cursor latest = new Cursor("c" + k, 2 * k + 1, 1);
        assertEquals(latest, a.get(CURSOR, "c" + k).orElseThrow().value());
        assertEquals(latest, b.get(CURSOR, "c" + k).orElseThrow().value());
      }
    }
  }

  @Test
  void publishAllPullsAtMostTheWindowAheadOfWhatWasCommitted() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      AtomicLong committed = new AtomicLong();
      a.watchAll(CURSOR).subscribe(s -> committed.incrementAndGet());
      AtomicLong requested = new AtomicLong();
      AtomicLong maxAhead = new AtomicLong();
      Flux<Cursor> values =
          Flux.range(0, 10_000)
              .doOnRequest(n -> maxAhead.accumulateAndGet(requested.addAndGet(n) - committed.get(), Math::max))
              .map(i -> new Cursor("c" + i, i, 0));
      StepVerifier.create(a.publishAll(CURSOR, values)).verifyComplete();
      assertEquals(10_000, committed.get());
      assertTrue(maxAhead.get() <= Engine.PUBLISH_WINDOW, "requested ahead: " + maxAhead.get());
      assertTrue(maxAhead.get() > 0);
    }
  }

  @Test
  void publishAllFailsOnAValueThatCannotBePublished_andCancelsTheSource() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementNode b = mesh.node("b");
      mesh.connect("a", "b");
      b.publish(new Cursor("theirs", 0, 0)).block();
      mesh.settle();
      AtomicBoolean cancelled = new AtomicBoolean();
      Flux<Cursor> values =
          Flux.just(new Cursor("mine", 1, 1), new Cursor("theirs", 2, 2), new Cursor("after", 3, 3))
              .concatWith(Flux.never())
              .doOnCancel(() -> cancelled.set(true));
      StepVerifier.create(a.publishAll(CURSOR, values))
          .expectErrorSatisfies(e -> assertEquals(
              ErrorCode.BAD_OWNER, ((EntanglementException) e).code()))
          .verify();
      assertTrue(cancelled.get());
      assertTrue(a.get(CURSOR, "mine").isPresent());
      assertTrue(a.get(CURSOR, "after").isEmpty());
      assertEquals(new Cursor("theirs", 0, 0), a.get(CURSOR, "theirs").orElseThrow().value());
    }
  }

  @Test
  void publishAllEndsWithTheSourcesError_afterWhatCameBefore() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      Flux<Cursor> values =
          Flux.just(new Cursor("c1", 1, 1)).concatWith(Flux.error(new IllegalStateException("boom")));
      StepVerifier.create(a.publishAll(CURSOR, values))
          .expectErrorMessage("boom")
          .verify();
      assertTrue(a.get(CURSOR, "c1").isPresent());
    }
  }

  @Test
  void cancellingPublishAllStopsPullingTheSource() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      AtomicBoolean cancelled = new AtomicBoolean();
      AtomicLong requested = new AtomicLong();
      Flux<Cursor> endless =
          Flux.<Cursor>never().doOnRequest(requested::addAndGet).doOnCancel(() -> cancelled.set(true));
      Disposable d = a.publishAll(CURSOR, endless).subscribe();
      assertEquals(Engine.PUBLISH_WINDOW, requested.get());
      d.dispose();
      assertTrue(cancelled.get());
    }
  }

  @Test
  void withAStorePublishAllCompletesOnlyOnceEveryValueIsDurable() {
    InMemoryStateStore durable = new InMemoryStateStore();
    Sinks.Empty<Void> gate = Sinks.empty();
    StateStore gated = new StateStore() {
      @Override
      public Mono<StoredData> load() {
        return durable.load();
      }

      @Override
      public Mono<Void> write(WriteBatch batch) {
        return gate.asMono().then(durable.write(batch));
      }

      @Override
      public Mono<Void> close() {
        return durable.close();
      }
    };
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(gated));
      a.start().block();
      AtomicBoolean completed = new AtomicBoolean();
      AtomicLong requested = new AtomicLong();
      a.publishAll(CURSOR, Flux.range(0, 600).doOnRequest(requested::addAndGet).map(i -> new Cursor("c" + i, i, 0)))
          .subscribe(null, e -> {}, () -> completed.set(true));
      mesh.settle();
      assertTrue(!completed.get(), "completed before the store made the values durable");
      // The window waits for durability: a slow store does not let the source run ahead.
      assertEquals(Engine.PUBLISH_WINDOW, requested.get());
      gate.tryEmitEmpty();
      mesh.settle();
      assertTrue(completed.get());
      assertEquals(600, durable.load().block().objects().size());
    }
  }

  @Test
  void publishAllFromAnotherThread_onTheNodesOwnScheduler_commitsEverythingWithinTheWindow() {
    EntanglementNode a = EntanglementNode.builder().id("a").registry(TestMesh.registry()).build();
    try {
      AtomicLong committed = new AtomicLong();
      a.watchAll(CURSOR).subscribe(s -> committed.incrementAndGet());
      AtomicLong requested = new AtomicLong();
      AtomicLong maxAhead = new AtomicLong();
      Flux<Cursor> values =
          Flux.range(0, 20_000)
              .publishOn(Schedulers.boundedElastic(), 32)
              .map(i -> new Cursor("c" + (i % 5_000), i, 0))
              .doOnRequest(n -> maxAhead.accumulateAndGet(requested.addAndGet(n) - committed.get(), Math::max));
      StepVerifier.create(a.publishAll(CURSOR, values)).expectComplete().verify(java.time.Duration.ofSeconds(30));
      for (int k = 0; k < 5_000; k++) {
        assertEquals(15_000 + k, a.get(CURSOR, "c" + k).orElseThrow().value().x());
      }
      // Requests are made on the engine after the commits they follow: the watcher has counted them.
      assertTrue(maxAhead.get() <= Engine.PUBLISH_WINDOW, "requested ahead: " + maxAhead.get());
    } finally {
      a.close().block();
    }
  }

  @Test
  void publishAllFailsWithNotConnectedOnceTheNodeIsClosed() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      Sinks.Many<Cursor> source = Sinks.many().unicast().onBackpressureBuffer();
      AtomicBoolean cancelled = new AtomicBoolean();
      StepVerifier.create(a.publishAll(CURSOR, source.asFlux().doOnCancel(() -> cancelled.set(true))))
          .then(() -> source.tryEmitNext(new Cursor("c1", 1, 1)))
          .then(() -> a.close().block())
          .then(() -> source.tryEmitNext(new Cursor("c2", 2, 2)))
          .expectErrorSatisfies(e -> assertEquals(
              ErrorCode.NOT_CONNECTED, ((EntanglementException) e).code()))
          .verify(java.time.Duration.ofSeconds(5));
      assertTrue(cancelled.get());
      StepVerifier.create(a.publishAll(CURSOR, Flux.just(new Cursor("c3", 3, 3))))
          .expectErrorSatisfies(e -> assertEquals(
              ErrorCode.NOT_CONNECTED, ((EntanglementException) e).code()))
          .verify(java.time.Duration.ofSeconds(5));
    }
  }
}
