package dev.entanglement.internal;

import java.util.Map;
import java.util.Queue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import reactor.core.publisher.Operators;

/**
 * Per-key latest-value backpressure for one subscriber: for every key, only the newest undelivered
 * value is kept, and keys are delivered in the order they first became pending. A slow subscriber
 * therefore receives the latest state of <em>every</em> key, never a growing backlog, and never
 * loses a key (a plain {@code onBackpressureLatest} over all keys would), unless the subscription
 * has a bound on pending keys (below), which drops the oldest.
 *
 * <p>Producers call {@link #offer} from any thread. Delivery is serialized by a work-in-progress
 * counter: whoever moves {@code wip} from 0 drains while there is demand. Invariant: a key is in
 * {@code order} at most once, exactly while it has a value in {@code pending} that has not been
 * claimed by the drain loop — except while a producer that does not hold {@code wip} is between
 * its put and its offer to {@code order}, which {@code unqueued} counts. A value offered while no
 * key is queued, no such put is in progress and the subscriber has demand is delivered directly by
 * the offering thread (which then holds {@code wip}), so an unbounded or keeping-up subscriber
 * costs no map entry per value. The map's own emptiness cannot stand for that test: it counts a
 * new mapping after inserting it, and a put that replaces one counts nothing, so a value another
 * producer has just replaced could be overtaken by its own producer's later values.
 *
 * <p>Keys that never repeat (events) would make the pending values a backlog: a subscription made
 * with a bound keeps at most that many keys pending, and an offer of a key that is not pending,
 * when that many are, first drops the oldest pending value (claiming its key from {@code order} as
 * the drain loop would, so each value is either delivered or dropped, never both) and reports it to
 * {@code onDrop}. With one producer at a time, as the engine is, the bound is exact; concurrent
 * producers may each make room at once and drop a value more than needed.
 *
 * <p>Ends: {@link #complete} after the pending values; {@link #error} at once, dropping them; a
 * subscriber whose {@code onNext} throws (Reactive Streams rule 2.13) is cancelled and its error goes
 * to Reactor's dropped-error hook, so a producer's thread never sees it.
 */
public final class ConflatingSubscription<K, V> implements Subscription {
  private final Subscriber<? super V> actual;
  private final Runnable onCancel;
  private final Map<K, V> pending = new ConcurrentHashMap<>();
  private final Queue<K> order = new ConcurrentLinkedQueue<>();
  private final AtomicLong requested = new AtomicLong();
  private final AtomicInteger wip = new AtomicInteger();
  /** Producers between their put and their order.offer (exact, unlike the map's own count). */
  private final AtomicInteger unqueued = new AtomicInteger();
  private final java.util.concurrent.atomic.AtomicBoolean cancelCalled =
      new java.util.concurrent.atomic.AtomicBoolean();
  private volatile boolean cancelled;
  private volatile boolean done;
  private volatile @org.jspecify.annotations.Nullable Throwable error;

  private final int maxPendingKeys;
  private final Runnable onDrop;

  /** A subscription without a bound: at most one pending value per key, of any number of keys. */
  public ConflatingSubscription(Subscriber<? super V> actual, Runnable onCancel) {
    this(actual, onCancel, Integer.MAX_VALUE, () -> {});
  }

  /**
   * @param maxPendingKeys the most keys with an undelivered value; {@link Integer#MAX_VALUE} for no
   *     bound
   * @param onDrop run for each value dropped to keep to that bound, on the offering thread
   */
  public ConflatingSubscription(
      Subscriber<? super V> actual, Runnable onCancel, int maxPendingKeys, Runnable onDrop) {
    if (maxPendingKeys < 1) {
      throw new IllegalArgumentException("maxPendingKeys must be positive: " + maxPendingKeys);
    }
    this.actual = actual;
    this.onCancel = onCancel;
    this.maxPendingKeys = maxPendingKeys;
    this.onDrop = onDrop;
  }

  /**
   * Makes {@code value} the pending value of {@code key}. When no drain is running, the subscriber
   * has demand and no key is pending, the value is delivered at once without passing through the
   * pending map: nothing could coalesce with it or be owed before it.
   */
  public void offer(K key, V value) {
    if (cancelled || done) {
      return;
    }
    if (maxPendingKeys != Integer.MAX_VALUE) {
      makeRoom(key);
    }
    if (wip.compareAndSet(0, 1)) {
      long r = requested.get();
      // Not pending.isEmpty() (see the class note): unqueued covers every put not yet queued.
      if (r != 0 && unqueued.get() == 0 && order.isEmpty()) {
        if (deliver(value) && r != Long.MAX_VALUE) {
          requested.decrementAndGet();
        }
      } else if (pending.put(key, value) == null) {
        order.offer(key);
      }
      drainLoop(1);
      return;
    }
    unqueued.incrementAndGet();
    try {
      if (pending.put(key, value) == null) {
        order.offer(key);
      }
    } finally {
      unqueued.decrementAndGet();
    }
    drain();
  }

  /** Drops the oldest pending values while the bound is reached and {@code key} is not pending. */
  private void makeRoom(K key) {
    while (pending.size() >= maxPendingKeys && !pending.containsKey(key)) {
      K oldest = order.poll();
      if (oldest == null) {
        return; // the drain loop claimed them meanwhile
      }
      if (pending.remove(oldest) != null) {
        onDrop.run();
      }
    }
  }

  /** Completes after the pending values are delivered. */
  public void complete() {
    done = true;
    drain();
  }

  /**
   * Ends with {@code t} at once, dropping the pending values (the producer failed); the first
   * error wins. {@code onCancel} runs, as on a cancel, so that producers let go of this subscription.
   */
  public void error(Throwable t) {
    if (error == null) {
      error = t;
    }
    done = true;
    if (cancelCalled.compareAndSet(false, true)) {
      onCancel.run();
    }
    drain();
  }

  public boolean isCancelled() {
    return cancelled;
  }

  /** Keys with an undelivered value. */
  public int pendingKeys() {
    return pending.size();
  }

  @Override
  public void request(long n) {
    if (Operators.validate(n)) {
      long r;
      long u;
      do {
        r = requested.get();
        u = r + n < 0 ? Long.MAX_VALUE : r + n;
      } while (r != Long.MAX_VALUE && !requested.compareAndSet(r, u));
      drain();
    }
  }

  @Override
  public void cancel() {
    if (cancelCalled.compareAndSet(false, true)) {
      cancelled = true;
      onCancel.run();
      if (wip.getAndIncrement() == 0) {
        pending.clear();
        order.clear();
      }
    }
  }

  private void drain() {
    if (wip.getAndIncrement() != 0) {
      return;
    }
    drainLoop(1);
  }

  /** Delivers while there is demand; the caller holds {@code missed} counts of {@code wip}. */
  private void drainLoop(int missed) {
    do {
      long r = requested.get();
      long e = 0;
      while (e != r && error == null) {
        if (cancelled) {
          pending.clear();
          order.clear();
          return;
        }
        K key = order.poll();
        if (key == null) {
          break;
        }
        V v = pending.remove(key);
        if (v == null) {
          continue;
        }
        if (!deliver(v)) {
          pending.clear();
          order.clear();
          return;
        }
        e++;
      }
      if (cancelled) {
        pending.clear();
        order.clear();
        return;
      }
      Throwable failed = error;
      if (failed != null) {
        cancelled = true;
        pending.clear();
        order.clear();
        actual.onError(failed);
        return;
      }
      if (done && order.isEmpty()) {
        cancelled = true;
        actual.onComplete();
        return;
      }
      if (e != 0 && r != Long.MAX_VALUE) {
        requested.addAndGet(-e);
      }
      missed = wip.addAndGet(-missed);
    } while (missed != 0);
  }

  /** Delivers {@code v}; false if the subscriber threw, which cancelled it. */
  private boolean deliver(V v) {
    try {
      actual.onNext(v);
      return true;
    } catch (Throwable t) {
      reactor.core.Exceptions.throwIfJvmFatal(t);
      cancel();
      Operators.onErrorDropped(t, reactor.util.context.Context.empty());
      return false;
    }
  }

}
