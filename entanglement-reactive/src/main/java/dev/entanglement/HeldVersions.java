package dev.entanglement;

import java.util.ArrayList;
import java.util.List;
import org.jspecify.annotations.Nullable;

/**
 * What a peer holds, per object: the newest {@link Version} of each key that was sent to it or
 * received from it ({@link Destination#held}).
 *
 * <p>Design: an open-addressing table with linear probing; the keys in one array, each version as
 * two {@code long}s in another. A node holds one such table per link, every state sent or received
 * updates it, and the table of a busy link has an entry for every object. Storing the version as
 * primitives means an update of a key already present writes no reference: a generational collector
 * has no card to dirty and refine, and no per-entry node or version object to copy. A key is
 * written once, when the peer first holds its object.
 *
 * <p>Invariants: {@code keys[i] == null} marks a free slot; every key is found by probing from its
 * home slot without crossing a free slot (removal shifts later entries back to keep this); the table
 * is at most three quarters full. Keys are compared by identity first: the engine keeps one key
 * instance per object, so a lookup rarely reads the key's strings.
 *
 * <p>Not thread-safe: confined to the engine's serial executor.
 */
final class HeldVersions {
  private static final int MIN_CAPACITY = 16;

  private @Nullable ObjectKey[] keys = new ObjectKey[MIN_CAPACITY];
  /** Epoch and serial of the key in slot {@code i} at {@code 2i} and {@code 2i + 1}. */
  private long[] versions = new long[2 * MIN_CAPACITY];
  private int size;

  /** Whether the peer holds {@code v} of {@code key} or a newer version. */
  boolean holdsAtLeast(ObjectKey key, Version v) {
    int i = find(key);
    return i >= 0 && compare(i, v) >= 0;
  }

  boolean containsKey(ObjectKey key) {
    return find(key) >= 0;
  }

  /**
   * Records that the peer holds {@code v} of {@code key} unless it holds that version or a newer
   * one; true if it was recorded (the peer held an older version, or none).
   */
  boolean putIfNewer(ObjectKey key, Version v) {
    int i = slotFor(key);
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

  /** The keys held, as a copy that may be iterated while this changes. */
  List<ObjectKey> keys() {
    List<ObjectKey> out = new ArrayList<>(size);
    for (ObjectKey k : keys) {
      if (k != null) {
        out.add(k);
      }
    }
    return out;
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

  /** The slot of {@code key}, or -1. */
  private int find(ObjectKey key) {
    int mask = keys.length - 1;
    for (int i = home(key, mask); ; i = (i + 1) & mask) {
      ObjectKey k = keys[i];
      if (k == null) {
        return -1;
      }
      if (k == key || k.equals(key)) {
        return i;
      }
    }
  }

  /** The slot of {@code key}; if it was absent, it is inserted and {@code ~slot} returned. */
  private int slotFor(ObjectKey key) {
    int mask = keys.length - 1;
    int i = home(key, mask);
    for (; ; i = (i + 1) & mask) {
      ObjectKey k = keys[i];
      if (k == null) {
        break;
      }
      if (k == key || k.equals(key)) {
        return i;
      }
    }
    if (4 * (size + 1) > 3 * keys.length) {
      grow();
      return slotFor(key);
    }
    keys[i] = key;
    size++;
    return ~i;
  }

  private void set(int i, Version v) {
    versions[2 * i] = v.epoch();
    versions[2 * i + 1] = v.serial();
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
