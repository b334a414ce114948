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

  private final HashMap<K, Node<K, E>> index = new HashMap<>();
  /** Buckets sorted by ascending priority; empty buckets are kept for reuse. */
  private final ArrayList<Bucket<K, E>> buckets = new ArrayList<>(4);
  private long offered;
  private long coalesced;

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

  public int size() {
    return index.size();
  }

  public boolean isEmpty() {
    return index.isEmpty();
  }

  public void clear() {
    index.clear();
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
