package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;
import reactor.core.publisher.BaseSubscriber;
import reactor.test.StepVerifier;

/** watch, watchAll and events: latest-state streams with per-key backpressure. */
class WatchTest {

  @Test
  @DisplayName("a slow watchAll subscriber (request(1) every 10 ms) ends with the latest state of all 100 keys of 10,000 updates")
  void slowWatchAllKeepsEveryKey() {
    try (TestMesh mesh = ReplicationTest.line("owner", "viewer")) {
      Map<String, Cursor> latest = new HashMap<>();
      int[] received = {0};
      BaseSubscriber<Snapshot<Cursor>> slow =
          new BaseSubscriber<>() {
            @Override
            protected void hookOnSubscribe(Subscription s) {
              s.request(1);
            }

            @Override
            protected void hookOnNext(Snapshot<Cursor> s) {
              received[0]++;
              latest.put(s.key().key(), s.value());
              mesh.clock.schedule(() -> request(1), 10, TimeUnit.MILLISECONDS);
            }
          };
      mesh.get("viewer").watchAll(CURSOR).subscribe(slow);
      Map<String, Cursor> expected = new HashMap<>();
      for (int i = 0; i < 10_000; i++) {
        Cursor c = new Cursor("k" + (i % 100), i, -i);
        expected.put(c.id(), c);
        mesh.get("owner").publish(c).block();
        if (i % 100 == 99) {
          mesh.advance(Duration.ofMillis(1)); // 10,000 updates over 100 ms
        }
      }
      mesh.advance(Duration.ofSeconds(2)); // 100 keys at one per 10 ms
      assertEquals(expected, latest);
      assertTrue(received[0] < 400, "a slow subscriber must not replay history: " + received[0]);
      slow.dispose();
    }
  }

  @Test
  @DisplayName("watch emits the current state, then every change, and a deleted snapshot on delete")
  void watchCurrentThenChanges() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      StepVerifier.create(mesh.get("b").watch(CURSOR, "c"))
          .assertNext(s -> assertEquals(new Cursor("c", 1, 1), s.value()))
          .then(() -> mesh.get("a").publish(new Cursor("c", 2, 2)).block())
          .assertNext(s -> assertEquals(new Cursor("c", 2, 2), s.value()))
          .then(() -> mesh.get("a").delete(CURSOR, "c").block())
          .assertNext(s -> assertTrue(s.deleted()))
          .thenCancel()
          .verify(Duration.ofSeconds(5));
    }
  }

  @Test
  @DisplayName("watch of a key the node does not hold yet waits for it")
  void watchBeforeCreation() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      StepVerifier.create(mesh.get("b").watch(CURSOR, "later"))
          .expectSubscription()
          .expectNoEvent(Duration.ZERO)
          .then(() -> mesh.get("a").publish(new Cursor("later", 5, 5)).block())
          .assertNext(s -> assertEquals(5.0, s.value().x()))
          .thenCancel()
          .verify(Duration.ofSeconds(5));
    }
  }

  @Test
  @DisplayName("watch backpressure keeps only the latest state")
  void watchBackpressureLatest() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      mesh.get("a").publish(new Cursor("c", 0, 0)).block();
      StepVerifier.create(mesh.get("b").watch(CURSOR, "c"), 0)
          .then(() -> {
            for (int i = 1; i <= 100; i++) {
              mesh.get("a").publish(new Cursor("c", i, i)).block();
            }
          })
          .thenRequest(1)
          .assertNext(s -> assertEquals(100.0, s.value().x()))
          .thenRequest(1)
          .expectNoEvent(Duration.ZERO)
          .thenCancel()
          .verify(Duration.ofSeconds(5));
    }
  }

  @Test
  @DisplayName("watchAll emits current live objects first and honours its filter")
  void watchAllFilter() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      mesh.get("a").publish(new Cursor("left", -1, 0)).block();
      mesh.get("a").publish(new Cursor("right", 1, 0)).block();
      List<String> keys = new ArrayList<>();
      Disposable d =
          mesh.get("b")
              .watchAll(CURSOR, s -> s.value() != null && s.value().x() > 0)
              .subscribe(s -> keys.add(s.key().key()));
      mesh.get("a").publish(new Cursor("far", 9, 0)).block();
      mesh.get("a").publish(new Cursor("back", -9, 0)).block();
      assertEquals(List.of("right", "far"), keys);
      d.dispose();
    }
  }

  @Test
  @DisplayName("a filter or a subscriber that throws ends its own stream; the change still takes effect, floods and reaches other watchers")
  void aThrowingWatcherEndsItsOwnStreamOnly() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      mesh.node("b");
      mesh.connect("a", "b");
      a.publish(new Cursor("c", 1, 1)).block();
      List<Throwable> filterFailed = new ArrayList<>();
      a.watchAll(CURSOR, s -> s.value().x() > 0) // a deletion's value is null
          .subscribe(s -> {}, filterFailed::add);
      List<Throwable> dropped = new java.util.concurrent.CopyOnWriteArrayList<>();
      reactor.core.publisher.Hooks.onErrorDropped(dropped::add);
      try {
        a.watch(CURSOR, "c").subscribe(new org.reactivestreams.Subscriber<Snapshot<Cursor>>() {
          @Override
          public void onSubscribe(Subscription s) {
            s.request(Long.MAX_VALUE);
          }

          @Override
          public void onNext(Snapshot<Cursor> s) {
            if (s.deleted()) {
              throw new IllegalStateException("a subscriber that breaks rule 2.13");
            }
          }

          @Override
          public void onError(Throwable t) {}

          @Override
          public void onComplete() {}
        });
        List<Snapshot<Cursor>> other = new ArrayList<>();
        a.watch(CURSOR, "c").subscribe(other::add);
        assertTrue(a.delete(CURSOR, "c").block().isCommitted());
        mesh.settle();
        assertEquals(1, filterFailed.size());
        assertTrue(filterFailed.get(0) instanceof NullPointerException, String.valueOf(filterFailed.get(0)));
        assertEquals(1, dropped.size(), String.valueOf(dropped));
        assertTrue(other.get(other.size() - 1).deleted(), "the other watcher got the deletion");
        assertTrue(mesh.get("b").get(CURSOR, "c").orElseThrow().deleted(), "the deletion flooded");
        a.publish(new Cursor("c", 2, 2)).block();
        mesh.settle();
        assertEquals(2.0, mesh.get("b").get(CURSOR, "c").orElseThrow().value().x());
        assertEquals(1, filterFailed.size(), "the failed watcher is gone");
      } finally {
        reactor.core.publisher.Hooks.resetOnErrorDropped();
      }
    }
  }

  @Test
  @DisplayName("a cancelled watcher receives nothing more and is released")
  void cancellation() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      List<Snapshot<Cursor>> got = new ArrayList<>();
      Disposable d = mesh.get("b").watchAll(CURSOR).subscribe(got::add);
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      d.dispose();
      mesh.get("a").publish(new Cursor("c", 2, 2)).block();
      assertEquals(1, got.size());
    }
  }

  @Test
  @DisplayName("closing the node completes its streams")
  void closeCompletes() {
    try (TestMesh mesh = ReplicationTest.line("a")) {
      StepVerifier.create(mesh.get("a").watchAll(CURSOR))
          .then(() -> mesh.get("a").close().block())
          .expectComplete()
          .verify(Duration.ofSeconds(5));
    }
  }

  record Click(String id, int button) {}

  @Test
  @DisplayName("unique types are events: every instance is delivered once, none coalesce, none are stored")
  void uniqueEvents() {
    SyncType<Click> click = SyncType.of("Click", Click.class, Click::id).unique();
    Registry reg = Registry.builder("events").type(CURSOR).type(click).build();
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("a", "b", "c")) {
        mesh.node(n, reg, b -> {});
      }
      mesh.connect("a", "b");
      mesh.connect("b", "c");
      mesh.connect("c", "a"); // a cycle: events must still arrive once
      List<Click> got = new ArrayList<>();
      mesh.get("c").watchAll(click).subscribe(s -> got.add(s.value()));
      for (int i = 0; i < 5; i++) {
        mesh.get("a").publish(click, new Click("same-id", i)).block();
      }
      assertEquals(5, got.size());
      assertEquals(List.of(0, 1, 2, 3, 4), got.stream().map(Click::button).toList());
      assertTrue(mesh.get("c").get(click, "same-id").isEmpty());
    }
  }

  @Test
  @DisplayName("a watcher that requests fewer events than arrive gets the newest, in order; the oldest are dropped and counted")
  void aSlowEventWatcherKeepsTheNewest() {
    SyncType<Click> click = SyncType.of("Click", Click.class, Click::id).unique();
    Registry reg = Registry.builder("events").type(CURSOR).type(click).build();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", reg, b -> b.maxQueuedEvents(4));
      List<Integer> fast = new ArrayList<>();
      a.watchAll(click).subscribe(s -> fast.add(s.value().button()));
      StepVerifier.create(a.watchAll(click).map(s -> s.value().button()), 1)
          .then(() -> {
            for (int i = 0; i < 10; i++) {
              a.publish(new Click("id", i)).block();
            }
          })
          .expectNext(0) // the one requested, delivered as it came
          .then(() -> assertEquals(5, a.stats().eventsDropped())) // 1 to 5 of 1..9
          .thenRequest(10)
          .expectNext(6, 7, 8, 9)
          .thenCancel()
          .verify(Duration.ofSeconds(5));
      assertEquals(List.of(0, 1, 2, 3, 4, 5, 6, 7, 8, 9), fast, "a watcher with demand loses nothing");
      // States are not events: a slow state watcher keeps one value per object, of any number.
      StepVerifier.create(a.watchAll(CURSOR), 0)
          .then(() -> {
            for (int i = 0; i < 10; i++) {
              a.publish(new Cursor("c" + i, i, 0)).block();
            }
          })
          .thenRequest(10)
          .expectNextCount(10)
          .thenCancel()
          .verify(Duration.ofSeconds(5));
      assertEquals(5, a.stats().eventsDropped());
    }
  }

  @Test
  @DisplayName("cancelling a tentative stream stops its signals")
  void tentativeCancellation() {
    try (TestMesh mesh = ReplicationTest.line("a", "b")) {
      mesh.get("a").publish(new Cursor("c", 0, 0)).block();
      List<Tentative<Cursor>> got = new ArrayList<>();
      Disposable d = mesh.get("a").tentative(CURSOR, "c").subscribe(got::add);
      Transition<Cursor> t = mesh.get("b").beginTransition(CURSOR, "c");
      t.update(java.util.Map.of("x", 1.0));
      d.dispose();
      t.update(java.util.Map.of("x", 2.0));
      assertEquals(1, got.size());
    }
  }

  @Test
  @DisplayName("proposals are not pushed beyond demand; an unrequested proposal times out")
  void proposalsBackpressure() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("owner", b -> b.decisionTimeout(Duration.ofSeconds(2)));
      mesh.node("p");
      mesh.connect("owner", "p");
      mesh.get("owner").publish(new Cursor("c", 0, 0)).block();
      List<Outcome<Cursor>> outcomes = new ArrayList<>();
      StepVerifier.create(mesh.get("owner").proposals(CURSOR), 0)
          .then(() -> {
            mesh.get("p").propose(CURSOR, "c", java.util.Map.of("x", 1.0)).subscribe(outcomes::add);
            mesh.get("p").propose(CURSOR, "c", java.util.Map.of("y", 1.0)).subscribe(outcomes::add);
          })
          .expectNoEvent(Duration.ZERO)
          .thenRequest(1)
          .assertNext(Proposal::commit)
          .then(() -> mesh.advance(Duration.ofSeconds(3)))
          .thenCancel()
          .verify(Duration.ofSeconds(5));
      assertEquals(2, outcomes.size());
      assertTrue(outcomes.get(0).isCommitted());
      assertEquals(ErrorCode.TIMEOUT, ((Outcome.Rejected<Cursor>) outcomes.get(1)).code());
    }
  }

  @Test
  @DisplayName("cancelling attach closes the link; the peer sees it closed")
  void attachCancellationClosesLink() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("b");
      var c = dev.entanglement.transport.LocalTransport.builder().scheduler(mesh.clock).build()
          .connect(PeerId.of("a"), PeerId.of("b"));
      Disposable attachA = mesh.get("a").attach(c.a()).subscribe();
      boolean[] bDone = {false};
      mesh.get("b").attach(c.b()).subscribe(v -> {}, e -> {}, () -> bDone[0] = true);
      mesh.get("a").publish(new Cursor("x", 1, 1)).block();
      assertTrue(mesh.get("b").get(CURSOR, "x").isPresent());
      attachA.dispose();
      assertTrue(c.b().isDisposed());
      assertTrue(bDone[0], "b's attach completes when the link closes");
      mesh.get("a").publish(new Cursor("x", 2, 2)).block();
      assertEquals(1.0, mesh.get("b").get(CURSOR, "x").orElseThrow().value().x());
    }
  }
}
