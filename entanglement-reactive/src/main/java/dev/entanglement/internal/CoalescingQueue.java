package dev.entanglement.internal;

import java.util.ArrayList;
import java.util.HashMap;
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
 * <p>Layout: one hash index from key to node, and per priority an intrusive doubly linked list of
 * nodes; buckets are kept in a small list sorted by priority (types use few distinct priorities).
 * An offer costs one hash lookup (plus an insertion for a new key), a poll one removal.
 *
 * <p>Memory follows the backlog: a {@link HashMap} keeps its table at the largest size it reached,
 * so {@link #trim}, called now and then by the owner, rebuilds the index at the present size once
 * the keys pending fell to an eighth of their peak and that peak was above {@link #RETAINED_INDEX}
 * keys (a copy of what is left, paid for by the removals since the peak). A link that once fell
 * 100,000 objects behind then does not hold a table of 262,144 references for the rest of its life.
 * Not on every poll: a link that falls behind again and again would regrow its table each time.
 *
 * <p>Not thread-safe: confined to its owner's serial executor.
 */
public final class CoalescingQueue<K, E> {
  private static final class Node<K, E> {
    final K key;
    E entry;
    Bucket<K, E> bucket;
    @Nullable Node<K, E> prev;
    @Nullable Node<K, E> next;

    Node(K key, E entry, Bucket<K, E> bucket) {
      this.key = key;
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
   * it: 4,096. Below it the table (at most 8,192 references) is kept, as it would be refilled.
   */
  public static final int RETAINED_INDEX = 4_096;

  private final int retainedIndex;
  private HashMap<K, Node<K, E>> index = new HashMap<>();
  /**
   * Keys pending, as {@code index.size()}, kept apart from the index so that a reader on another
   * thread (statistics) never reads a rebuilt index before it is filled.
   */
  private int pending;
  /** The most keys pending since the index was created or rebuilt. */
  private int peak;
  private int indexRebuilds;
  /** Buckets sorted by ascending priority; empty buckets are kept for reuse. */
  private final ArrayList<Bucket<K, E>> buckets = new ArrayList<>(4);
  private long offered;
  private long coalesced;

  public CoalescingQueue() {
    this(RETAINED_INDEX);
  }

  /** A queue whose index is rebuilt above {@code retainedIndex} keys at its peak; for tests. */
  CoalescingQueue(int retainedIndex) {
    this.retainedIndex = retainedIndex;
  }

  /**
   * Adds {@code entry} for {@code key}, or merges it with the pending entry as {@code
   * merge.apply(pending, entry)}.
   *
   * @return whether the entry was merged into a pending one (coalesced)
   */
  public boolean offer(K key, int priority, E entry, BinaryOperator<E> merge) {
    offered++;
    Node<K, E> n = index.get(key);
    if (n == null) {
      Bucket<K, E> b = bucket(priority);
      n = new Node<>(key, entry, b);
      b.append(n);
      index.put(key, n);
      pending++;
      peak = Math.max(peak, pending);
      return false;
    }
    coalesced++;
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
        b.unlink(head);
        index.remove(head.key);
        pending--;
        return head.entry;
      }
    }
    return null;
  }

  /** The pending entry for {@code key}, or {@code null}. */
  public @Nullable E peek(K key) {
    Node<K, E> n = index.get(key);
    return n == null ? null : n.entry;
  }

  /** Keys pending. Read from another thread, it may be stale: a benign race for statistics. */
  public int size() {
    return pending;
  }

  public boolean isEmpty() {
    return pending == 0;
  }

  public void clear() {
    index = new HashMap<>(); // clear() would keep the table at its largest
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
   * {@link #RETAINED_INDEX} since the index was built (see the class notes); otherwise does nothing.
   */
  public void trim() {
    if (peak > retainedIndex && pending <= peak >>> 3) {
      index = new HashMap<>(index);
      peak = pending;
      indexRebuilds++;
    }
  }

  /** Times {@link #trim} rebuilt the index. */
  public int indexRebuilds() {
    return indexRebuilds;
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
