package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ObjectTableTest {
  private static final TypeBinding<Cursor> BINDING = new TypeBinding<>(TestMesh.CURSOR, TestMesh.registry());

  private static StoredState state(ObjectKey key, long serial) {
    return new StoredState(
        BINDING,
        new Snapshot<>(key, new Cursor(key.key(), (int) serial, 0), OwnerId.of("o"), new Version(1, serial), false, 0),
        null,
        null);
  }

  private static ObjectKey key(int i) {
    return new ObjectKey("Cursor", "k" + i);
  }

  @Test
  void emptyHoldsNothing() {
    ObjectTable t = new ObjectTable();
    assertNull(t.get(key(1)));
    assertFalse(t.containsKey(key(1)));
    assertNull(t.remove(key(1)));
    assertEquals(0, t.size());
    assertFalse(t.values().iterator().hasNext());
    assertThrows(NoSuchElementException.class, () -> t.values().iterator().next());
  }

  @Test
  @DisplayName("a put replaces the state of its key, found by an equal key of another instance")
  void putReplaces() {
    ObjectTable t = new ObjectTable();
    StoredState v1 = state(key(1), 1);
    StoredState v2 = state(key(1), 2);
    t.put(v1);
    t.put(v2);
    assertSame(v2, t.get(new ObjectKey("Cursor", "k1")));
    assertEquals(1, t.size());
    assertEquals(List.of(v2), List.copyOf(t.values()));
    assertSame(v2, t.remove(key(1)));
    assertNull(t.get(key(1)));
    assertEquals(0, t.size());
  }

  @Test
  @DisplayName("a state is marked in the table while it is its key's state, in both index modes")
  void inTableFollowsPutReplaceAndRemove() {
    ObjectTable t = new ObjectTable();
    List<ObjectKey> keys = new java.util.ArrayList<>(List.of(key(1)));
    keys.addAll(collidingKeys(ObjectTable.MAX_PROBE + 10)); // the last puts move the index to a map
    for (ObjectKey k : keys) {
      StoredState v1 = state(k, 1);
      assertFalse(v1.inTable);
      t.put(v1);
      assertTrue(v1.inTable);
      StoredState v2 = state(k, 2);
      t.put(v2);
      assertFalse(v1.inTable, "replaced");
      assertTrue(v2.inTable);
      t.put(v2);
      assertTrue(v2.inTable, "put again, still the table's");
    }
    assertTrue(t.indexIsMap());
    for (ObjectKey k : keys) {
      StoredState st = t.get(k);
      assertSame(st, t.remove(k));
      assertFalse(st.inTable, "removed");
    }
  }

  @Test
  @DisplayName("a removed key's slot is reused, and a stale slot never yields another key's state")
  void slotReuse() {
    ObjectTable t = new ObjectTable();
    t.put(state(key(1), 1));
    t.put(state(key(2), 1));
    t.remove(key(1));
    StoredState three = state(key(3), 1);
    t.put(three); // takes key 1's slot
    assertNull(t.get(key(1)));
    assertSame(three, t.get(key(3)));
    assertEquals(2, t.size());
    assertEquals(Set.of(key(2), key(3)), keys(t));
  }

  @Test
  @DisplayName("the writer may remove states while it iterates, as the engine does")
  void removeWhileIterating() {
    ObjectTable t = new ObjectTable();
    for (int i = 0; i < 200; i++) {
      t.put(state(key(i), 1));
    }
    int seen = 0;
    for (StoredState st : t.values()) {
      seen++;
      if (st.version().serial() == 1) {
        t.remove(st.key());
      }
    }
    assertEquals(200, seen);
    assertEquals(0, t.size());
    assertFalse(t.values().iterator().hasNext());
  }

  /**
   * Property: any seeded sequence of puts, replacements of a found state and removes leaves the
   * table equal to a map's.
   */
  @ParameterizedTest
  @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8})
  void agreesWithAMap(long seed) {
    Random random = new Random(seed);
    ObjectTable t = new ObjectTable();
    Map<ObjectKey, StoredState> model = new HashMap<>();
    for (int op = 0; op < 20_000; op++) {
      ObjectKey k = key(random.nextInt(random.nextBoolean() ? 50 : 3_000));
      if (random.nextInt(3) == 0) {
        assertSame(model.remove(k), t.remove(k));
      } else {
        StoredState st = state(k, op);
        StoredState current = model.get(k);
        if (current != null && random.nextBoolean()) {
          assertSame(current, t.replace(current, st)); // as a committer that found it does
        } else {
          t.put(st);
        }
        model.put(k, st);
      }
      if (op % 1_000 == 0) {
        assertEquals(model.size(), t.size());
        assertEquals(new HashSet<>(model.values()), new HashSet<>(t.values()));
      }
    }
    for (int i = 0; i < 3_000; i++) {
      assertSame(model.get(key(i)), t.get(key(i)));
    }
    assertEquals(model.size(), t.values().size());
  }

  @Test
  @DisplayName("a replacement of the found state takes its slot, in either index mode, and only of a state in the table")
  void replaceTakesTheSlotOfTheStateItReplaces() {
    ObjectTable t = new ObjectTable();
    List<ObjectKey> colliding = collidingKeys(ObjectTable.MAX_PROBE + 10);
    for (int round = 0; round < 2; round++) {
      ObjectKey k = round == 0 ? key(1) : colliding.get(0);
      StoredState v1 = state(k, 1);
      StoredState v2 = state(k, 2);
      t.put(v1);
      int size = t.size();
      assertSame(v1, t.replace(v1, v2));
      assertSame(v2, t.get(new ObjectKey(k.type(), k.key())));
      assertTrue(v2.inTable);
      assertFalse(v1.inTable);
      assertEquals(size, t.size());
      // v1 is no longer the table's: a committer holding it must look the key up instead.
      assertThrows(IllegalArgumentException.class, () -> t.replace(v1, state(k, 3)));
      assertThrows(IllegalArgumentException.class, () -> t.replace(v2, state(key(2), 3)));
      for (ObjectKey c : colliding) {
        t.put(state(c, 0)); // the second round replaces in MAP
      }
    }
    assertTrue(t.indexIsMap());
  }

  @ParameterizedTest
  @ValueSource(longs = {1, 2, 3})
  @DisplayName("prefetching the keys of present, absent and colliding hash codes changes nothing, in either index mode")
  void prefetchChangesNothing(long seed) {
    Random random = new Random(seed);
    ObjectTable t = new ObjectTable();
    Map<ObjectKey, StoredState> model = new HashMap<>();
    List<ObjectKey> colliding = collidingKeys(ObjectTable.MAX_PROBE + 10);
    for (int round = 0; round < 2; round++) {
      for (int i = 0; i < 2_000; i++) {
        StoredState st = state(key(random.nextInt(3_000)), i);
        t.put(st);
        model.put(st.key(), st);
      }
      int[] hashes = new int[ObjectTable.MAX_PROBE];
      for (int i = 0; i < hashes.length; i++) {
        hashes[i] = random.nextBoolean() ? key(random.nextInt(6_000)).hashCode() : random.nextInt();
      }
      hashes[0] = colliding.get(0).hashCode();
      t.prefetch(hashes, hashes.length);
      t.prefetch(hashes, 0);
      assertEquals(model.size(), t.size());
      for (int i = 0; i < 6_000; i++) {
        assertSame(model.get(key(i)), t.get(key(i)));
      }
      for (ObjectKey k : colliding) { // the second round prefetches in MAP
        StoredState st = state(k, round);
        t.put(st);
        model.put(k, st);
      }
    }
    assertTrue(t.indexIsMap());
  }

  @Test
  @DisplayName("an iterator made before the array grows keeps to that array: weakly consistent, never broken")
  void iteratorSurvivesGrowth() {
    ObjectTable t = new ObjectTable();
    for (int i = 0; i < 10; i++) {
      t.put(state(key(i), 1));
    }
    Iterator<StoredState> it = t.values().iterator();
    for (int i = 10; i < 1_000; i++) {
      t.put(state(key(i), 1));
    }
    Set<ObjectKey> seen = new HashSet<>();
    it.forEachRemaining(st -> assertTrue(seen.add(st.key()), "each once"));
    for (int i = 0; i < 10; i++) {
      assertTrue(seen.contains(key(i)), "present when the iterator was made: " + i);
    }
    assertFalse(seen.contains(key(999)), "put after the growth, into the new array");
  }

  /**
   * Race: readers on other threads, while the writer replaces some keys and keeps swapping others
   * in and out of one slot each (removing one key and putting another into its slot), never see a
   * state of another key, and see every key that is never removed, never going back in version.
   */
  @Test
  void readersDuringWrites() throws Exception {
    ObjectTable t = new ObjectTable();
    int stable = 32;
    int pairs = 32;
    ObjectKey[] keys = new ObjectKey[stable + 2 * pairs];
    for (int i = 0; i < keys.length; i++) {
      keys[i] = key(i);
    }
    for (int i = 0; i < stable + pairs; i++) { // stable keys, and the first key of each pair
      t.put(state(keys[i], 0));
    }
    Readers readers =
        new Readers(
            2,
            (r, stop) -> {
              long[] lastSeen = new long[stable];
              for (int n = 0; n < 2_000_000 && !stop.getAsBoolean(); n++) {
                int i = n % keys.length;
                StoredState st = t.get(keys[i]);
                if (st != null && !st.key().equals(keys[i])) {
                  throw new AssertionError("got " + st.key() + " for " + keys[i]);
                }
                if (i < stable) {
                  if (st == null) {
                    throw new AssertionError(keys[i] + " was never removed");
                  }
                  if (st.version().serial() < lastSeen[i]) {
                    throw new AssertionError(keys[i] + " went back");
                  }
                  lastSeen[i] = st.version().serial();
                }
              }
              for (StoredState st : t.values()) {
                if (st == null) {
                  throw new AssertionError("null from the iterator");
                }
              }
            });
    // Bounded: the readers finish their lookups long before this many rounds on any machine.
    for (int round = 1; round <= 5_000_000 && readers.running(); round++) {
      for (int i = 0; i < stable; i++) {
        t.put(state(keys[i], round));
      }
      for (int j = 0; j < pairs; j++) {
        ObjectKey out = keys[stable + 2 * j + (round % 2 == 1 ? 0 : 1)];
        ObjectKey in = keys[stable + 2 * j + (round % 2 == 1 ? 1 : 0)];
        t.remove(out);
        t.put(state(in, round)); // takes the slot just freed
      }
    }
    readers.finish(30);
    assertEquals(stable + pairs, t.size());
  }

  /** {@code n} distinct keys of one hash code: strings of "Aa" and "BB" blocks hash alike. */
  private static List<ObjectKey> collidingKeys(int n) {
    List<ObjectKey> keys = new java.util.ArrayList<>();
    for (int i = 0; i < n; i++) {
      StringBuilder b = new StringBuilder();
      for (int bit = 0; bit < 12; bit++) {
        b.append((i >> bit & 1) == 0 ? "Aa" : "BB");
      }
      keys.add(new ObjectKey("Cursor", b.toString()));
    }
    return keys;
  }

  @Test
  @DisplayName("keys of one hash code move the index to a map once a probe would pass the bound; nothing is lost")
  void collidingKeysMoveTheIndexToAMap() {
    ObjectTable t = new ObjectTable();
    for (int i = 0; i < 100; i++) {
      t.put(state(key(i), 1));
    }
    List<ObjectKey> colliding = collidingKeys(ObjectTable.MAX_PROBE + 100);
    assertEquals(1, colliding.stream().mapToInt(ObjectKey::hashCode).distinct().count());
    // Each colliding key probes past those before it, and past any of the 100 others that lie in
    // their run: below this many, no probe can pass the bound.
    int safe = ObjectTable.MAX_PROBE - 101;
    for (int i = 0; i < safe; i++) {
      t.put(state(colliding.get(i), 1));
    }
    assertFalse(t.indexIsMap(), "no probe has passed the bound yet");
    for (int i = safe; i < colliding.size(); i++) {
      t.put(state(colliding.get(i), 1));
    }
    assertTrue(t.indexIsMap());
    for (ObjectKey k : colliding) {
      t.put(state(k, 2)); // replaced in place, through the map
    }
    assertEquals(100 + colliding.size(), t.size());
    for (int i = 0; i < 100; i++) {
      assertEquals(1, t.get(key(i)).version().serial());
    }
    for (ObjectKey k : colliding) {
      assertEquals(2, t.get(new ObjectKey(k.type(), new String(k.key()))).version().serial());
    }
    assertSame(t.get(colliding.get(7)), t.remove(colliding.get(7)));
    assertNull(t.get(colliding.get(7)));
    StoredState back = state(colliding.get(7), 3);
    t.put(back);
    assertSame(back, t.get(colliding.get(7)));
    assertEquals(100 + colliding.size(), t.values().size());
  }

  @Test
  @DisplayName("a key removed and put again, over and over, takes back its entry: its run does not grow, the index stays a table, nothing else is lost")
  void aChurnedKeyReusesItsEntry() {
    ObjectTable t = new ObjectTable();
    for (int i = 0; i < 2_000; i++) {
      t.put(state(key(i), 1));
    }
    // Before the fix each cycle left a tombstone and put the key past it: the index moved to a
    // map after 389 cycles (review, session 30).
    for (int cycle = 0; cycle < 5 * ObjectTable.MAX_PROBE; cycle++) {
      assertEquals(cycle + 1, t.remove(key(7)).version().serial());
      assertNull(t.get(key(7)));
      t.put(state(key(7), cycle + 2));
      assertFalse(t.indexIsMap(), "the index moved to a map after " + cycle + " cycles");
    }
    assertEquals(2_000, t.size());
    assertEquals(5 * ObjectTable.MAX_PROBE + 1, t.get(key(7)).version().serial());
    for (int i = 0; i < 2_000; i++) {
      assertEquals(i == 7 ? 5 * ObjectTable.MAX_PROBE + 1 : 1, t.get(key(i)).version().serial(), "key " + i);
    }
    // Removing many keys and putting others: tombstones are reused or rebuilt away, never lost.
    Random random = new Random(30);
    Map<Integer, Long> model = new HashMap<>();
    for (int i = 0; i < 2_000; i++) {
      model.put(i, i == 7 ? 5L * ObjectTable.MAX_PROBE + 1 : 1L);
    }
    for (int op = 0; op < 50_000; op++) {
      int k = random.nextInt(4_000);
      if (random.nextBoolean()) {
        StoredState removed = t.remove(key(k));
        Long expected = model.remove(k);
        assertEquals(expected, removed == null ? null : removed.version().serial(), "remove " + k);
      } else {
        t.put(state(key(k), op + 10));
        model.put(k, (long) op + 10);
      }
    }
    assertFalse(t.indexIsMap());
    assertEquals(model.size(), t.size());
    for (int k = 0; k < 4_000; k++) {
      StoredState st = t.get(key(k));
      assertEquals(model.get(k), st == null ? null : st.version().serial(), "key " + k);
    }
  }

  /**
   * Race: readers look up keys while the writer keeps adding new ones, so that both the states
   * array and the index are replaced many times under them. A key put before a lookup began is
   * always found, a key being added is found or not but never mistaken for another, and no lookup
   * fails.
   */
  @Test
  void readersDuringGrowth() throws Exception {
    ObjectTable t = new ObjectTable();
    int total = 200_000;
    ObjectKey[] keys = new ObjectKey[total];
    for (int i = 0; i < total; i++) {
      keys[i] = key(i);
    }
    java.util.concurrent.atomic.AtomicInteger added = new java.util.concurrent.atomic.AtomicInteger();
    Readers readers =
        new Readers(
            2,
            (r, stop) -> {
              Random random = new Random(r);
              for (int n = 0; n < 1_000_000 && !stop.getAsBoolean(); n++) {
                int before = added.get();
                if (before > 0) {
                  ObjectKey k = keys[random.nextInt(before)];
                  StoredState st = t.get(k);
                  if (st == null || !st.key().equals(k)) {
                    throw new AssertionError(k + " was put before the lookup, got " + st);
                  }
                }
                int frontier = Math.min(total - 1, before + random.nextInt(8));
                StoredState st = t.get(keys[frontier]);
                if (st != null && !st.key().equals(keys[frontier])) {
                  throw new AssertionError("got " + st.key() + " for " + keys[frontier]);
                }
              }
            });
    for (int i = 0; i < total; i++) {
      t.put(state(keys[i], 1));
      added.set(i + 1);
    }
    readers.finish(60);
    assertEquals(total, t.size());
  }

  /** What a reader thread runs; {@code stop} turns true once any reader failed. */
  private interface ReaderBody {
    void run(int reader, java.util.function.BooleanSupplier stop) throws Exception;
  }

  /** Daemon reader threads, started at once; the first failure is kept and rethrown by finish. */
  private static final class Readers {
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private final CountDownLatch done;

    Readers(int count, ReaderBody body) throws InterruptedException {
      CountDownLatch started = new CountDownLatch(count);
      done = new CountDownLatch(count);
      for (int r = 0; r < count; r++) {
        int reader = r;
        Thread t =
            new Thread(
                () -> {
                  try {
                    started.countDown();
                    body.run(reader, () -> failure.get() != null);
                  } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                  } finally {
                    done.countDown();
                  }
                });
        t.setDaemon(true);
        t.start();
      }
      assertTrue(started.await(10, TimeUnit.SECONDS));
    }

    boolean running() {
      return done.getCount() > 0;
    }

    void finish(long seconds) throws InterruptedException {
      assertTrue(done.await(seconds, TimeUnit.SECONDS), "readers finished");
      if (failure.get() != null) {
        throw new AssertionError(failure.get());
      }
    }
  }

  private static Set<ObjectKey> keys(ObjectTable t) {
    Set<ObjectKey> keys = new HashSet<>();
    t.values().forEach(st -> keys.add(st.key()));
    return keys;
  }
}
