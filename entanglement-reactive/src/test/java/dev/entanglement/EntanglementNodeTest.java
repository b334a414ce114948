package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.internal.SerialExecutor;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
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

  record Faulty(String id) {}

  @Test
  @org.junit.jupiter.api.DisplayName("an Error thrown while a publish runs reaches the publisher's Mono, and counts as a failed task")
  void anErrorInAPublishReachesItsMono() {
    SyncType<Faulty> faulty = SyncType.of("Faulty", Faulty.class, f -> {
      throw new AssertionError("key function broke");
    });
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", Registry.builder("faulty").type(faulty).build(), b -> {});
      StepVerifier.create(a.publish(faulty, new Faulty("x")))
          .expectErrorMatches(e -> e instanceof AssertionError && e.getMessage().equals("key function broke"))
          .verify(java.time.Duration.ofSeconds(5));
      assertEquals(1, a.stats().tasksFailed());
    }
  }

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
  void aSynchronousSourceHoldsTheSubscribingThreadForAboutABatch_theRestRunsOnTheScheduler() {
    reactor.core.scheduler.Scheduler engineThread = Schedulers.newSingle("engine-continuation");
    EntanglementNode a =
        EntanglementNode.builder().id("a").registry(TestMesh.registry()).scheduler(engineThread).build();
    try {
      Thread caller = Thread.currentThread();
      AtomicLong onCaller = new AtomicLong();
      AtomicLong committed = new AtomicLong();
      a.watchAll(CURSOR).subscribe(s -> {
        committed.incrementAndGet();
        if (Thread.currentThread() == caller) {
          onCaller.incrementAndGet();
        }
      });
      // Idle: this thread runs the engine's turn, which pulls the source and publishes what it
      // hands over at once; each value counts as a task against the turn's batch.
      StepVerifier.create(a.publishAll(CURSOR, Flux.range(0, 10_000).map(i -> new Cursor("c" + i, i, 0))))
          .expectComplete()
          .verify(java.time.Duration.ofSeconds(30));
      assertEquals(10_000, committed.get());
      assertTrue(onCaller.get() > 0);
      assertTrue(onCaller.get() <= SerialExecutor.DEFAULT_BATCH + Engine.PUBLISH_WINDOW,
          "published on the subscribing thread: " + onCaller.get());
    } finally {
      a.close().block();
      engineThread.dispose();
    }
  }

  @Test
  void valuesPulledOnTheEngineFollowTheSourcesValuesStillQueued() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      Sinks.Many<Cursor> values = Sinks.many().unicast().onBackpressureBuffer();
      AtomicBoolean completed = new AtomicBoolean();
      a.publishAll(CURSOR, values.asFlux()).subscribe(null, e -> {}, () -> completed.set(true));
      int n = Engine.PUBLISH_WINDOW + 44;
      whileBusy(a, () -> {
        // Handed over while the engine is busy: the window's worth is queued, one task each, and
        // the rest waits in the source until the engine requests more, having committed half the
        // window. The source then hands it over on the engine's thread, while the other half is
        // still queued: it must follow that half, not overtake it.
        for (int i = 1; i <= n; i++) {
          values.tryEmitNext(new Cursor("c1", i, i));
        }
        values.tryEmitComplete();
      });
      mesh.settle();
      assertTrue(completed.get());
      assertEquals(new Cursor("c1", n, n), a.get(CURSOR, "c1").orElseThrow().value());
      assertEquals(n, a.get(CURSOR, "c1").orElseThrow().version().serial());
    }
  }

  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233})
  void everyValueOfASourceIsCommittedOnceInItsOrder_howeverItIsHandedOver(long seed) {
    java.util.Random random = new java.util.Random(seed);
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      Sinks.Many<Cursor> values = Sinks.many().unicast().onBackpressureBuffer();
      AtomicBoolean completed = new AtomicBoolean();
      a.publishAll(CURSOR, values.asFlux()).subscribe(null, e -> {}, () -> completed.set(true));
      // The position (from 1) of each key's last value: its version's serial, if every value
      // before it was committed once, in the source's order.
      java.util.Map<String, Integer> last = new java.util.HashMap<>();
      int[] emitted = {0};
      Runnable emitSome = () -> {
        for (int i = random.nextInt(300); i > 0; i--) {
          String key = "k" + random.nextInt(5);
          int n = ++emitted[0];
          last.put(key, n);
          values.tryEmitNext(new Cursor(key, n, n));
        }
      };
      for (int step = random.nextInt(20) + 10; step > 0; step--) {
        switch (random.nextInt(3)) {
          case 0 -> emitSome.run(); // on an idle engine: run at once, or buffered past the window
          case 1 -> whileBusy(a, emitSome); // queued behind the busy engine, or buffered
          default -> mesh.settle(); // pulls on the engine what the source buffered
        }
      }
      values.tryEmitComplete();
      mesh.settle();
      assertTrue(completed.get());
      last.forEach((key, n) -> {
        Snapshot<Cursor> s = a.get(CURSOR, key).orElseThrow();
        assertEquals(new Cursor(key, n, n), s.value(), key);
        assertEquals((long) n, s.version().serial(), key);
      });
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

  // ------------------------------------------------------------------ publishes merged while they wait

  /** How a publish whose value never became a version of its own ended. */
  private static final String EMPTY = "empty";

  /** Subscribes to {@code publish}; records the value it took effect as, EMPTY, or the error. */
  private static void record(Mono<Snapshot<Cursor>> publish, List<Object> endings) {
    publish.map(s -> (Object) s.value()).defaultIfEmpty(EMPTY).subscribe(endings::add, endings::add);
  }

  /**
   * Runs {@code operations} as a task of {@code node}'s engine, on this thread: the node is busy
   * meanwhile, as it is behind a backlog, and what they submit runs after them, in order.
   */
  private static void whileBusy(EntanglementNode node, Runnable operations) {
    node.engine.serial.execute(operations);
  }

  @Test
  void publishesOfAnObjectWaitingForTheNodeMerge_theLatestTakesEffect() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementNode b = mesh.node("b");
      mesh.connect("a", "b");
      a.publish(new Cursor("c1", 0, 0)).block();
      mesh.settle();
      long before = a.get(CURSOR, "c1").orElseThrow().version().serial();
      List<Cursor> seenAtB = new ArrayList<>();
      Disposable watching = b.watch(CURSOR, "c1").subscribe(s -> seenAtB.add(s.value()));
      List<Object> endings = new ArrayList<>();
      AtomicLong endedWhileBusy = new AtomicLong(-1);
      whileBusy(a, () -> {
        for (int i = 1; i <= 1_000; i++) {
          record(a.publish(new Cursor("c1", i, i)), endings);
        }
        endedWhileBusy.set(endings.size());
      });
      // The first is a task of its own; of the others, each was superseded by the next at once.
      assertEquals(998, endedWhileBusy.get());
      mesh.settle();
      watching.dispose();
      List<Object> expected = new ArrayList<>(java.util.Collections.nCopies(998, EMPTY));
      expected.add(new Cursor("c1", 1, 1));
      expected.add(new Cursor("c1", 1_000, 1_000));
      assertEquals(expected, endings);
      Snapshot<Cursor> now = a.get(CURSOR, "c1").orElseThrow();
      assertEquals(new Cursor("c1", 1_000, 1_000), now.value());
      assertEquals(before + 2, now.version().serial(), "two versions for the thousand publishes");
      assertEquals(List.of(new Cursor("c1", 0, 0), new Cursor("c1", 1_000, 1_000)), seenAtB);
      assertEquals(998, a.stats().publishesMerged());
    }
  }

  @Test
  void aLoopOverManyObjectsMergesThePublishesOfEach() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      int objects = 100;
      int rounds = 10;
      for (int k = 0; k < objects; k++) {
        a.publish(new Cursor("c" + k, 0, 0)).block();
      }
      java.util.Map<String, List<Object>> endings = new java.util.HashMap<>();
      whileBusy(a, () -> {
        for (int r = 1; r <= rounds; r++) {
          for (int k = 0; k < objects; k++) {
            record(a.publish(new Cursor("c" + k, r, r)), endings.computeIfAbsent("c" + k, x -> new ArrayList<>()));
          }
        }
      });
      mesh.settle();
      // Per object: the first publish of the round robin is a task of its own, the second opens the
      // slot, and each later one takes the place of the one before in it, which ends empty at once.
      List<Object> expected = new ArrayList<>();
      for (int k = 0; k < objects; k++) {
        expected.clear();
        expected.addAll(java.util.Collections.nCopies(rounds - 2, EMPTY));
        expected.add(new Cursor("c" + k, 1, 1));
        expected.add(new Cursor("c" + k, rounds, rounds));
        assertEquals(expected, endings.get("c" + k), "c" + k);
        assertEquals(new Cursor("c" + k, rounds, rounds), a.get(CURSOR, "c" + k).orElseThrow().value());
      }
      assertEquals((long) objects * (rounds - 2), a.stats().publishesMerged());
    }
  }

  @Test
  void publishesAreMergedOnlyWhileTheNodeIsBusy_andOnlyForObjectsItHolds() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<Object> endings = new ArrayList<>();
      // Idle: each publish runs at once.
      record(a.publish(new Cursor("c1", 1, 1)), endings);
      record(a.publish(new Cursor("c1", 2, 2)), endings);
      // Busy, but the node does not hold c2 yet: each is a version of its own.
      whileBusy(a, () -> {
        record(a.publish(new Cursor("c2", 1, 1)), endings);
        record(a.publish(new Cursor("c2", 2, 2)), endings);
      });
      mesh.settle();
      assertEquals(List.of(new Cursor("c1", 1, 1), new Cursor("c1", 2, 2), new Cursor("c2", 1, 1),
          new Cursor("c2", 2, 2)), endings);
      assertEquals(0, a.stats().publishesMerged());
    }
  }

  /** An operation of the application other than a publish, on object c1 or its owner. */
  enum Between {
    DELETE,
    PROPOSE,
    TRANSITION,
    REMOVE_OWNER
  }

  @org.junit.jupiter.params.ParameterizedTest
  @org.junit.jupiter.params.provider.EnumSource(Between.class)
  void aPublishMadeAfterAnotherOperationNeverJoinsOneMadeBeforeIt(Between between) {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      OwnerId owner = a.owner();
      a.publish(new Cursor("c1", 0, 0)).block();
      List<Object> endings = new ArrayList<>();
      List<Object> middle = new ArrayList<>();
      whileBusy(a, () -> {
        record(a.publish(new Cursor("c1", 1, 1)), endings); // the version's first: a task
        record(a.publish(new Cursor("c1", 2, 2)), endings); // waits in a slot
        switch (between) {
          case DELETE -> a.delete(CURSOR, "c1").subscribe(middle::add, middle::add);
          case PROPOSE -> a.propose(CURSOR, "c1", java.util.Map.of("x", 5.0)).subscribe(middle::add, middle::add);
          case TRANSITION -> {
            Transition<Cursor> t = a.beginTransition(CURSOR, "c1");
            t.update(java.util.Map.of("y", 7.0));
            t.commit().subscribe(middle::add, middle::add);
          }
          case REMOVE_OWNER -> a.removeOwner(owner).subscribe(null, middle::add, () -> middle.add("removed"));
        }
        record(a.publish(new Cursor("c1", 3, 3)), endings); // must not join the slot made before
      });
      mesh.settle();
      assertEquals(1, middle.size(), "the operation in between ended: " + middle);
      assertEquals(0, a.stats().publishesMerged());
      assertEquals(List.of(new Cursor("c1", 1, 1), new Cursor("c1", 2, 2)), endings.subList(0, 2),
          "the publishes made before it took effect before it");
      if (between == Between.REMOVE_OWNER) {
        // The last publish comes after its owner was removed.
        assertTrue(endings.get(2) instanceof EntanglementException e && e.code() == ErrorCode.BAD_OWNER,
            "last publish: " + endings.get(2));
        assertTrue(a.get(CURSOR, "c1").isEmpty());
      } else {
        assertTrue(middle.get(0) instanceof Outcome.Committed<?>, "in between: " + middle);
        assertEquals(new Cursor("c1", 3, 3), endings.get(2));
        assertEquals(new Cursor("c1", 3, 3), a.get(CURSOR, "c1").orElseThrow().value(),
            "the last operation made is the last to take effect");
      }
    }
  }

  /**
   * {@link #THREADS} threads that run {@link #OPERATIONS} operations each on one node at once, as
   * fast as they can, the node's engine on its default scheduler. Each operation counts down {@link
   * #ended} when its {@code Mono} ends, and adds its error, if any, to {@link #failures}.
   */
  private static final class Racing implements AutoCloseable {
    static final int THREADS = 3;
    static final int OPERATIONS = 4_000;
    final EntanglementNode node = EntanglementNode.builder().id("a").owner(OwnerId.of("owner-a"))
        .epoch(1).registry(TestMesh.registry()).build();
    final java.util.concurrent.CountDownLatch ended =
        new java.util.concurrent.CountDownLatch(THREADS * OPERATIONS);
    final java.util.Queue<Throwable> failures = new java.util.concurrent.ConcurrentLinkedQueue<>();
    /** Per thread: the value each object should have after its operations alone (none: absent). */
    final List<java.util.Map<String, Cursor>> models = new ArrayList<>();

    /** Operation {@code i} of {@code thread}, given its random source and its model. */
    interface Operation {
      void run(int thread, int i, java.util.SplittableRandom random, java.util.Map<String, Cursor> model);
    }

    /** Runs the threads, seeded from {@code seed}, and waits until every operation ended. */
    void run(long seed, Operation operation) throws InterruptedException {
      java.util.concurrent.CountDownLatch start = new java.util.concurrent.CountDownLatch(1);
      for (int t = 0; t < THREADS; t++) {
        int thread = t;
        java.util.Map<String, Cursor> model = new java.util.HashMap<>();
        models.add(model);
        java.util.SplittableRandom random = new java.util.SplittableRandom(seed + t);
        new Thread(() -> {
          try {
            start.await();
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
          }
          for (int i = 1; i <= OPERATIONS; i++) {
            operation.run(thread, i, random, model);
          }
        }).start();
      }
      start.countDown();
      assertTrue(ended.await(60, java.util.concurrent.TimeUnit.SECONDS),
          "operations still open: " + ended.getCount());
      assertTrue(failures.isEmpty(),
          failures.size() + " failures, the first: " + failures.stream().limit(3).toList());
      assertTrue(node.stats().publishesMerged() > 0, "no publish waited merged: the test tested nothing");
    }

    /** Subscribes to an operation's result: {@code check} for its value, then counted as ended. */
    <T> void track(Mono<T> result, java.util.function.Consumer<T> check) {
      result.subscribe(check, failures::add, ended::countDown);
    }

    @Override
    public void close() {
      node.close().block();
    }
  }

  /**
   * Threads publish, delete and propose on objects of their own: publishes that wait merge, and
   * each object still ends as its thread's operations, applied one after the other in the order
   * made, leave it. Every operation ends (a publish possibly empty) and none fails.
   */
  @org.junit.jupiter.api.RepeatedTest(5)
  void concurrentThreadsKeepTheOrderOfTheirOwnOperationsPerObject(
      org.junit.jupiter.api.RepetitionInfo repetition) throws InterruptedException {
    int objects = 8;
    try (Racing racing = new Racing()) {
      EntanglementNode a = racing.node;
      racing.run(7_700L * repetition.getCurrentRepetition(), (thread, i, random, model) -> {
        String id = "t" + thread + "-" + random.nextInt(objects);
        int kind = random.nextInt(100);
        if (kind < 90) {
          Cursor v = new Cursor(id, i, thread);
          model.put(id, v);
          racing.track(a.publish(v), s -> {});
        } else if (kind < 95) {
          Cursor before = model.remove(id);
          racing.track(a.delete(CURSOR, id), o -> {
            if (o.isCommitted() != (before != null)) {
              racing.failures.add(new AssertionError("delete of " + id + ": " + o));
            }
          });
        } else {
          Cursor before = model.get(id);
          if (before != null) {
            model.put(id, new Cursor(id, before.x(), -i));
          }
          racing.track(a.propose(CURSOR, id, java.util.Map.of("y", (double) -i)), o -> {
            if (o.isCommitted() != (before != null)) {
              racing.failures.add(new AssertionError("proposal on " + id + ": " + o));
            }
          });
        }
      });
      for (int t = 0; t < Racing.THREADS; t++) {
        for (int k = 0; k < objects; k++) {
          String id = "t" + t + "-" + k;
          assertEquals(racing.models.get(t).get(id), a.get(CURSOR, id).map(Snapshot::value).orElse(null), id);
        }
      }
    }
  }

  @Test
  void aValueOfPublishAllHandedOverOnTheThreadIsNotOvertakenByItsLaterPublish() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      a.publish(new Cursor("c1", 0, 0)).block();
      Sinks.Many<Cursor> values = Sinks.many().unicast().onBackpressureBuffer();
      a.publishAll(CURSOR, values.asFlux()).subscribe(); // idle: its demand is given at once
      List<Object> endings = new ArrayList<>();
      whileBusy(a, () -> {
        record(a.publish(new Cursor("c1", 1, 1)), endings); // the version's first: a task
        record(a.publish(new Cursor("c1", 2, 2)), endings); // waits in a slot
        values.tryEmitNext(new Cursor("c1", 3, 3)); // handed over here, queued behind the slot
        record(a.publish(new Cursor("c1", 4, 4)), endings); // must come after it
      });
      mesh.settle();
      assertEquals(List.of(new Cursor("c1", 1, 1), new Cursor("c1", 2, 2), new Cursor("c1", 4, 4)), endings);
      assertEquals(new Cursor("c1", 4, 4), a.get(CURSOR, "c1").orElseThrow().value());
      values.tryEmitComplete();
    }
  }

  /** Runs {@code operations} on another thread and waits for them. */
  private static void onAnotherThread(Runnable operations) {
    Thread t = new Thread(operations);
    t.start();
    try {
      t.join(java.util.concurrent.TimeUnit.SECONDS.toMillis(10));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    assertTrue(!t.isAlive(), "the other thread did not finish");
  }

  @Test
  void aThreadDoesNotJoinAnotherThreadsSlotQueuedBeforeItsOwnLastOperation() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      a.publish(new Cursor("c1", 0, 0)).block();
      List<Object> endings = java.util.Collections.synchronizedList(new ArrayList<>());
      List<Object> deleted = new ArrayList<>();
      whileBusy(a, () -> {
        // Another thread: its first publish is a task, its second waits in a slot.
        onAnotherThread(() -> {
          record(a.publish(new Cursor("c1", 1, 1)), endings);
          record(a.publish(new Cursor("c1", 2, 2)), endings);
        });
        // This thread deletes the object, then publishes it again: its publish must come after
        // its delete, so it may not join the slot, queued before the delete.
        a.delete(CURSOR, "c1").subscribe(deleted::add);
        record(a.publish(new Cursor("c1", 3, 3)), endings);
      });
      mesh.settle();
      assertEquals(List.of(new Cursor("c1", 1, 1), new Cursor("c1", 2, 2), new Cursor("c1", 3, 3)), endings);
      assertTrue(deleted.get(0) instanceof Outcome.Committed<?>, "delete: " + deleted);
      assertEquals(new Cursor("c1", 3, 3), a.get(CURSOR, "c1").orElseThrow().value());
      assertEquals(0, a.stats().publishesMerged());
    }
  }

  @Test
  void aThreadWhoseLastOperationStartedJoinsAnotherThreadsSlot() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      a.publish(new Cursor("c1", 0, 0)).block(); // ran at once: this thread's last operation
      List<Object> endings = java.util.Collections.synchronizedList(new ArrayList<>());
      whileBusy(a, () -> {
        onAnotherThread(() -> {
          record(a.publish(new Cursor("c1", 1, 1)), endings);
          record(a.publish(new Cursor("c1", 2, 2)), endings);
        });
        record(a.publish(new Cursor("c1", 3, 3)), endings); // replaces the other thread's (2, 2)
      });
      mesh.settle();
      assertEquals(List.of(EMPTY, new Cursor("c1", 1, 1), new Cursor("c1", 3, 3)), endings);
      assertEquals(new Cursor("c1", 3, 3), a.get(CURSOR, "c1").orElseThrow().value());
      assertEquals(1, a.stats().publishesMerged());
    }
  }

  /**
   * Threads publish the same objects at once, each a value of its own: whatever the interleaving,
   * each object ends with the last value one of the threads published for it, never with a value
   * a thread replaced by a later one of its own.
   */
  @org.junit.jupiter.api.RepeatedTest(5)
  void threadsPublishingTheSameObjectsLeaveEachWithOneOfTheirLastValues(
      org.junit.jupiter.api.RepetitionInfo repetition) throws InterruptedException {
    int objects = 4;
    try (Racing racing = new Racing()) {
      EntanglementNode a = racing.node;
      racing.run(8_800L * repetition.getCurrentRepetition(), (thread, i, random, model) -> {
        Cursor v = new Cursor("shared-" + random.nextInt(objects), i, thread);
        model.put(v.id(), v);
        racing.track(a.publish(v), s -> {});
      });
      for (int k = 0; k < objects; k++) {
        String id = "shared-" + k;
        Cursor got = a.get(CURSOR, id).orElseThrow().value();
        java.util.Set<Cursor> lasts = new java.util.HashSet<>();
        racing.models.forEach(m -> {
          if (m.containsKey(id)) {
            lasts.add(m.get(id));
          }
        });
        assertTrue(lasts.contains(got), id + " ended at " + got + ", not one of the threads' last values " + lasts);
      }
    }
  }
}
