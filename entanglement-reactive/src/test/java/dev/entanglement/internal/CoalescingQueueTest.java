package dev.entanglement.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.BinaryOperator;
import java.util.function.IntUnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class CoalescingQueueTest {

  /** Keeps the history of merges visible: "a" merged with "b" is "a+b". */
  private static final BinaryOperator<String> CONCAT =
      (pending, offered) -> pending + "+" + offered;

  /** Keeps only the newest entry. */
  private static final BinaryOperator<String> LATEST = (pending, offered) -> offered;

  private static List<String> drain(CoalescingQueue<String, String> q) {
    List<String> out = new ArrayList<>();
    String e;
    while ((e = q.poll()) != null) {
      out.add(e);
    }
    return out;
  }

  @Test
  void emptyQueue() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    assertTrue(q.isEmpty());
    assertEquals(0, q.size());
    assertNull(q.poll());
    assertNull(q.peek("x"));
    assertEquals(0, q.offered());
    assertEquals(0, q.coalesced());
  }

  @Test
  void fifoWithinOnePriority() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 1, "a1", CONCAT);
    q.offer("b", 1, "b1", CONCAT);
    q.offer("c", 1, "c1", CONCAT);
    assertEquals(List.of("a1", "b1", "c1"), drain(q));
    assertTrue(q.isEmpty());
  }

  @Test
  void atMostOneEntryPerKey_mergeKeepsPosition() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 1, "a1", CONCAT);
    q.offer("b", 1, "b1", CONCAT);
    q.offer("c", 1, "c1", CONCAT);
    q.offer("a", 1, "a2", CONCAT);
    q.offer("a", 1, "a3", CONCAT);
    q.offer("b", 1, "b2", CONCAT);
    assertEquals(3, q.size());
    // "a" was first offered first, so it is still at the head despite the later merges.
    assertEquals(List.of("a1+a2+a3", "b1+b2", "c1"), drain(q));
  }

  @Test
  void mergeFunctionReceivesPendingThenOffered() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    List<String> calls = new ArrayList<>();
    BinaryOperator<String> recording =
        (pending, offered) -> {
          calls.add(pending + "|" + offered);
          return offered;
        };
    q.offer("k", 0, "old", recording);
    assertTrue(calls.isEmpty(), "no merge for a first offer");
    q.offer("k", 0, "new", recording);
    assertEquals(List.of("old|new"), calls);
    assertEquals("new", q.peek("k"));
  }

  @Test
  void lowerPriorityDrainsFirst() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("low1", 5, "low1", CONCAT);
    q.offer("high1", 0, "high1", CONCAT);
    q.offer("mid", 2, "mid", CONCAT);
    q.offer("high2", 0, "high2", CONCAT);
    q.offer("low2", 5, "low2", CONCAT);
    q.offer("neg", -3, "neg", CONCAT);
    assertEquals(List.of("neg", "high1", "high2", "mid", "low1", "low2"), drain(q));
  }

  @Test
  void mergeThatLowersPriority_movesToTailOfLowerBucket() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("x", 0, "x", CONCAT);
    q.offer("y", 0, "y", CONCAT);
    q.offer("a", 3, "a1", CONCAT);
    q.offer("b", 3, "b", CONCAT);
    q.offer("a", 0, "a2", CONCAT); // merge + move to the tail of bucket 0
    assertEquals(4, q.size());
    assertEquals("a1+a2", q.peek("a"));
    assertEquals(List.of("x", "y", "a1+a2", "b"), drain(q));
  }

  @Test
  void mergeThatRaisesPriority_keepsBucketAndPosition() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 1, "a1", CONCAT);
    q.offer("b", 1, "b1", CONCAT);
    q.offer("c", 2, "c1", CONCAT);
    q.offer("a", 9, "a2", CONCAT); // a numerically higher priority never demotes a pending entry
    assertEquals(List.of("a1+a2", "b1", "c1"), drain(q));
  }

  @Test
  void mergeThatLowersPriority_leavesNoEmptyBucketBehind() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 4, "a1", LATEST);
    q.offer("a", 1, "a2", LATEST); // bucket 4 is now empty
    q.offer("b", 4, "b1", LATEST);
    assertEquals(List.of("a2", "b1"), drain(q));
    assertTrue(q.isEmpty());
    assertNull(q.poll());
  }

  @Test
  void sizeCountsDistinctKeys() {
    CoalescingQueue<Integer, String> q = new CoalescingQueue<>();
    for (int round = 0; round < 5; round++) {
      for (int k = 0; k < 10; k++) {
        q.offer(k, k % 3, "v" + round, LATEST);
      }
    }
    assertEquals(10, q.size());
    assertFalse(q.isEmpty());
    q.poll();
    assertEquals(9, q.size());
  }

  @Test
  void offeredAndCoalescedCounters() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 0, "1", LATEST);
    q.offer("b", 0, "1", LATEST);
    q.offer("a", 0, "2", LATEST);
    q.offer("a", -1, "3", LATEST); // a merge that moves still counts as coalesced
    assertEquals(4, q.offered());
    assertEquals(2, q.coalesced());
    q.poll();
    q.poll();
    q.offer("a", 0, "4", LATEST); // "a" is no longer pending: not coalesced
    assertEquals(5, q.offered());
    assertEquals(2, q.coalesced());
  }

  @Test
  void clearEmptiesTheQueueButKeepsCounters() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 0, "a", LATEST);
    q.offer("b", 1, "b", LATEST);
    q.offer("b", 1, "b2", LATEST);
    q.clear();
    assertTrue(q.isEmpty());
    assertEquals(0, q.size());
    assertNull(q.peek("a"));
    assertNull(q.poll());
    assertEquals(3, q.offered());
    assertEquals(1, q.coalesced());
    // usable after clear, and a cleared key is new again
    q.offer("b", 2, "b3", LATEST);
    q.offer("a", 2, "a2", LATEST);
    assertEquals(1, q.coalesced());
    assertEquals(List.of("b3", "a2"), drain(q));
  }

  @Test
  void trimRebuildsTheIndexOnlyOnceABacklogHasDrainedToAnEighth() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>(16, 1);
    for (int i = 0; i < 100; i++) {
      q.offer("k" + i, i % 2, "k" + i, LATEST);
    }
    q.trim();
    assertEquals(0, q.indexRebuilds(), "a full backlog keeps its index");
    List<String> expected = new ArrayList<>();
    for (int i = 0; i < 100; i += 2) {
      expected.add("k" + i);
    }
    for (int i = 1; i < 100; i += 2) {
      expected.add("k" + i);
    }
    for (int i = 0; i < 87; i++) {
      assertEquals(expected.get(i), q.poll());
    }
    q.trim();
    assertEquals(0, q.indexRebuilds(), "13 keys left of a peak of 100: more than an eighth");
    assertEquals(expected.get(87), q.poll());
    q.trim();
    assertEquals(1, q.indexRebuilds(), "12 keys left: rebuilt");
    assertTrue(q.indexLength() >= 2 * q.size(), "at most half full: " + q.indexLength());
    q.trim();
    assertEquals(1, q.indexRebuilds(), "the rebuilt index's peak is what it holds");

    // The rebuilt index finds every pending key: a merge keeps its place, a new key goes last.
    assertEquals("k89", q.peek("k89"));
    assertTrue(q.offer("k91", 1, "k91'", LATEST));
    assertFalse(q.offer("new", 1, "new", LATEST));
    assertEquals(13, q.size());
    List<String> rest = new ArrayList<>(expected.subList(88, 100));
    rest.set(rest.indexOf("k91"), "k91'");
    rest.add("new");
    assertEquals(rest, drain(q));
  }

  @Test
  void trimKeepsAnIndexThatNeverPassedTheBound() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>(16, 1);
    for (int round = 0; round < 3; round++) {
      for (int i = 0; i < 16; i++) {
        q.offer("k" + i, 0, "k" + i, LATEST);
      }
      drain(q);
      q.trim();
    }
    assertEquals(0, q.indexRebuilds());
    assertEquals(4_096, CoalescingQueue.RETAINED_INDEX);
    assertEquals(0, new CoalescingQueue<String, String>().indexRebuilds());
  }

  @Test
  void peekReturnsPendingEntryWithoutRemovingIt() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 2, "a1", CONCAT);
    q.offer("b", 1, "b1", CONCAT);
    assertEquals("a1", q.peek("a"));
    assertEquals("b1", q.peek("b"));
    assertNull(q.peek("c"));
    q.offer("a", 0, "a2", CONCAT);
    assertEquals("a1+a2", q.peek("a"));
    assertEquals(2, q.size());
    assertEquals("a1+a2", q.poll());
    assertNull(q.peek("a"));
    assertEquals("b1", q.peek("b"));
  }

  @Test
  void removeTakesOutOneKeyAndLeavesTheOrderOfTheRest() {
    CoalescingQueue<String, String> q = new CoalescingQueue<>();
    q.offer("a", 1, "a1", CONCAT);
    q.offer("b", 1, "b1", CONCAT);
    q.offer("c", 1, "c1", CONCAT);
    q.offer("d", 0, "d1", CONCAT);
    assertEquals("b1", q.remove("b"));
    assertNull(q.remove("b"));
    assertEquals("d1", q.remove("d")); // the only entry of its bucket
    assertEquals(2, q.size());
    assertEquals("a1", q.poll());
    assertEquals("c1", q.poll());
    assertNull(q.poll());
    q.offer("b", 1, "b2", CONCAT); // a removed key is new again
    assertEquals(1, q.size());
    assertEquals("b2", q.peek("b"));
  }

  // ---------------------------------------------------------------------------------------------
  // Property-style test against a reference model
  // ---------------------------------------------------------------------------------------------

  /**
   * The obvious, slow model: a map from key to (priority, entry, stamp); the head is the entry with
   * the smallest (priority, stamp). A first offer takes a fresh stamp; a merge keeps the stamp
   * unless it lowers the priority, in which case the entry takes a fresh stamp (the tail of the
   * lower bucket).
   */
  private static final class Model {
    private record Slot(int priority, String entry, long stamp) {}

    private final Map<Integer, Slot> slots = new HashMap<>();
    private long nextStamp;
    long offered;
    long coalesced;

    void offer(int key, int priority, String entry, BinaryOperator<String> merge) {
      offered++;
      Slot s = slots.get(key);
      if (s == null) {
        slots.put(key, new Slot(priority, entry, nextStamp++));
        return;
      }
      coalesced++;
      String merged = merge.apply(s.entry(), entry);
      if (priority < s.priority()) {
        slots.put(key, new Slot(priority, merged, nextStamp++));
      } else {
        slots.put(key, new Slot(s.priority(), merged, s.stamp()));
      }
    }

    String poll() {
      Map.Entry<Integer, Slot> head =
          slots.entrySet().stream()
              .min(
                  Comparator.comparingInt((Map.Entry<Integer, Slot> e) -> e.getValue().priority())
                      .thenComparingLong(e -> e.getValue().stamp()))
              .orElse(null);
      if (head == null) {
        return null;
      }
      slots.remove(head.getKey());
      return head.getValue().entry();
    }

    String peek(int key) {
      Slot s = slots.get(key);
      return s == null ? null : s.entry();
    }

    String remove(int key) {
      Slot s = slots.remove(key);
      return s == null ? null : s.entry();
    }

    void clear() {
      slots.clear();
    }

    int size() {
      return slots.size();
    }
  }

  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {1L, 2L, 3L, 42L, 1234L, 99_991L, -7L, 0x5EEDL, 20240601L, 8_675_309L})
  void matchesReferenceModel(long seed) {
    runAgainstModel(seed, id -> id);
  }

  /**
   * Keys whose hash codes collide share runs of the index, which wrap past its end from wherever
   * the queue's seed puts them: removals must shift the rest of a run back without losing a key.
   */
  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {5L, 17L, 4242L, -99L, 0xC0FFEEL})
  void matchesReferenceModelWhenHashCodesCollide(long seed) {
    runAgainstModel(seed, id -> id % 3);
    runAgainstModel(seed, id -> 7);
  }

  /** A key whose hash code is chosen by the test; equal by {@code id} alone. */
  private record Key(int id, int hash) {
    @Override
    public boolean equals(Object o) {
      return o instanceof Key k && k.id == id;
    }

    @Override
    public int hashCode() {
      return hash;
    }
  }

  private static void runAgainstModel(long seed, IntUnaryOperator hashOf) {
    Random rnd = new Random(seed);
    // A small bound, so that trims rebuild the index in the middle of the run.
    CoalescingQueue<Key, String> q = new CoalescingQueue<>(4, rnd.nextInt());
    Model m = new Model();
    int keys = 8 + rnd.nextInt(192);
    int priorities = 1 + rnd.nextInt(6);
    for (int step = 0; step < 3_000; step++) {
      String ctx = "seed " + seed + " step " + step;
      // Phases of 500 steps: the queue fills (60 % offers), then mostly drains (10 %).
      boolean draining = step / 500 % 2 == 1;
      int op = rnd.nextInt(100);
      if (op < (draining ? 10 : 60)) {
        int key = rnd.nextInt(keys);
        int priority = rnd.nextInt(priorities);
        String entry = key + "@" + step;
        q.offer(new Key(key, hashOf.applyAsInt(key)), priority, entry, CONCAT);
        m.offer(key, priority, entry, CONCAT);
      } else if (op < 85) {
        assertEquals(m.poll(), q.poll(), ctx + ": poll");
      } else if (op < 91) {
        int key = rnd.nextInt(keys);
        assertEquals(m.peek(key), q.peek(new Key(key, hashOf.applyAsInt(key))), ctx + ": peek " + key);
      } else if (op < 95) {
        int key = rnd.nextInt(keys);
        assertEquals(m.remove(key), q.remove(new Key(key, hashOf.applyAsInt(key))), ctx + ": remove " + key);
      } else if (op < 96) {
        if (!draining) { // a clear forgets the peak: none while a phase drains towards its trims
          q.clear();
          m.clear();
        }
      } else if (op < 98) {
        q.trim(); // the model has no index: nothing it answers may change
      } else {
        // drain a few in one go
        for (int i = rnd.nextInt(5); i > 0; i--) {
          assertEquals(m.poll(), q.poll(), ctx + ": burst poll");
        }
      }
      assertEquals(m.size(), q.size(), ctx + ": size");
      assertTrue(q.indexLength() >= 2 * q.size(), ctx + ": the index is at most half full");
      assertEquals(m.size() == 0, q.isEmpty(), ctx + ": isEmpty");
      assertEquals(m.offered, q.offered(), ctx + ": offered");
      assertEquals(m.coalesced, q.coalesced(), ctx + ": coalesced");
    }
    assertTrue(q.indexRebuilds() > 0, "seed " + seed + ": the run rebuilt the index");
    // final drain agrees entirely
    String expected;
    do {
      expected = m.poll();
      assertEquals(expected, q.poll(), "seed " + seed + ": final drain");
    } while (expected != null);
    assertTrue(q.isEmpty());
  }
}
