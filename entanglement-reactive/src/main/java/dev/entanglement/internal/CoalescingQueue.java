package dev.entanglement.internal;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
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
 * <p>Not thread-safe: confined to its owner's serial executor.
 */
public final class CoalescingQueue<K, E> {
  private final TreeMap<Integer, LinkedHashMap<K, E>> buckets = new TreeMap<>();
  private final Map<K, Integer> priorityOf = new java.util.HashMap<>();
  private long offered;
  private long coalesced;

  /**
   * Adds {@code entry} for {@code key}, or merges it with the pending entry as {@code
   * merge.apply(pending, entry)}.
   */
  public void offer(K key, int priority, E entry, BinaryOperator<E> merge) {
    offered++;
    Integer current = priorityOf.get(key);
    if (current == null) {
      priorityOf.put(key, priority);
      buckets.computeIfAbsent(priority, p -> new LinkedHashMap<>()).put(key, entry);
      return;
    }
    coalesced++;
    LinkedHashMap<K, E> bucket = buckets.get(current);
    E merged = merge.apply(bucket.get(key), entry);
    if (priority < current) {
      bucket.remove(key);
      if (bucket.isEmpty()) {
        buckets.remove(current);
      }
      priorityOf.put(key, priority);
      buckets.computeIfAbsent(priority, p -> new LinkedHashMap<>()).put(key, merged);
    } else {
      bucket.put(key, merged); // replacing a present key keeps its insertion position
    }
  }

  /** Removes and returns the head entry, or {@code null} if empty. */
  public @Nullable E poll() {
    Map.Entry<Integer, LinkedHashMap<K, E>> first = buckets.firstEntry();
    if (first == null) {
      return null;
    }
    LinkedHashMap<K, E> bucket = first.getValue();
    Iterator<Map.Entry<K, E>> it = bucket.entrySet().iterator();
    Map.Entry<K, E> head = it.next();
    it.remove();
    if (bucket.isEmpty()) {
      buckets.remove(first.getKey());
    }
    priorityOf.remove(head.getKey());
    return head.getValue();
  }

  /** The pending entry for {@code key}, or {@code null}. */
  public @Nullable E peek(K key) {
    Integer p = priorityOf.get(key);
    return p == null ? null : buckets.get(p).get(key);
  }

  public int size() {
    return priorityOf.size();
  }

  public boolean isEmpty() {
    return priorityOf.isEmpty();
  }

  public void clear() {
    buckets.clear();
    priorityOf.clear();
  }

  /** Entries offered since creation. */
  public long offered() {
    return offered;
  }

  /** Offers that merged into a pending entry instead of adding one. */
  public long coalesced() {
    return coalesced;
  }
}
