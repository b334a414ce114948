package dev.entanglement;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import reactor.core.publisher.MonoSink;

/**
 * The publishes of one object by one owner that wait for the engine's executor, merged into one
 * task: a publish that finds its object's slot still waiting replaces the value in it instead of
 * queueing a task of its own. So a loop of {@code publish} calls faster than the engine runs leaves
 * at most a task and a slot per object waiting, not one task per call: the engine takes the latest
 * state, not the history, as the links' queues do after it.
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
 * <p>State machine: {@code WAITING} (its task is queued; it holds the latest publisher's value and
 * sink) → {@code TAKEN} (the engine runs it; terminal). A publisher joins a waiting slot by swapping
 * in its own value and sink (compare-and-set); the sink it replaced is completed empty at once, as
 * its value will never be a version of its own. The engine takes the slot by swapping in {@link
 * #TAKEN}, and commits what it took.
 *
 * <p>Invariants: a slot is joined only by a publish of the same owner, made while {@link #fence} is
 * the engine's current publish fence (the type is the base's: it is part of the key). Every
 * operation other than a publish that the application submits (a delete, a proposal, a decision, a
 * transition, an owner added or removed, a close) moves the fence on before it is queued, so a
 * publish made after it never joins a slot queued before it: per object, each thread's operations
 * still take effect in the order it made them. Publishes of different objects may take effect in
 * another order than they were made, as they may leave a link's queue in another order.
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

  /** The version the slot was made on, current then: every value it holds is of its object. */
  final StoredState base;
  final OwnerId owner;
  /** The engine's publish fence when the slot was made; joins are refused once it moved on. */
  final long fence;
  private final java.util.function.Consumer<PublishSlot> engine;
  /** The waiting {@link Pending}, or {@link #TAKEN}; through {@link #PENDING}. */
  @SuppressWarnings("unused")
  private volatile Object pending;

  PublishSlot(
      StoredState base,
      OwnerId owner,
      long fence,
      Pending first,
      java.util.function.Consumer<PublishSlot> engine) {
    this.base = base;
    this.owner = owner;
    this.fence = fence;
    this.engine = engine;
    this.pending = first;
  }

  /**
   * Puts {@code next} in place of the waiting value, if this slot still waits and takes publishes
   * of owner {@code o} at fence {@code currentFence}; completes the replaced sink empty. Any thread.
   */
  boolean join(OwnerId o, long currentFence, Pending next) {
    if (currentFence != fence || !o.equals(owner)) {
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

  /** The latest value and its sink; the slot takes no more publishes. The engine's executor. */
  Pending take() {
    Object p = PENDING.getAndSet(this, TAKEN);
    if (p == TAKEN) {
      throw new IllegalStateException("a publish slot is taken once");
    }
    return (Pending) p;
  }

  @Override
  public void run() {
    engine.accept(this);
  }
}
