package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.store.InMemoryStateStore;
import dev.entanglement.store.PermanentStoreException;
import dev.entanglement.store.StateStore;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;

/** The engine with a StateStore: restart, durability before acknowledgement, group commit. */
class StateStoreTest {

  @Test
  @DisplayName("a clean restart reloads the objects and keeps the owner's epoch and serial")
  void cleanRestartKeepsEpoch() {
    InMemoryStateStore store = new InMemoryStateStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store).epoch(7));
      a.start().block();
      for (int i = 1; i <= 3; i++) {
        a.publish(new Cursor("c", i, i)).block();
      }
      a.publish(new Cursor("d", 1, 1)).block();
      a.delete(CURSOR, "d").block();
      a.close().block();
      EntanglementNode again = mesh.node("a", b -> b.store(store).epoch(99));
      again.start().block();
      assertEquals(new Cursor("c", 3, 3), again.get(CURSOR, "c").orElseThrow().value());
      assertTrue(again.get(CURSOR, "d").orElseThrow().deleted(), "tombstones survive restarts");
      Snapshot<Cursor> next = again.publish(new Cursor("c", 4, 4)).block();
      assertEquals(new Version(7, 6), next.version(), "same epoch, serial continues");
    }
  }

  @Test
  @DisplayName("a lost store means a new epoch")
  void lostStoreNewEpoch() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(new InMemoryStateStore()).epoch(7));
      a.start().block();
      a.publish(new Cursor("c", 1, 1)).block();
      a.close().block();
      EntanglementNode fresh = mesh.node("a", b -> b.store(new InMemoryStateStore()).epoch(8));
      fresh.start().block();
      assertTrue(fresh.get(CURSOR, "c").isEmpty());
      assertEquals(new Version(8, 1), fresh.publish(new Cursor("c", 2, 2)).block().version());
    }
  }

  @Test
  @DisplayName("a stored object that no longer decodes into its type fails start(), with nothing restored")
  void anUndecodableStoredObjectFailsStart() {
    InMemoryStateStore store = new InMemoryStateStore();
    store.write(new WriteBatch()
        .add(new WriteBatch.PutObject(new StoredData.ObjectRecord(
            "Cursor", "good", "owner-a", 1, 1, 0, false, "{\"id\":\"good\",\"x\":1,\"y\":1}")))
        .add(new WriteBatch.PutObject(new StoredData.ObjectRecord(
            "Cursor", "bad", "owner-a", 1, 2, 0, false, "{\"id\":\"bad\",\"x\":\"one\",\"y\":1}"))))
        .block();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      IllegalStateException e = assertThrows(IllegalStateException.class, () -> a.start().block(Duration.ofSeconds(5)));
      assertTrue(e.getMessage().contains("Cursor bad"), e.getMessage());
      assertTrue(a.get(CURSOR, "good").isEmpty(), "nothing restored");
      assertThrows(IllegalStateException.class, () -> a.publish(new Cursor("c", 1, 1)).block(), "not started");
    }
    // A key longer than ObjectKey allows, kept by an older version: the same clear failure.
    InMemoryStateStore older = new InMemoryStateStore();
    String longKey = "k".repeat(ObjectKey.MAX_KEY_LENGTH + 1);
    older.write(new WriteBatch().add(new WriteBatch.PutObject(new StoredData.ObjectRecord(
        "Cursor", longKey, "owner-a", 1, 1, 0, false, "{\"id\":\"" + longKey + "\",\"x\":1,\"y\":1}")))).block();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(older));
      IllegalStateException e = assertThrows(IllegalStateException.class, () -> a.start().block(Duration.ofSeconds(5)));
      assertTrue(e.getMessage().contains("at most " + ObjectKey.MAX_KEY_LENGTH), e.getMessage());
    }
  }

  @Test
  @DisplayName("with a store, a node refuses to work before start()")
  void startRequired() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(new InMemoryStateStore()));
      assertThrows(IllegalStateException.class, () -> a.publish(new Cursor("c", 1, 1)).block());
    }
  }

  /** A store whose writes complete only when the test says so. */
  static final class GatedStore implements StateStore {
    final InMemoryStateStore inner = new InMemoryStateStore();
    final java.util.List<Runnable> gates = new java.util.ArrayList<>();
    int writes;

    public Mono<StoredData> load() {
      return inner.load();
    }

    public Mono<Void> write(WriteBatch batch) {
      writes++;
      return Mono.create(sink -> gates.add(() -> inner.write(batch).subscribe(null, sink::error, sink::success)));
    }

    public Mono<Void> close() {
      return Mono.empty();
    }

    /** Completes every pending write, and those they lead to. */
    void open() {
      while (!gates.isEmpty()) {
        var pending = java.util.List.copyOf(gates);
        gates.clear();
        pending.forEach(Runnable::run);
      }
    }
  }

  /** A store that counts loads and closes, and fails loads while told to. */
  static final class CountingStore implements StateStore {
    final InMemoryStateStore inner = new InMemoryStateStore();
    int loads;
    int closes;
    boolean failLoads;
    /** While set, a load completes only when the test emits into it. */
    reactor.core.publisher.Sinks.One<StoredData> gate;

    public Mono<StoredData> load() {
      loads++;
      if (gate != null) {
        return gate.asMono();
      }
      return failLoads ? Mono.error(new IllegalStateException("load failed")) : inner.load();
    }

    public Mono<Void> write(WriteBatch batch) {
      return inner.write(batch);
    }

    public Mono<Void> close() {
      closes++;
      return Mono.empty();
    }
  }

  @Test
  @DisplayName("a failed start gives the store up; a started node's second start neither loads nor closes it; a closed node loads nothing")
  void startGivesTheStoreUpOnlyIfTheNodeDidNotStart() {
    CountingStore store = new CountingStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      store.failLoads = true;
      assertThrows(RuntimeException.class, () -> a.start().block());
      assertEquals(1, store.closes, "a node that did not start gives its store up");
      store.failLoads = false;
      a.start().block();
      a.start().block();
      assertEquals(2, store.loads, "started already: no second load");
      assertEquals(1, store.closes, "a started node keeps its store");
      a.close().block();
      int closes = store.closes;
      assertThrows(IllegalStateException.class, () -> a.start().block());
      assertEquals(2, store.loads, "a closed node loads nothing");
      assertEquals(closes, store.closes);
    }
  }

  @Test
  @DisplayName("a start() retried after a failure loads again")
  void aRetriedStartLoadsAgain() {
    CountingStore store = new CountingStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      store.failLoads = true;
      a.start().onErrorResume(e -> {
        store.failLoads = false;
        return a.start();
      }).block();
      assertEquals(2, store.loads);
      a.publish(new Cursor("c", 1, 1)).block(); // started
    }
  }

  @Test
  @DisplayName("start() calls made while a start runs share it: one load")
  void concurrentStartsShareOneLoad() {
    CountingStore store = new CountingStore();
    store.gate = reactor.core.publisher.Sinks.one();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      AtomicReference<String> first = new AtomicReference<>();
      AtomicReference<String> second = new AtomicReference<>();
      a.start().subscribe(null, e -> first.set("failed"), () -> first.set("started"));
      a.start().subscribe(null, e -> second.set("failed"), () -> second.set("started"));
      assertEquals(1, store.loads);
      store.gate.tryEmitValue(StoredData.empty());
      mesh.settle();
      assertEquals("started", first.get());
      assertEquals("started", second.get());
      assertEquals(0, store.closes);
    }
  }

  @Test
  @DisplayName("a commit is acknowledged and flooded only once durable")
  void durableBeforeAckAndFlood() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      mesh.node("b");
      a.start().block();
      store.open(); // the owners' first batch
      mesh.connect("a", "b");
      AtomicReference<Snapshot<Cursor>> ack = new AtomicReference<>();
      a.publish(new Cursor("c", 1, 1)).subscribe(ack::set);
      assertNull(ack.get(), "not durable yet");
      assertTrue(mesh.get("b").get(CURSOR, "c").isEmpty(), "not flooded before it is durable");
      assertTrue(a.get(CURSOR, "c").isEmpty(), "readers see durable state only");
      store.open();
      assertEquals(1.0, ack.get().value().x());
      assertEquals(1.0, mesh.get("b").get(CURSOR, "c").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a peer is told a watermark of the owner's durable versions only: a crash cannot reissue a serial it recorded")
  void watermarksCoverDurableVersionsOnly() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      a.start().block();
      store.open();
      a.publish(new Cursor("c", 1, 1)).subscribe();
      store.open();
      a.publish(new Cursor("c", 2, 2)).subscribe(); // not durable yet
      WireBehaviourTest.RawPeer peer = new WireBehaviourTest.RawPeer(mesh, "a", "x");
      peer.send(WireBehaviourTest.hello("x"));
      peer.send(new dev.entanglement.protocol.Message.CatchUp(java.util.List.of()));
      mesh.settle();
      long told = peer.of(dev.entanglement.protocol.Message.Watermark.class).stream()
          .filter(w -> w.owner().equals("owner-a")).mapToLong(w -> w.serial()).max().orElseThrow();
      assertEquals(1, told, "serial 2 is not durable");
      store.open();
      mesh.advance(Duration.ofSeconds(2));
      long later = peer.of(dev.entanglement.protocol.Message.Watermark.class).stream()
          .filter(w -> w.owner().equals("owner-a")).mapToLong(w -> w.serial()).max().orElseThrow();
      assertEquals(2, later, "durable now");
    }
  }

  @Test
  @DisplayName("group commit: a burst of commits while a batch is written costs one more batch, not one each")
  void groupCommit() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      a.start().block();
      store.open();
      int before = store.writes;
      a.publish(new Cursor("first", 0, 0)).subscribe();
      for (int i = 0; i < 100; i++) {
        a.publish(new Cursor("k" + i, i, i)).subscribe();
      }
      store.open();
      assertEquals(before + 2, store.writes);
      assertEquals(99.0, a.get(CURSOR, "k99").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a proposal right after an owner commit merges into the newest state, durable or not")
  void proposalSeesUndurableCommit() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      mesh.node("b");
      a.start().block();
      store.open();
      mesh.connect("a", "b");
      a.publish(new Cursor("c", 1, 1)).subscribe();
      store.open();
      a.publish(new Cursor("c", 5, 1)).subscribe(); // not durable yet
      AtomicReference<Outcome<Cursor>> out = new AtomicReference<>();
      mesh.get("b").propose(CURSOR, "c", java.util.Map.of("y", 9.0)).subscribe(out::set);
      store.open();
      assertEquals(new Cursor("c", 5, 9), a.get(CURSOR, "c").orElseThrow().value());
      assertTrue(out.get().isCommitted());
    }
  }

  @Test
  @DisplayName("a receiver keeps received states and watermarks; after a restart it asks only for what is newer")
  void receiverRestartCatchesUpIncrementally() {
    InMemoryStateStore storeB = new InMemoryStateStore();
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      EntanglementNode b = mesh.node("b", x -> x.store(storeB));
      b.start().block();
      mesh.connect("a", "b");
      for (int i = 0; i < 50; i++) {
        mesh.get("a").publish(new Cursor("k" + i, i, 0)).block();
      }
      mesh.advance(Duration.ofSeconds(2));
      mesh.disconnect("a", "b");
      mesh.nodes.remove("b").close().block();
      mesh.get("a").publish(new Cursor("k1", 100, 0)).block();
      EntanglementNode b2 = mesh.node("b", x -> x.store(storeB));
      b2.start().block();
      assertEquals(49.0, b2.get(CURSOR, "k49").orElseThrow().value().x());
      long encoded = mesh.get("a").stats().framesSent();
      mesh.connect("a", "b");
      assertEquals(100.0, b2.get(CURSOR, "k1").orElseThrow().value().x());
      assertTrue(mesh.get("a").stats().framesSent() - encoded <= 8,
          "only the change is resent: " + (mesh.get("a").stats().framesSent() - encoded));
      assertNotEquals(0, storeB.batches());
    }
  }

  @Test
  @DisplayName("close() waits for pending writes; if the store fails then, close fails instead of retrying forever, and so does every change not written")
  void closeWaitsForWritesAndGivesUpOnFailure() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      a.start().block();
      store.open();
      a.publish(new Cursor("c", 1, 1)).subscribe();
      AtomicReference<Object> closed = new AtomicReference<>();
      a.close().subscribe(null, closed::set, () -> closed.set("ok"));
      assertNull(closed.get(), "close waits for the pending write");
      store.open();
      assertEquals("ok", closed.get());
    }
    RefusingStore failing = new RefusingStore();
    failing.failWith = new IllegalStateException("disk full");
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(failing));
      a.start().block();
      AtomicReference<Object> published = new AtomicReference<>();
      AtomicReference<Object> deleted = new AtomicReference<>();
      a.publish(new Cursor("c", 1, 1)).subscribe(published::set, published::set);
      a.delete(CURSOR, "c").subscribe(deleted::set, deleted::set); // of the version not yet written
      AtomicReference<Object> closed = new AtomicReference<>();
      a.close().subscribe(null, closed::set, () -> closed.set("ok"));
      mesh.advance(Duration.ofSeconds(5));
      assertTrue(closed.get() instanceof IllegalStateException, String.valueOf(closed.get()));
      for (AtomicReference<Object> change : java.util.List.of(published, deleted)) {
        EntanglementException e = assertInstanceOf(EntanglementException.class, change.get());
        assertEquals(ErrorCode.NOT_CONNECTED, e.code());
        assertInstanceOf(IllegalStateException.class, e.getCause(), "the store's error");
      }
      assertTrue(a.get(CURSOR, "c").isEmpty(), "a change not written never takes effect");
      int writes = failing.writes;
      mesh.advance(Duration.ofSeconds(30));
      assertEquals(writes, failing.writes, "no retries after close gave up");
      assertTrue(failing.closed, "the store is closed all the same");
    }
  }

  /** Node "a" on {@code store}, started, with the local owner {@code extra} of {@code epoch} written. */
  private static EntanglementNode startedWithOwner(TestMesh mesh, GatedStore store, OwnerId extra, long epoch) {
    EntanglementNode a = mesh.node("a", b -> b.store(store));
    a.start().block();
    a.engine.addOwner(extra, epoch).block();
    store.open();
    return a;
  }

  @Test
  @DisplayName("an owner removed while its commit is written: the commit never takes effect, and its caller is told why")
  void ownerRemovedWhileItsCommitIsWritten() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      OwnerId extra = OwnerId.of("extra");
      EntanglementNode a = startedWithOwner(mesh, store, extra, 5);
      AtomicReference<Object> published = new AtomicReference<>();
      a.publish(CURSOR, extra, new Cursor("c", 1, 1)).subscribe(published::set, published::set);
      mesh.settle();
      assertNull(published.get(), "being written");
      a.removeOwner(extra).block();
      store.open();
      EntanglementException e = assertInstanceOf(EntanglementException.class, published.get());
      assertEquals(ErrorCode.BAD_OWNER, e.code());
      assertTrue(e.getMessage().contains("removed"), e.getMessage());
      assertTrue(a.get(CURSOR, "c").isEmpty(), "never takes effect");
      assertTrue(store.inner.load().block().objects().isEmpty(), "the store dropped it with the owner");
    }
  }

  @Test
  @DisplayName("the removed owner's commit being written is not current: another owner may create the key at once")
  void aRemovedOwnersPendingCommitDoesNotHoldTheKey() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      OwnerId extra = OwnerId.of("extra");
      EntanglementNode a = startedWithOwner(mesh, store, extra, 5);
      a.publish(CURSOR, extra, new Cursor("c", 1, 1)).subscribe(v -> {}, e -> {});
      mesh.settle();
      a.removeOwner(extra).block();
      AtomicReference<Object> mine = new AtomicReference<>();
      a.publish(new Cursor("c", 2, 2)).subscribe(mine::set, mine::set); // the node's own owner
      store.open();
      assertInstanceOf(Snapshot.class, mine.get(), String.valueOf(mine.get()));
      assertEquals(2.0, a.get(CURSOR, "c").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("publishAll fails, not succeeds, when its owner is removed while its values are written")
  void publishAllOfARemovedOwnerFails() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      OwnerId extra = OwnerId.of("extra");
      EntanglementNode a = startedWithOwner(mesh, store, extra, 5);
      AtomicReference<Object> end = new AtomicReference<>();
      a.publishAll(CURSOR, extra, reactor.core.publisher.Flux.just(new Cursor("p", 1, 1), new Cursor("q", 1, 1)))
          .subscribe(null, end::set, () -> end.set("success"));
      mesh.settle();
      assertNull(end.get(), "the source completed; its values are being written");
      a.removeOwner(extra).block();
      store.open();
      assertEquals(ErrorCode.BAD_OWNER, assertInstanceOf(EntanglementException.class, end.get()).code());
    }
  }

  @Test
  @DisplayName("an owner removed and added again while a batch is written: the new owner's watermark is its own")
  void aReaddedOwnersWatermarkIsItsOwn() {
    GatedStore store = new GatedStore();
    try (TestMesh mesh = new TestMesh()) {
      OwnerId extra = OwnerId.of("extra");
      EntanglementNode a = startedWithOwner(mesh, store, extra, 5);
      for (int i = 1; i <= 3; i++) {
        a.publish(CURSOR, extra, new Cursor("e" + i, i, i)).subscribe(v -> {}, e -> {});
      }
      mesh.settle(); // serials 1-3 of epoch 5 are being written
      a.removeOwner(extra).block();
      a.engine.addOwner(extra, 6).block();
      store.open();
      WireBehaviourTest.RawPeer peer = new WireBehaviourTest.RawPeer(mesh, "a", "x");
      peer.send(WireBehaviourTest.hello("x"));
      peer.send(new dev.entanglement.protocol.Message.CatchUp(java.util.List.of()));
      mesh.settle();
      store.open();
      mesh.settle();
      assertTrue(peer.of(dev.entanglement.protocol.Message.Watermark.class).stream()
              .filter(w -> w.owner().equals("extra"))
              .allMatch(w -> w.epoch() == 6 && w.serial() == 0),
          "epoch 6 has no serial yet: " + peer.of(dev.entanglement.protocol.Message.Watermark.class));
    }
  }

  @Test
  @DisplayName("a failed write is retried until the store takes it; one the store refuses for good stops writing and fails every local commit")
  void transientFailuresAreRetriedPermanentOnesStopWriting() {
    RefusingStore store = new RefusingStore();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      a.start().block();
      mesh.node("b");
      mesh.connect("a", "b");

      store.failWith = new IllegalStateException("connection lost");
      AtomicReference<Object> retried = new AtomicReference<>();
      a.publish(new Cursor("c", 1, 1)).subscribe(retried::set, retried::set);
      mesh.advance(Duration.ofSeconds(3));
      assertNull(retried.get(), "waits while the writes fail");
      assertTrue(store.writes >= 3, "retried every second: " + store.writes);
      store.failWith = null;
      mesh.advance(Duration.ofSeconds(1));
      assertInstanceOf(Snapshot.class, retried.get());
      assertTrue(mesh.get("b").get(CURSOR, "c").isPresent());

      store.failWith = new PermanentStoreException("column dropped", new IllegalStateException());
      AtomicReference<Object> refused = new AtomicReference<>();
      a.publish(new Cursor("c", 2, 2)).subscribe(refused::set, refused::set);
      mesh.settle();
      EntanglementException e = assertInstanceOf(EntanglementException.class, refused.get());
      assertEquals(ErrorCode.NOT_CONNECTED, e.code());
      assertInstanceOf(PermanentStoreException.class, e.getCause());
      assertEquals(1.0, a.get(CURSOR, "c").orElseThrow().value().x(), "the refused commit never takes effect");
      int writes = store.writes;

      store.failWith = null; // too late: the node no longer writes
      AtomicReference<Object> later = new AtomicReference<>();
      a.publish(new Cursor("d", 1, 1)).subscribe(later::set, later::set);
      mesh.advance(Duration.ofSeconds(30));
      assertInstanceOf(PermanentStoreException.class,
          assertInstanceOf(EntanglementException.class, later.get()).getCause(), "fails at once");
      assertEquals(writes, store.writes, "no retry, no later write");
      assertTrue(a.get(CURSOR, "d").isEmpty());

      mesh.get("b").publish(new Cursor("from-b", 5, 5)).block();
      mesh.settle();
      assertTrue(a.get(CURSOR, "from-b").isPresent(), "received states still take effect in memory");
      assertEquals(writes, store.writes);

      AtomicReference<Object> closed = new AtomicReference<>();
      a.close().subscribe(null, closed::set, () -> closed.set("ok"));
      mesh.settle();
      assertInstanceOf(PermanentStoreException.class, closed.get(), "close() reports the failure");
      assertTrue(store.closed);
    }
  }

  /** A store whose writes fail with {@code failWith} while it is set. */
  static final class RefusingStore implements StateStore {
    @org.jspecify.annotations.Nullable RuntimeException failWith;
    int writes;
    boolean closed;

    public Mono<StoredData> load() {
      return Mono.just(StoredData.empty());
    }

    public Mono<Void> write(WriteBatch batch) {
      writes++;
      return failWith != null ? Mono.error(failWith) : Mono.empty();
    }

    public Mono<Void> close() {
      closed = true;
      return Mono.empty();
    }
  }
}
