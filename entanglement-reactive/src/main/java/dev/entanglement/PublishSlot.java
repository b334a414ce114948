package dev.entanglement;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.function.BiConsumer;
import org.jspecify.annotations.Nullable;
import reactor.core.publisher.MonoSink;

/**
 * The publishes of one object by one owner that wait for the engine's executor, merged into one
 * task: a publish that finds its object's slot still waiting replaces the value in it instead of
 * queueing a task of its own. So a loop of {@code publish} calls faster than the engine runs leaves
 * a few tasks per object waiting, not one per call: the engine takes the latest state, not the
 * history, as the links' queues do after it.
 *
 * <p>A slot hangs on the object's current {@link StoredState} ({@link StoredState#publishSlot}),
 * where a publisher finds it with the lookup any thread may make in the engine's object table, so
 * a slot costs no map of its own. Only a version's second and later publishes made while the
 * engine is busy get one: the first is a task of its own, as every publish of an idle engine and of
 * an object the node does not hold yet. A version's first publish only sets a flag on it: a slot
 * for every publish stores a new object's reference in an old one, for which the collector's write
 * barrier marks a card to scan, and that cost B2 (where every publish is the first on its version)
 * about 0.5 µs of sender CPU per state (docs/BENCHMARKS.md §3, session 36).
 *
 * <p>State machine: {@code HUNG} (made and hung on its state, not yet queued: no one may join it)
 * → {@code WAITING} (queued; it holds the latest publisher's value and sink) → {@code TAKEN} (the
 * engine runs it; terminal). A publisher joins a waiting slot by swapping in its own value and
 * sink (compare-and-set); the sink it replaced is completed empty at once, on the joining thread,
 * as its value will never be a version of its own. The engine takes the slot by swapping in {@link
 * #TAKEN}, and commits what it took.
 *
 * <p>Ordering rule: per object, each thread's operations take effect in the order it made them,
 * whatever other threads do. A thread's publish joins a slot only if nothing the thread queued
 * before on that object may lie behind the slot. So the object's current slot is unhooked (no
 * longer joined; the next publish makes a new one, behind) by the thread that queued, without it
 * having started:
 * <ul>
 *   <li>any operation on the object other than a publish (a delete, a proposal, a decision, a
 *       transition's update, commit or abort), after queueing it;
 *   <li>a publish's own task, after queueing it: a slot hung since its lookup, on the version it
 *       found or on a newer one, may lie ahead of it (usually there is none, as the task's
 *       publish set the version's flag); so does a value of {@code publishAll} handed over on an
 *       application's thread (an asynchronous source; a synchronous one is pulled on the
 *       engine's thread, unordered with the application's other operations);
 *   <li>a new slot, once queued and before it is marked joinable, if its version is no longer
 *       current or another slot replaced it while it could not be joined (that one may be queued
 *       ahead of it).
 * </ul>
 * A slot hung after such an unhooking is queued after the task, as slots are hung before they are
 * queued; one on an older version is not found by the thread's later lookups. Operations on no one
 * object (an owner added or removed, a create, a close) instead hold back all the thread's joins
 * until they start ({@code Engine.notToOvertake}, an {@link ApplicationTask}). A slot is joined
 * only by publishes of its owner; its object, and so its type, is its state's. Publishes of
 * different objects may take effect in another order than they were made, as they may leave a
 * link's queue in another order.
 */
final class PublishSlot implements Runnable {
  /** A value to publish and the sink of the publisher that gave it. */
  record Pending(Object value, MonoSink<Snapshot<?>> sink) {}

  /** What {@link #pending} holds once the engine took the slot. */
  private static final Object TAKEN = new Object();
  private static final VarHandle PENDING;

  static {
    try {
      PENDING = MethodHandles.lookup().findVarHandle(PublishSlot.class, "pending", Object.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  final OwnerId owner;
  /** The version the slot was made on, current then; dropped once run. */
  private @Nullable StoredState base;
  /** The engine's side of the slot; dropped once run, as the base is. */
  private @Nullable BiConsumer<PublishSlot, StoredState> engine;
  /** The waiting {@link Pending}, or {@link #TAKEN}; through {@link #PENDING}. */
  @SuppressWarnings("unused")
  private volatile Object pending;
  /** Whether the slot is queued on the engine's executor (until then, no one may join it). */
  private volatile boolean queued;

  PublishSlot(
      StoredState base, OwnerId owner, Pending first, BiConsumer<PublishSlot, StoredState> engine) {
    this.base = base;
    this.owner = owner;
    this.engine = engine;
    this.pending = first;
  }

  /**
   * Puts {@code next} in place of the waiting value, if this slot still waits and takes publishes
   * of owner {@code o} and is queued; completes the replaced sink empty. Any thread; the caller has
   * checked the ordering rule.
   */
  boolean join(OwnerId o, Pending next) {
    if (!queued || !o.equals(owner)) {
      return false;
    }
    for (;;) {
      Object p = PENDING.getAcquire(this);
      if (p == TAKEN) {
        return false;
      }
      if (PENDING.compareAndSet(this, p, next)) {
        ((Pending) p).sink().success(); // superseded before it took effect: no version of its own
        return true;
      }
    }
  }

  /** Marks the slot queued: from now on it may be joined. Its maker, once it queued it. */
  void queued() {
    queued = true;
  }

  /** The latest value and its sink; the slot takes no more publishes. The engine's executor. */
  Pending take() {
    Object p = PENDING.getAndSet(this, TAKEN);
    if (p == TAKEN) {
      throw new IllegalStateException("a publish slot is taken once");
    }
    return (Pending) p;
  }

  /** Whether the engine took the slot; any thread. */
  boolean started() {
    return PENDING.getAcquire(this) == TAKEN;
  }

  /** The engine's executor: hands the slot and its state to the engine, which takes it. */
  @Override
  public void run() {
    StoredState b = base;
    BiConsumer<PublishSlot, StoredState> e = engine;
    base = null;
    engine = null;
    if (b == null || e == null) {
      throw new IllegalStateException("a publish slot runs once");
    }
    e.accept(this, b);
  }
}
