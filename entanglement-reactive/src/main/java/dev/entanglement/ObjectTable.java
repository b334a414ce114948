package dev.entanglement;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.AbstractCollection;
import java.util.Arrays;
import java.util.Collection;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.concurrent.ConcurrentHashMap;
import org.jspecify.annotations.Nullable;

/**
 * The current state of every object a node holds ({@code Engine.objects}): one writer, the
 * engine's serial executor, and any number of readers on other threads ({@code
 * EntanglementNode.get}).
 *
 * <p>Design: a concurrent index from each key to a slot number, assigned when the key is first put
 * and never changed while the key is present, and the states in one array, by slot. The engine
 * replaces an object's state on every version it commits or receives, so this table takes one write
 * per version. In a map the write goes into the key's own entry, and entries are scattered over the
 * old generation: each write marks a different card, which a generational collector (G1) must then
 * refine and scan, and which cost a receiver of 100,000 objects at 250,000 versions/s about a third
 * of its CPU. In the array the writes of many versions share a card (128 slots with compressed
 * references), and the index, written only when a key comes or goes, marks none. The price is
 * about 20 bytes per object over a map alone: the boxed slot number and the array's slot.
 *
 * <p>Invariants: a key in the index maps to a slot whose state has that key, except between a
 * removal's index update and its slot clearing, both made by the writer; a free slot holds null and
 * is on the free list; slots in use are below {@code used}. A reader loads the slot from the index
 * and then the array, so it sees the array that holds the slot; it checks the state's key, since
 * the writer may have removed the key and given the slot to another one in between (it then
 * reports the key absent, which was true at some point of its call). Arrays are replaced, never
 * shrunk, on growth; a reader holding the old one sees the states as they were when it was copied.
 */
final class ObjectTable {
  private static final VarHandle SLOT = MethodHandles.arrayElementVarHandle(StoredState[].class);
  private static final int MIN_CAPACITY = 64;

  private final ConcurrentHashMap<ObjectKey, Integer> index = new ConcurrentHashMap<>();
  private volatile StoredState[] states = new StoredState[MIN_CAPACITY];
  /** Slots below this were assigned at least once; writer only. */
  private int used;
  /** Slots given back by removals, reused before {@link #used} grows; writer only. */
  private int[] free = new int[16];
  private int freeCount;
  private volatile int size;

  /** The state of {@code key}, or null; any thread. */
  @Nullable StoredState get(ObjectKey key) {
    Integer slot = index.get(key);
    if (slot == null) {
      return null;
    }
    StoredState st = (StoredState) SLOT.getAcquire(states, (int) slot);
    return st != null && st.key().equals(key) ? st : null; // equals tests identity first
  }

  boolean containsKey(ObjectKey key) {
    return get(key) != null;
  }

  /** Makes {@code st} the state of its key, replacing any; the writer only. */
  void put(StoredState st) {
    ObjectKey key = st.key();
    Integer slot = index.get(key);
    if (slot != null) {
      SLOT.setRelease(states, (int) slot, st);
      return;
    }
    int s = freeCount > 0 ? free[--freeCount] : used++;
    StoredState[] a = states;
    if (s == a.length) {
      a = Arrays.copyOf(a, a.length * 2);
      states = a;
    }
    SLOT.setRelease(a, s, st);
    index.put(key, s); // after the state: a reader that finds the slot finds the state
    size = size + 1;
  }

  /** Removes the state of {@code key}; returns it, or null if there was none; the writer only. */
  @Nullable StoredState remove(ObjectKey key) {
    Integer slot = index.remove(key);
    if (slot == null) {
      return null;
    }
    StoredState st = states[slot];
    SLOT.setRelease(states, (int) slot, (StoredState) null);
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
          private final StoredState[] a = states;
          private int at;
          private @Nullable StoredState ahead = advance();

          /** The next state from slot {@code at} on, leaving {@code at} past it; null at the end. */
          private @Nullable StoredState advance() {
            while (at < a.length) {
              StoredState st = (StoredState) SLOT.getAcquire(a, at++);
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
}
