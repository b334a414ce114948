package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class HeldVersionsTest {

  /** {@code 2^blocks} keys of one hash code: every string of "Aa" and "BB" blocks hashes alike. */
  static ObjectKey[] keysOfOneHashCode(int blocks) {
    ObjectKey[] keys = new ObjectKey[1 << blocks];
    for (int m = 0; m < keys.length; m++) {
      StringBuilder sb = new StringBuilder();
      for (int b = 0; b < blocks; b++) {
        sb.append((m >> b & 1) == 0 ? "Aa" : "BB");
      }
      keys[m] = new ObjectKey("T", sb.toString());
    }
    return keys;
  }

  @Test
  void emptyHoldsNothing() {
    HeldVersions held = new HeldVersions();
    ObjectKey k = new ObjectKey("T", "a");
    assertFalse(held.containsKey(k));
    assertFalse(held.holdsAtLeast(k, new Version(0, 0)));
    assertEquals(List.of(), held.keys());
    held.remove(k); // absent: nothing to do
    assertEquals(List.of(), held.keys());
  }

  @Test
  void keepsTheNewerVersion() {
    HeldVersions held = new HeldVersions();
    ObjectKey k = new ObjectKey("T", "a");
    assertTrue(held.putIfNewer(k, new Version(1, 5)));
    assertFalse(held.putIfNewer(k, new Version(1, 5)), "the same version is not newer");
    assertFalse(held.putIfNewer(k, new Version(1, 4)));
    assertFalse(held.putIfNewer(k, new Version(0, 99)), "an older epoch is older, whatever its serial");
    assertTrue(held.holdsAtLeast(k, new Version(1, 5)));
    assertFalse(held.holdsAtLeast(k, new Version(1, 6)));
    assertTrue(held.putIfNewer(k, new Version(2, 0)));
    assertTrue(held.holdsAtLeast(k, new Version(1, 99)));
  }

  @Test
  void extremeVersionsAreStoredExactly() {
    HeldVersions held = new HeldVersions();
    ObjectKey k = new ObjectKey("T", "a");
    assertTrue(held.putIfNewer(k, new Version(Long.MIN_VALUE, Long.MIN_VALUE)));
    assertTrue(held.containsKey(k));
    assertTrue(held.holdsAtLeast(k, new Version(Long.MIN_VALUE, Long.MIN_VALUE)));
    assertFalse(held.holdsAtLeast(k, new Version(Long.MIN_VALUE, Long.MIN_VALUE + 1)));
    assertTrue(held.putIfNewer(k, new Version(Long.MAX_VALUE, Long.MAX_VALUE)));
    assertTrue(held.holdsAtLeast(k, new Version(Long.MAX_VALUE, Long.MAX_VALUE)));
  }

  @Test
  void anEqualKeyInstanceFindsTheEntry() {
    HeldVersions held = new HeldVersions();
    held.putIfNewer(new ObjectKey("T", "a"), new Version(1, 1));
    ObjectKey other = new ObjectKey("T", "a");
    assertTrue(held.containsKey(other));
    assertFalse(held.putIfNewer(other, new Version(1, 1)));
    held.remove(other);
    assertFalse(held.containsKey(new ObjectKey("T", "a")));
  }

  /**
   * Random operations against a plain map, over few distinct keys (so entries are replaced and
   * removed often) that include keys of equal hash codes ("Aa" and "BB" hash alike), through
   * several resizes. Removal must keep every other key findable (backward shifting in probe runs).
   */
  @ParameterizedTest
  @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8, 42, 2026})
  void behavesAsAMapOfNewestVersions(long seed) {
    Random random = new Random(seed);
    HeldVersions held = new HeldVersions();
    Map<ObjectKey, Version> model = new HashMap<>();
    // Half the seeds draw from more keys of one hash code than an operation may probe: the
    // entries move to the map part way through the run.
    ObjectKey[] colliding = keysOfOneHashCode(seed % 2 == 0 ? 11 : 2);
    int distinct = 1 + random.nextInt(400);
    for (int op = 0; op < 20_000; op++) {
      ObjectKey key = random.nextInt(4) == 0
          ? new ObjectKey("T", colliding[random.nextInt(colliding.length)].key())
          : new ObjectKey(random.nextBoolean() ? "T" : "U", "k" + random.nextInt(distinct));
      Version v = new Version(random.nextInt(3), random.nextInt(50));
      switch (random.nextInt(5)) {
        case 0, 1 -> {
          Version cur = model.get(key);
          boolean newer = cur == null || v.isNewerThan(cur);
          assertEquals(newer, held.putIfNewer(key, v), "putIfNewer " + key + " " + v + " over " + cur);
          if (newer) {
            model.put(key, v);
          }
        }
        case 2 -> {
          held.remove(key);
          model.remove(key);
        }
        case 3 -> assertEquals(model.containsKey(key), held.containsKey(key), "containsKey " + key);
        default -> {
          Version cur = model.get(key);
          assertEquals(cur != null && cur.compareTo(v) >= 0, held.holdsAtLeast(key, v),
              "holdsAtLeast " + key + " " + v + " held " + cur);
        }
      }
      if (op % 1_000 == 0) {
        assertEquals(model.keySet(), new HashSet<>(held.keys()), "keys after " + op + " operations");
      }
    }
    assertEquals(model.keySet(), new HashSet<>(held.keys()));
    assertEquals(model.size(), held.keys().size(), "no key listed twice");
    for (Map.Entry<ObjectKey, Version> e : model.entrySet()) {
      assertTrue(held.holdsAtLeast(e.getKey(), e.getValue()));
      Version next = new Version(e.getValue().epoch(), e.getValue().serial() + 1);
      assertFalse(held.holdsAtLeast(e.getKey(), next), "holds exactly " + e.getValue());
    }
  }

  @Test
  void manyKeysAndTheirRemoval() {
    HeldVersions held = new HeldVersions();
    int n = 100_000;
    ObjectKey[] keys = new ObjectKey[n];
    for (int i = 0; i < n; i++) {
      keys[i] = new ObjectKey("T", "key-" + i);
      assertTrue(held.putIfNewer(keys[i], new Version(1, i)));
    }
    assertEquals(n, held.keys().size());
    for (int i = 0; i < n; i += 2) {
      held.remove(keys[i]);
    }
    for (int i = 0; i < n; i++) {
      assertEquals(i % 2 == 1, held.containsKey(keys[i]), "key " + i);
    }
    assertEquals(n / 2, held.keys().size());
    assertFalse(held.movedToMap(), "benign keys stay in the table");
  }

  @Test
  void keysOfOneHashCodeMoveTheEntriesToAMap() {
    ObjectKey[] keys = keysOfOneHashCode(12);
    assertEquals(keys[0].hashCode(), keys[keys.length - 1].hashCode());
    HeldVersions held = new HeldVersions();
    ObjectKey other = new ObjectKey("U", "other");
    held.putIfNewer(other, new Version(1, 1));
    for (int i = 0; i < keys.length; i++) {
      assertTrue(held.putIfNewer(keys[i], new Version(1, i)));
      // A peer's colliding keys cost each operation at most MAX_PROBE probes, then a tree's (one
      // slot more when the other key lies in their run).
      if (i < HeldVersions.MAX_PROBE) {
        assertFalse(held.movedToMap(), "after key " + i);
      } else if (i > HeldVersions.MAX_PROBE + 1) {
        assertTrue(held.movedToMap(), "after key " + i);
      }
    }
    for (int i = 0; i < keys.length; i++) {
      assertTrue(held.holdsAtLeast(keys[i], new Version(1, i)));
      assertFalse(held.holdsAtLeast(keys[i], new Version(1, i + 1)));
      assertFalse(held.putIfNewer(keys[i], new Version(1, i)));
    }
    assertTrue(held.containsKey(other), "entries held before the move are kept");
    assertTrue(held.holdsAtLeast(other, new Version(1, 1)));
    for (int i = 0; i < keys.length; i += 2) {
      held.remove(keys[i]);
    }
    assertEquals(keys.length / 2 + 1, held.keys().size());
    assertFalse(held.containsKey(keys[0]));
    assertTrue(held.containsKey(keys[1]));
  }
}
