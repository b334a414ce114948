package dev.entanglement;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.jspecify.annotations.Nullable;

/**
 * What a peer holds, per object: the newest {@link Version} of each key that was sent to it or
 * received from it ({@link Destination#held}).
 *
 * <p>Design: an open-addressing table with linear probing; the keys in one array, each version as
 * two {@code long}s in another. A node holds one such table per link, every state sent or received
 * updates it (unless the object's state stands for the entry instead, see {@link
 * StoredState#holder}), and the table of a busy link has an entry for every object. Storing the
 * version as primitives means an update of a key already present writes no reference: a
 * generational collector has no card to dirty and refine, and no per-entry node or version object
 * to copy. A key is written once, when the peer first holds its object.
 *
 * <p>Keys come from peers, and a peer can choose many keys of one hash code (strings made of "Aa"
 * and "BB" hash alike): in a probing table they share one run, and each operation would walk all of
 * it. So no operation probes more than {@value #MAX_PROBE} slots: the first that would moves every
 * entry to a {@link HashMap}, whose crowded bins become trees ({@link ObjectKey} is comparable),
 * and the table serves through it from then on. Benign keys never come near the bound: the longest
 * probe measured for up to 1.5 million sequential keys was about 240 slots.
 *
 * <p>State machine: {@code TABLE} → {@code MAP} (on the first operation that would probe too far;
 * terminal). Invariants in {@code TABLE}: {@code keys[i] == null} marks a free slot; every key is
 * found by probing from its home slot without crossing a free slot (removal shifts later entries
 * back to keep this); the table is at most three quarters full. Keys are compared by identity first:
 * the engine keeps one key instance per object, so a lookup rarely reads the key's strings.
 *
 * <p>Not thread-safe: confined to the engine's serial executor.
 */
final class HeldVersions {
  private static final int MIN_CAPACITY = 16;
  /** Slots an operation may probe before the entries move to {@link #map}: 1,024. */
  static final int MAX_PROBE = 1024;
  /** What {@link #find} and {@link #slotFor} return once the entries are in the map. */
  private static final int MOVED = Integer.MIN_VALUE;

  private @Nullable ObjectKey[] keys = new ObjectKey[MIN_CAPACITY];
  /** Epoch and serial of the key in slot {@code i} at {@code 2i} and {@code 2i + 1}. */
  private long[] versions = new long[2 * MIN_CAPACITY];
  private int size;
  /** Every entry, once an operation would have probed more than {@link #MAX_PROBE} slots. */
  private @Nullable Map<ObjectKey, Version> map;

  /** Whether the peer holds {@code v} of {@code key} or a newer version. */
  boolean holdsAtLeast(ObjectKey key, Version v) {
    int i = find(key);
    if (i != MOVED) {
      return i >= 0 && compare(i, v) >= 0;
    }
    Version held = movedMap().get(key);
    return held != null && held.compareTo(v) >= 0;
  }

  boolean containsKey(ObjectKey key) {
    int i = find(key);
    return i != MOVED ? i >= 0 : movedMap().containsKey(key);
  }

  /**
   * Records that the peer holds {@code v} of {@code key} unless it holds that version or a newer
   * one; true if it was recorded (the peer held an older version, or none).
   */
  boolean putIfNewer(ObjectKey key, Version v) {
    int i = slotFor(key);
    if (i == MOVED) {
      Map<ObjectKey, Version> m = movedMap();
      Version held = m.get(key);
      if (held != null && held.compareTo(v) >= 0) {
        return false;
      }
      m.put(key, v);
      return true;
    }
    if (i < 0) {
      set(~i, v);
      return true;
    }
    if (compare(i, v) < 0) {
      set(i, v);
      return true;
    }
    return false;
  }

  /** Forgets {@code key}, if held. */
  void remove(ObjectKey key) {
    int i = find(key);
    if (i == MOVED) {
      movedMap().remove(key);
      return;
    }
    if (i < 0) {
      return;
    }
    int mask = keys.length - 1;
    // Backward-shift deletion: move later entries of the probe run into the gap when their home
    // slot does not lie cyclically within (gap, j].
    int gap = i;
    for (int j = (i + 1) & mask; keys[j] != null; j = (j + 1) & mask) {
      int home = home(keys[j], mask);
      boolean between = gap <= j ? gap < home && home <= j : gap < home || home <= j;
      if (!between) {
        keys[gap] = keys[j];
        versions[2 * gap] = versions[2 * j];
        versions[2 * gap + 1] = versions[2 * j + 1];
        gap = j;
      }
    }
    keys[gap] = null;
    size--;
  }

  /**
   * The keys held, as a copy that may be iterated while this changes. The engine enumerates what a
   * link holds through the objects it dropped instead (a bounded set); tests compare this with a
   * model.
   */
  List<ObjectKey> keys() {
    if (map != null) {
      return new ArrayList<>(map.keySet());
    }
    List<ObjectKey> out = new ArrayList<>(size);
    for (ObjectKey k : keys) {
      if (k != null) {
        out.add(k);
      }
    }
    return out;
  }

  /** Whether the entries moved to a map (see the class note). */
  boolean movedToMap() {
    return map != null;
  }

  private Map<ObjectKey, Version> movedMap() {
    Map<ObjectKey, Version> m = map;
    if (m == null) {
      throw new IllegalStateException("entries are in the table");
    }
    return m;
  }

  private int compare(int i, Version v) {
    int c = Long.compare(versions[2 * i], v.epoch());
    return c != 0 ? c : Long.compare(versions[2 * i + 1], v.serial());
  }

  /** Where probing for {@code key} starts: its hash, mixed so that similar keys spread. */
  private static int home(ObjectKey key, int mask) {
    int h = key.hashCode() * 0x9E3779B9;
    return (h ^ (h >>> 16)) & mask;
  }

  /**
   * The slot of {@code key} if it is held; else {@code ~slot} of the free slot that ends its probe
   * run, where it would go; or {@link #MOVED} if the entries are in the map (moving them there
   * if this probe would go too far).
   */
  private int probe(ObjectKey key) {
    if (map != null) {
      return MOVED;
    }
    int mask = keys.length - 1;
    int i = home(key, mask);
    for (int probes = 0; ; i = (i + 1) & mask) {
      ObjectKey k = keys[i];
      if (k == null) {
        return ~i;
      }
      if (k == key || k.equals(key)) {
        return i;
      }
      if (++probes > MAX_PROBE) {
        moveToMap();
        return MOVED;
      }
    }
  }

  /** The slot of {@code key}, -1 if absent, or {@link #MOVED}. */
  private int find(ObjectKey key) {
    int i = probe(key);
    return i >= 0 || i == MOVED ? i : -1;
  }

  /**
   * The slot of {@code key}; if it was absent, it is inserted and {@code ~slot} returned; or {@link
   * #MOVED}, and it is not inserted.
   */
  private int slotFor(ObjectKey key) {
    int i = probe(key);
    if (i >= 0 || i == MOVED) {
      return i;
    }
    if (4 * (size + 1) > 3 * keys.length) {
      grow();
      return slotFor(key);
    }
    keys[~i] = key;
    size++;
    return i;
  }

  private void set(int i, Version v) {
    versions[2 * i] = v.epoch();
    versions[2 * i + 1] = v.serial();
  }

  private void moveToMap() {
    Map<ObjectKey, Version> m = new HashMap<>(2 * size);
    for (int i = 0; i < keys.length; i++) {
      ObjectKey k = keys[i];
      if (k != null) {
        m.put(k, new Version(versions[2 * i], versions[2 * i + 1]));
      }
    }
    map = m;
    keys = new ObjectKey[0];
    versions = new long[0];
    size = 0;
  }

  private void grow() {
    ObjectKey[] oldKeys = keys;
    long[] oldVersions = versions;
    keys = new ObjectKey[oldKeys.length * 2];
    versions = new long[oldVersions.length * 2];
    int mask = keys.length - 1;
    for (int j = 0; j < oldKeys.length; j++) {
      ObjectKey k = oldKeys[j];
      if (k != null) {
        int i = home(k, mask);
        while (keys[i] != null) {
          i = (i + 1) & mask;
        }
        keys[i] = k;
        versions[2 * i] = oldVersions[2 * j];
        versions[2 * i + 1] = oldVersions[2 * j + 1];
      }
    }
  }
}
