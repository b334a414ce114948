package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.RepetitionInfo;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;

class PublishSlotTest {
  private static final TypeBinding<Cursor> CURSORS = new TypeBinding<>(TestMesh.CURSOR, TestMesh.registry());
  private static final OwnerId OWNER = OwnerId.of("owner-a");
  private static final StoredState BASE = new StoredState(CURSORS,
      new Snapshot<>(new ObjectKey("Cursor", "c1"), new Cursor("c1", 0, 0), OWNER, new Version(1, 1), false,
          0L), null, null);

  /** One publisher: the sink its Mono gave, and how that Mono ended. */
  private static final class Publisher {
    final AtomicReference<MonoSink<Snapshot<?>>> sink = new AtomicReference<>();
    final AtomicInteger emptyCompletions = new AtomicInteger();
    final AtomicInteger values = new AtomicInteger();
    final Cursor value;

    Publisher(int i) {
      value = new Cursor("c1", i, i);
      Mono.<Snapshot<?>>create(sink::set)
          .subscribe(v -> values.incrementAndGet(), e -> {}, () -> {
            if (values.get() == 0) {
              emptyCompletions.incrementAndGet();
            }
          });
    }

    PublishSlot.Pending pending() {
      return new PublishSlot.Pending(value, sink.get());
    }
  }

  private static PublishSlot slot(Publisher first, List<PublishSlot> ran) {
    PublishSlot slot = new PublishSlot(BASE, OWNER, first.pending(), (s, base) -> {
      assertSame(BASE, base);
      ran.add(s);
    });
    slot.queued();
    return slot;
  }

  @Test
  void aJoinReplacesTheWaitingValue_andEndsTheReplacedPublishEmpty() {
    Publisher first = new Publisher(1);
    Publisher second = new Publisher(2);
    Publisher third = new Publisher(3);
    List<PublishSlot> ran = new ArrayList<>();
    PublishSlot slot = slot(first, ran);
    assertTrue(slot.join(OWNER, second.pending()));
    assertEquals(1, first.emptyCompletions.get());
    assertTrue(slot.join(OwnerId.of("owner-a"), third.pending()), "owners compare by value");
    assertEquals(1, second.emptyCompletions.get());
    assertFalse(slot.started());
    slot.run();
    assertEquals(List.of(slot), ran, "running the slot hands it and its state to the engine");
    assertThrows(IllegalStateException.class, slot::run);
    assertFalse(slot.started(), "started once the engine took it");
    PublishSlot.Pending taken = slot.take();
    assertTrue(slot.started());
    assertSame(third.value, taken.value());
    assertSame(third.sink.get(), taken.sink());
    assertEquals(0, third.emptyCompletions.get(), "the taken publish is the engine's to end");
  }

  @Test
  void aSlotNotYetQueuedIsJoinedByNoOne() {
    Publisher first = new Publisher(1);
    Publisher early = new Publisher(2);
    PublishSlot slot = new PublishSlot(BASE, OWNER, first.pending(), (s, base) -> {});
    assertFalse(slot.join(OWNER, early.pending()));
    slot.queued();
    assertTrue(slot.join(OWNER, early.pending()));
    assertEquals(1, first.emptyCompletions.get());
  }

  @Test
  void aTakenSlotIsJoinedByNoOne_andIsTakenOnce() {
    Publisher first = new Publisher(1);
    Publisher late = new Publisher(2);
    PublishSlot slot = slot(first, new ArrayList<>());
    slot.take();
    assertFalse(slot.join(OWNER, late.pending()));
    assertEquals(0, late.emptyCompletions.get());
    assertEquals(0, first.emptyCompletions.get());
    assertThrows(IllegalStateException.class, slot::take);
  }

  @Test
  void aJoinOfAnotherOwnerIsRefused() {
    Publisher first = new Publisher(1);
    Publisher other = new Publisher(2);
    PublishSlot slot = slot(first, new ArrayList<>());
    assertFalse(slot.join(OwnerId.of("owner-b"), other.pending()));
    assertEquals(0, first.emptyCompletions.get());
    assertSame(first.value, slot.take().value());
  }

  /**
   * Publishers on several threads join one slot while another thread takes it at a random moment:
   * exactly one publish is taken; every publish that joined, and the first, is either the one taken
   * or ends empty, once; a publish whose join was refused (it came after the take) does not end
   * here, its publisher going on to a new slot. So no publish is lost or ended twice.
   */
  @RepeatedTest(20)
  void joinsRacingTheTake_eachPublishEndsOnceOrIsTaken(RepetitionInfo repetition)
      throws InterruptedException {
    SplittableRandom random = new SplittableRandom(9_100 + repetition.getCurrentRepetition());
    int threads = 3;
    int perThread = 2_000;
    Publisher first = new Publisher(0);
    PublishSlot slot = slot(first, new ArrayList<>());
    List<List<Publisher>> byThread = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      List<Publisher> mine = new ArrayList<>();
      for (int i = 0; i < perThread; i++) {
        mine.add(new Publisher(1 + t * perThread + i));
      }
      byThread.add(mine);
    }
    int takeAfter = random.nextInt(threads * perThread);
    AtomicInteger joinsTried = new AtomicInteger();
    java.util.Set<Publisher> joined = java.util.concurrent.ConcurrentHashMap.newKeySet();
    AtomicReference<PublishSlot.Pending> taken = new AtomicReference<>();
    CountDownLatch start = new CountDownLatch(1);
    List<Thread> running = new ArrayList<>();
    for (List<Publisher> mine : byThread) {
      running.add(new Thread(() -> {
        awaitQuietly(start);
        for (Publisher p : mine) {
          joinsTried.incrementAndGet();
          if (slot.join(OWNER, p.pending())) {
            joined.add(p);
          }
        }
      }));
    }
    running.add(new Thread(() -> {
      awaitQuietly(start);
      while (joinsTried.get() < takeAfter) {
        Thread.onSpinWait();
      }
      taken.set(slot.take());
    }));
    running.forEach(Thread::start);
    start.countDown();
    for (Thread t : running) {
      t.join(TimeUnit.SECONDS.toMillis(30));
      assertFalse(t.isAlive(), "a racing thread did not finish");
    }
    joined.add(first);
    PublishSlot.Pending p = taken.get();
    int takenOnes = 0;
    for (List<Publisher> mine : byThread) {
      for (Publisher publisher : mine) {
        check(publisher, joined.contains(publisher), p);
        takenOnes += publisher.sink.get() == p.sink() ? 1 : 0;
      }
    }
    check(first, true, p);
    takenOnes += first.sink.get() == p.sink() ? 1 : 0;
    assertEquals(1, takenOnes, "exactly one publish is taken");
  }

  private static void check(Publisher publisher, boolean joined, PublishSlot.Pending taken) {
    boolean isTaken = publisher.sink.get() == taken.sink();
    if (isTaken) {
      assertSame(publisher.value, taken.value());
      assertEquals(0, publisher.emptyCompletions.get(), "the taken publish ended early");
    } else if (joined) {
      assertEquals(1, publisher.emptyCompletions.get(), "a joined publish neither taken nor ended once");
    } else {
      assertEquals(0, publisher.emptyCompletions.get(), "a refused publish was ended");
    }
  }

  private static void awaitQuietly(CountDownLatch latch) {
    try {
      latch.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
