package dev.entanglement;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.AbstractCollection;
import java.util.Arrays;
import java.util.Collection;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import org.jspecify.annotations.Nullable;

/**
 * The current state of every object a node holds ({@code Engine.objects}): one writer, the
 * engine's serial executor, and any number of readers on other threads ({@code
 * EntanglementNode.get}).
 *
 * <p>Design: the states sit in one array, by slot; a slot is assigned when a key is first put and
 * never changes while the key is present. The engine replaces an object's state on every version
 * it commits or receives, so this table takes one write per version; in the array the writes of
 * many versions share a card (128 slots with compressed references), where a map's entries,
 * scattered over the old generation, would each mark a card for a generational collector (G1) to
 * refine and scan (about a third of a receiver's CPU at 250,000 versions/s, before this design).
 *
 * <p>An index finds a key's slot: an open-addressing table with linear probing, each entry one
 * {@code long} holding the key's hash (high word) and its slot plus one (low word). A lookup reads
 * the index entry, the state in its slot and the state's key: three objects, where a concurrent
 * map's lookup also reads its node and the boxed slot number, and on a node of 100,000 objects
 * every one of them is a cache miss (the first lookup of a version was a fifth of an owner's
 * per-state work). Hashes are mixed with a per-table random seed, so a peer cannot aim keys at
 * neighbouring entries; keys of one hash code (strings made of "Aa" and "BB" hash alike) still
 * share one run, so an insert that would probe more than {@value #MAX_PROBE} entries moves the
 * index, for good, to a {@link ConcurrentHashMap} from key to slot, whose crowded bins become
 * trees ({@link ObjectKey} is comparable). The price of a fixed bound is that mode's slower
 * lookups, on a node that meets such keys. Memory: the index is a quarter to half full, 16 to 32
 * bytes per object, and the states array 4 to 8 (compressed references), where a concurrent map
 * took about 50 (its node, table slot and boxed slot number).
 *
 * <p>State machine: {@code TABLE} → {@code MAP} (on the first insert that would probe too far;
 * terminal). Invariants in {@code TABLE}: an entry is {@code 0} (empty), {@link #TOMBSTONE} (a
 * removed key: lookups probe past it) or a key's hash and slot; every present key is found by
 * probing from its home without crossing an empty entry; entries and tombstones fill at most half
 * of the index. An insert takes the first tombstone on its key's path, or else the empty entry
 * that ends the path: a key removed and put again, over and over (a peer withdrawing and sending
 * one object), takes back its own entry instead of lengthening its run until the index moved to
 * the map for good (found by review, session 30). The other tombstones go when the index is
 * rebuilt. In both modes: a free slot holds null and is on the free list; slots in use are below
 * {@link #used}; the state in a slot has {@link StoredState#inTable} set, and a state the table
 * replaced or removed has it cleared (by the writer, which alone reads it).
 *
 * <p>Readers load {@link #tables} once, then the entry, then the slot (acquire loads, matched by
 * the writer's release stores): the writer stores a state before the entry that points to it, and
 * never changes an index array once it published a newer one, so a reader sees either the key
 * absent or its slot. It checks the state's key, since the writer may have removed the key and
 * given the slot to another in between, and the slot's bound, since a slot added after the reader
 * loaded {@link #tables} may lie past its copy of the states array; in both cases it reports the
 * key absent, which was true at some point of its call. A reader holding a replaced states array
 * sees the states as they were when it was copied.
 */
final class ObjectTable {
  private static final VarHandle STATE = MethodHandles.arrayElementVarHandle(StoredState[].class);
  private static final VarHandle ENTRY = MethodHandles.arrayElementVarHandle(long[].class);
  private static final int MIN_STATES = 64;
  /**
   * Entries an insert may probe before the index moves to a map: 512. At most half full, a probing
   * table of ten million random keys has runs of about 85 entries at the longest.
   */
  static final int MAX_PROBE = 512;
  /** A removed key's entry: no slot (low word 0), not empty. */
  private static final long TOMBSTONE = 1L << 32;

  /**
   * What a reader loads at once: the index (null in {@code MAP}), the map it moved to (null in
   * {@code TABLE}) and the states it points into.
   */
  private record Tables(
      long @Nullable [] index,
      @Nullable ConcurrentHashMap<ObjectKey, Integer> map,
      StoredState[] states) {}

  private final int seed = ThreadLocalRandom.current().nextInt();
  private volatile Tables tables = new Tables(new long[2 * MIN_STATES], null, new StoredState[MIN_STATES]);
  /** Slots below this were assigned at least once; writer only. */
  private int used;
  /** Slots given back by removals, reused before {@link #used} grows; writer only. */
  private int[] free = new int[16];
  private int freeCount;
  /** Tombstones in the index; writer only. */
  private int tombstones;
  private volatile int size;
  /** What {@link #prefetch} read last, kept so that its reads are not dead code; never read. */
  @SuppressWarnings("unused")
  private int prefetched;

  /** The state of {@code key}, or null; any thread. */
  @Nullable StoredState get(ObjectKey key) {
    Tables t = tables;
    long[] index = t.index;
    if (index == null) {
      Integer slot = t.map.get(key);
      return slot == null ? null : stateIn(t.states, slot, key);
    }
    int h = hash(key);
    int mask = index.length - 1;
    for (int i = h & mask, probed = 0; probed < index.length; i = (i + 1) & mask, probed++) {
      long e = (long) ENTRY.getAcquire(index, i);
      if (e == 0) {
        return null;
      }
      if ((int) (e >>> 32) == h && (int) e != 0) {
        StoredState st = stateIn(t.states, (int) e - 1, key);
        if (st != null) {
          return st;
        }
      }
    }
    return null;
  }

  private static @Nullable StoredState stateIn(StoredState[] states, int slot, ObjectKey key) {
    if (slot >= states.length) {
      return null;
    }
    StoredState st = (StoredState) STATE.getAcquire(states, slot);
    return st != null && st.key().equals(key) ? st : null; // equals tests identity first
  }

  /**
   * Reads, for each of the first {@code n} key hash codes, the key's index entry and the state,
   * key, key text and version it leads to, and changes nothing: the engine calls it with the keys of a burst of received
   * states before it applies any of them. On a node of many objects each of those reads is a cache
   * miss; issued together, independent of each other, they overlap, where one lookup at a time
   * waits for each in turn (about 180 ns per state at 100,000 objects, see BENCHMARKS.md §3). Only
   * a key's home entry is read: one that lies further along its run is found by its lookup. The
   * writer's thread; in {@code MAP} it does nothing.
   */
  void prefetch(int[] keyHashCodes, int n) {
    Tables t = tables;
    long[] index = t.index;
    if (index == null) {
      return;
    }
    int mask = index.length - 1;
    int[] slots = new int[n];
    for (int i = 0; i < n; i++) {
      int h = mix(keyHashCodes[i]);
      long e = (long) ENTRY.getAcquire(index, h & mask);
      slots[i] = (int) (e >>> 32) == h ? (int) e - 1 : -1;
    }
    StoredState[] states = t.states;
    int sum = 0;
    for (int slot : slots) {
      if (slot >= 0 && slot < states.length) {
        StoredState st = (StoredState) STATE.getAcquire(states, slot);
        if (st != null) {
          // The key's text (its equality test reads it) and the version (the apply compares it).
          String key = st.key().key();
          sum += key.isEmpty() ? 0 : key.charAt(0);
          sum += (int) st.snapshot.version().serial();
        }
      }
    }
    prefetched = sum;
  }

  boolean containsKey(ObjectKey key) {
    return get(key) != null;
  }

  /** Makes {@code st} the state of its key; returns the state it replaced, if any; the writer only. */
  @Nullable StoredState put(StoredState st) {
    ObjectKey key = st.key();
    Tables t = tables;
    long[] index = t.index;
    if (index == null) {
      Integer slot = t.map.get(key);
      if (slot != null) {
        return replace(t.states, slot, st);
      }
      st.inTable = true;
      int s = newSlot();
      st.tableSlot = s;
      StoredState[] states = statesFor(t.states, s);
      STATE.setRelease(states, s, st);
      if (states != t.states) {
        tables = new Tables(null, t.map, states);
      }
      t.map.put(key, s); // after the state: a reader that finds the slot finds the state
      size = size + 1;
      return null;
    }
    int h = hash(key);
    int at = find(index, t.states, key, h);
    if (at >= 0) {
      return replace(t.states, (int) index[at] - 1, st);
    }
    int i = ~at;
    boolean tombstone = index[i] != 0; // reused: entries and tombstones stay as many
    int probed = (i - h) & (index.length - 1);
    st.inTable = true;
    int s = newSlot();
    st.tableSlot = s;
    StoredState[] states = statesFor(t.states, s);
    STATE.setRelease(states, s, st);
    if (probed >= MAX_PROBE) {
      ConcurrentHashMap<ObjectKey, Integer> map = toMap(index, states);
      map.put(key, s);
      tables = new Tables(null, map, states);
    } else if (!tombstone && (size + tombstones + 1) * 2L > index.length) {
      long[] rebuilt = rebuild(index);
      insert(rebuilt, h, s);
      tables = new Tables(rebuilt, null, states);
    } else {
      if (states != t.states) {
        tables = new Tables(index, null, states);
      }
      // After the state, as above. Over a tombstone, a reader looking for another key goes on past
      // it either way; one looking for this key finds it, or reports it absent, as it just was.
      ENTRY.setRelease(index, i, entry(h, s));
      if (tombstone) {
        tombstones--;
      }
    }
    size = size + 1;
    return null;
  }

  /**
   * Makes {@code st} its key's state in place of {@code current}, the key's state now ({@link
   * StoredState#inTable}), and returns {@code current}: no lookup, since a state in the table knows
   * its slot. A committing engine that found the current state already spares the index probe
   * and the key comparison of {@link #put}, each a likely cache miss on a node of many objects.
   * The writer only.
   */
  StoredState replace(StoredState current, StoredState st) {
    if (!current.inTable || !current.key().equals(st.key())) {
      throw new IllegalArgumentException(current.key() + " is not the table's state of " + st.key());
    }
    return replace(tables.states, current.tableSlot, st);
  }

  /** Removes the state of {@code key}; returns it, or null if there was none; the writer only. */
  @Nullable StoredState remove(ObjectKey key) {
    Tables t = tables;
    long[] index = t.index;
    int slot;
    if (index == null) {
      Integer s = t.map.remove(key);
      if (s == null) {
        return null;
      }
      slot = s;
    } else {
      int at = find(index, t.states, key, hash(key));
      if (at < 0) {
        return null;
      }
      slot = (int) index[at] - 1;
      ENTRY.setRelease(index, at, TOMBSTONE);
      tombstones++;
    }
    StoredState st = t.states[slot];
    st.inTable = false;
    STATE.setRelease(t.states, slot, (StoredState) null);
    if (freeCount == free.length) {
      free = Arrays.copyOf(free, free.length * 2);
    }
    free[freeCount++] = slot;
    size = size - 1;
    return st;
  }

  int size() {
    return size;
  }

  /** Whether the index moved to a map (the {@code MAP} state); for tests. */
  boolean indexIsMap() {
    return tables.index == null;
  }

  /**
   * Every state, in slot order; weakly consistent like a concurrent map's view (a state put or
   * removed during the iteration may or may not be seen). The writer may remove states while it
   * iterates.
   */
  Collection<StoredState> values() {
    return new AbstractCollection<>() {
      @Override
      public Iterator<StoredState> iterator() {
        return new Iterator<>() {
          private final StoredState[] a = tables.states;
          private int at;
          private @Nullable StoredState ahead = advance();

          /** The next state from slot {@code at} on, leaving {@code at} past it; null at the end. */
          private @Nullable StoredState advance() {
            while (at < a.length) {
              StoredState st = (StoredState) STATE.getAcquire(a, at++);
              if (st != null) {
                return st;
              }
            }
            return null;
          }

          @Override
          public boolean hasNext() {
            return ahead != null;
          }

          @Override
          public StoredState next() {
            StoredState st = ahead;
            if (st == null) {
              throw new NoSuchElementException();
            }
            ahead = advance();
            return st;
          }
        };
      }

      @Override
      public int size() {
        return size;
      }
    };
  }

  // ------------------------------------------------------------------ writer's helpers

  /** The key's hash code mixed with the seed (murmur3's finalizer), so homes cannot be aimed at. */
  private int hash(ObjectKey key) {
    return mix(key.hashCode());
  }

  private int mix(int keyHashCode) {
    int h = keyHashCode ^ seed;
    h = (h ^ (h >>> 16)) * 0x85ebca6b;
    h = (h ^ (h >>> 13)) * 0xc2b2ae35;
    return h ^ (h >>> 16);
  }

  /** Makes {@code st} the state in {@code slot}, in place of the one there, which it returns. */
  private static StoredState replace(StoredState[] states, int slot, StoredState st) {
    StoredState old = states[slot];
    old.inTable = false;
    st.inTable = true;
    st.tableSlot = slot;
    STATE.setRelease(states, slot, st);
    return old;
  }

  private static long entry(int hash, int slot) {
    return ((long) hash << 32) | (slot + 1L);
  }

  private int newSlot() {
    return freeCount > 0 ? free[--freeCount] : used++;
  }

  /** {@code states}, or a copy twice its length if {@code slot} lies past it. */
  private static StoredState[] statesFor(StoredState[] states, int slot) {
    return slot < states.length ? states : Arrays.copyOf(states, states.length * 2);
  }

  /**
   * Where {@code key}'s entry is in {@code index}, or, if it is absent, {@code ~i} for where it
   * goes: the first tombstone {@code i} on its path from its home {@code hash}, else the empty
   * entry that ends the path.
   */
  private static int find(long[] index, StoredState[] states, ObjectKey key, int hash) {
    int mask = index.length - 1;
    int firstTombstone = -1;
    for (int i = hash & mask; ; i = (i + 1) & mask) {
      long e = index[i];
      if (e == 0) {
        return ~(firstTombstone >= 0 ? firstTombstone : i);
      }
      if ((int) e == 0) {
        if (firstTombstone < 0) {
          firstTombstone = i;
        }
      } else if ((int) (e >>> 32) == hash) {
        StoredState st = states[(int) e - 1];
        if (st != null && st.key().equals(key)) {
          return i;
        }
      }
    }
  }

  /**
   * A new index with the entries of {@code index} and no tombstones, large enough that one more
   * key leaves it at most a quarter full.
   */
  private long[] rebuild(long[] index) {
    int capacity = index.length;
    while ((size + 1) * 4L > capacity) {
      capacity *= 2;
    }
    long[] rebuilt = new long[capacity];
    for (long e : index) {
      if ((int) e != 0) {
        insert(rebuilt, (int) (e >>> 32), (int) e - 1);
      }
    }
    tombstones = 0;
    return rebuilt;
  }

  /** Fills the first empty entry from {@code hash}'s home; the index is not yet published. */
  private static void insert(long[] index, int hash, int slot) {
    int mask = index.length - 1;
    int i = hash & mask;
    while (index[i] != 0) {
      i = (i + 1) & mask;
    }
    index[i] = entry(hash, slot);
  }

  private static ConcurrentHashMap<ObjectKey, Integer> toMap(long[] index, StoredState[] states) {
    ConcurrentHashMap<ObjectKey, Integer> map = new ConcurrentHashMap<>();
    for (long e : index) {
      if ((int) e != 0) {
        int slot = (int) e - 1;
        map.put(states[slot].key(), slot);
      }
    }
    return map;
  }
}
