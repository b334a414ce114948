package dev.entanglement.internal;

import java.util.ArrayList;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.BinaryOperator;
import org.jspecify.annotations.Nullable;

/**
 * The outbound queue of one destination: at most one pending entry per key, drained lowest
 * priority first and first-in first-out within a priority.
 *
 * <p>Invariants:
 *
 * <ul>
 *   <li>a key is in at most one bucket, and {@link #size()} counts distinct keys;
 *   <li>offering a key that is pending merges the new entry into the pending one <em>in place</em>:
 *       it keeps its position, so every dirty key is sent once per round however often it changes
 *       (the original's heap re-ordered equal priorities and starved objects under overload);
 *   <li>if a merge lowers the priority, the entry moves to the tail of the lower bucket.
 * </ul>
 *
 * <p>Layout: an index of the pending nodes, and per priority an intrusive doubly linked list of
 * nodes; buckets are kept in a small list sorted by priority (types use few distinct priorities).
 * The index is an open-addressing table of node references with linear probing, at most half
 * full, each node keeping its key's mixed hash. An offer hashes its key once and probes once: a new
 * key goes into the empty entry that ended the probe, with no second lookup and no map entry
 * besides its node. A poll finds its node's entry by reference from the node's hash, so it neither
 * hashes nor compares keys, and closes the gap by shifting the entries of its run back (no
 * tombstones). A {@code HashMap} index hashed twice per new key and once more per poll, and its
 * lookups and removals were about 8 % of a sending engine's time in B2; it also took a map entry
 * of 32 bytes per pending key besides the node. Hashes are mixed with a per-queue random seed, so
 * a peer cannot choose keys whose entries lie side by side, except keys of one hash code (or of
 * hash codes that differ only in bits above the index's reach), which share a home entry whatever
 * the seed. Such keys are searched one by one, as in a bin of a {@code HashMap} (whose bins of keys
 * that are not comparable, as the engine's are not, are searched so), and here their run also
 * slows the other keys whose home lies inside it.
 *
 * <p>Memory follows the backlog: the index grows by doubling and is not shrunk as it empties, so
 * {@link #trim}, called now and then by the owner, rebuilds it at the present size once the keys
 * pending fell to an eighth of their peak and that peak was above {@link #RETAINED_INDEX} keys (a
 * copy of what is left, paid for by the removals since the peak). A link that once fell 100,000
 * objects behind then does not hold an index of 262,144 references for the rest of its life. Not
 * on every poll: a link that falls behind again and again would regrow its index each time.
 *
 * <p>Not thread-safe: confined to its owner's serial executor.
 */
public final class CoalescingQueue<K, E> {
  private static final class Node<K, E> {
    final K key;
    /** The key's hash mixed with the queue's seed: where its probe starts. */
    final int hash;
    E entry;
    Bucket<K, E> bucket;
    @Nullable Node<K, E> prev;
    @Nullable Node<K, E> next;

    Node(K key, int hash, E entry, Bucket<K, E> bucket) {
      this.key = key;
      this.hash = hash;
      this.entry = entry;
      this.bucket = bucket;
    }
  }

  private static final class Bucket<K, E> {
    final int priority;
    @Nullable Node<K, E> head;
    @Nullable Node<K, E> tail;

    Bucket(int priority) {
      this.priority = priority;
    }

    void append(Node<K, E> n) {
      n.bucket = this;
      n.prev = tail;
      n.next = null;
      if (tail == null) {
        head = n;
      } else {
        tail.next = n;
      }
      tail = n;
    }

    void unlink(Node<K, E> n) {
      if (n.prev == null) {
        head = n.next;
      } else {
        n.prev.next = n.next;
      }
      if (n.next == null) {
        tail = n.prev;
      } else {
        n.next.prev = n.prev;
      }
      n.prev = null;
      n.next = null;
    }
  }

  /**
   * Keys pending at a peak above which the index is rebuilt once the queue shrinks to an eighth of
   * it: 4,096. Below it the index (at most 8,192 references) is kept, as it would be refilled.
   */
  public static final int RETAINED_INDEX = 4_096;

  /** The smallest index: 16 entries, room for 8 keys. */
  private static final int MIN_INDEX = 16;

  private final int retainedIndex;
  private final int seed;
  /**
   * Pending nodes by their hash, a power of two in length, at most half full; every node is found
   * by probing from its hash's entry without crossing an empty one.
   */
  private @Nullable Node<K, E>[] index = newIndex(MIN_INDEX);
  /**
   * Keys pending, the nodes in the index, kept apart from it so that a reader on another thread
   * (statistics) reads one field.
   */
  private int pending;
  /** The most keys pending since the queue was created, cleared or trimmed. */
  private int peak;
  private int indexRebuilds;
  /** Buckets sorted by ascending priority; empty buckets are kept for reuse. */
  private final ArrayList<Bucket<K, E>> buckets = new ArrayList<>(4);
  private long offered;
  private long coalesced;

  public CoalescingQueue() {
    this(RETAINED_INDEX, ThreadLocalRandom.current().nextInt());
  }

  /**
   * A queue whose index is rebuilt above {@code retainedIndex} keys at its peak, and whose hashes
   * are mixed with {@code seed}; for tests, which choose both to be reproducible.
   */
  CoalescingQueue(int retainedIndex, int seed) {
    this.retainedIndex = retainedIndex;
    this.seed = seed;
  }

  /**
   * Adds {@code entry} for {@code key}, or merges it with the pending entry as {@code
   * merge.apply(pending, entry)}.
   *
   * @return whether the entry was merged into a pending one (coalesced)
   */
  public boolean offer(K key, int priority, E entry, BinaryOperator<E> merge) {
    offered++;
    int h = mix(key.hashCode());
    int at = find(key, h);
    if (at < 0) {
      Bucket<K, E> b = bucket(priority);
      Node<K, E> n = new Node<>(key, h, entry, b);
      b.append(n);
      index[~at] = n;
      pending++;
      peak = Math.max(peak, pending);
      if (pending > index.length >>> 1) {
        rebuild(index.length << 1);
      }
      return false;
    }
    coalesced++;
    Node<K, E> n = index[at];
    n.entry = merge.apply(n.entry, entry);
    if (priority < n.bucket.priority) {
      n.bucket.unlink(n);
      bucket(priority).append(n);
    }
    return true;
  }

  /** Removes and returns the head entry, or {@code null} if empty. */
  public @Nullable E poll() {
    for (int i = 0, size = buckets.size(); i < size; i++) {
      Bucket<K, E> b = buckets.get(i);
      Node<K, E> head = b.head;
      if (head != null) {
        return take(head);
      }
    }
    return null;
  }

  /** Removes the pending entry for {@code key} and returns it, or {@code null} if none is pending. */
  public @Nullable E remove(K key) {
    int at = find(key, mix(key.hashCode()));
    if (at < 0) {
      return null;
    }
    return take(index[at]);
  }

  /** Takes pending node {@code n} out of its bucket and the index; returns its entry. */
  private E take(Node<K, E> n) {
    n.bucket.unlink(n);
    removeFromIndex(n);
    pending--;
    return n.entry;
  }

  /** The pending entry for {@code key}, or {@code null}. */
  public @Nullable E peek(K key) {
    int at = find(key, mix(key.hashCode()));
    return at < 0 ? null : index[at].entry;
  }

  /** Keys pending. Read from another thread, it may be stale: a benign race for statistics. */
  public int size() {
    return pending;
  }

  public boolean isEmpty() {
    return pending == 0;
  }

  public void clear() {
    index = newIndex(MIN_INDEX); // clearing in place would keep the index at its largest
    pending = 0;
    peak = 0;
    buckets.clear();
  }

  /** Entries offered since creation. */
  public long offered() {
    return offered;
  }

  /** Offers that merged into a pending entry instead of adding one. */
  public long coalesced() {
    return coalesced;
  }

  /**
   * Rebuilds the index at the present size if the keys pending fell to an eighth of a peak above
   * {@link #RETAINED_INDEX} since the index was last trimmed (see the class notes); otherwise does
   * nothing.
   */
  public void trim() {
    if (peak > retainedIndex && pending <= peak >>> 3) {
      rebuild(Math.max(MIN_INDEX, Integer.highestOneBit(Math.max(1, pending)) << 2));
      peak = pending;
      indexRebuilds++;
    }
  }

  /** Times {@link #trim} rebuilt the index. */
  public int indexRebuilds() {
    return indexRebuilds;
  }

  /** Entries in the index, at least twice the keys pending; for tests. */
  int indexLength() {
    return index.length;
  }

  private int mix(int hashCode) {
    int h = (hashCode ^ seed) * 0x9E3779B9;
    return h ^ (h >>> 16);
  }

  /** The entry of {@code key}'s node, or the complement of the empty entry that ended its probe. */
  private int find(K key, int h) {
    @Nullable Node<K, E>[] ix = index;
    int mask = ix.length - 1;
    for (int i = h & mask; ; i = (i + 1) & mask) {
      Node<K, E> n = ix[i];
      if (n == null) {
        return ~i;
      }
      if (n.hash == h && (n.key == key || n.key.equals(key))) {
        return i;
      }
    }
  }

  /**
   * Empties the entry of {@code node} and moves back each later node of its run whose probe starts
   * at or before the emptied entry, so that every node stays reachable from its hash's entry.
   */
  private void removeFromIndex(Node<K, E> node) {
    @Nullable Node<K, E>[] ix = index;
    int mask = ix.length - 1;
    int gap = node.hash & mask;
    while (ix[gap] != node) {
      gap = (gap + 1) & mask;
    }
    for (int i = (gap + 1) & mask; ; i = (i + 1) & mask) {
      Node<K, E> n = ix[i];
      if (n == null) {
        break;
      }
      // n may fill the gap unless its home lies cyclically in (gap, i]: it would then be found
      // only by crossing the gap, now empty.
      int home = n.hash & mask;
      if (((i - home) & mask) >= ((i - gap) & mask)) {
        ix[gap] = n;
        gap = i;
      }
    }
    ix[gap] = null;
  }

  private void rebuild(int length) {
    @Nullable Node<K, E>[] old = index;
    @Nullable Node<K, E>[] ix = newIndex(length);
    int mask = length - 1;
    for (Node<K, E> n : old) {
      if (n != null) {
        int i = n.hash & mask;
        while (ix[i] != null) {
          i = (i + 1) & mask;
        }
        ix[i] = n;
      }
    }
    index = ix;
  }

  @SuppressWarnings("unchecked")
  private static <K, E> @Nullable Node<K, E>[] newIndex(int length) {
    return (Node<K, E>[]) new Node<?, ?>[length];
  }

  private Bucket<K, E> bucket(int priority) {
    int i = 0;
    int size = buckets.size();
    while (i < size && buckets.get(i).priority < priority) {
      i++;
    }
    if (i < size && buckets.get(i).priority == priority) {
      return buckets.get(i);
    }
    Bucket<K, E> b = new Bucket<>(priority);
    buckets.add(i, b);
    return b;
  }
}
