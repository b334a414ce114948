package dev.entanglement;

import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import org.jspecify.annotations.Nullable;

/**
 * A change that a non-owner asks an owner to make, delivered by {@link
 * EntanglementNode#proposals}. Exactly one decision counts; later calls return {@code false}. An
 * undecided proposal is rejected with {@link ErrorCode#TIMEOUT} after the node's decision timeout.
 *
 * @param <T> the object's type
 */
public final class Proposal<T> {
  /** What is proposed. */
  public enum Kind {
    UPDATE,
    CREATE,
    DELETE
  }

  /** A decision, handed back to the engine. */
  sealed interface Decision<T> {
    /**
     * @param asProposed made by {@link #commit()}: the engine offers a partial proposal again,
     *     merged onto a newer state, instead of committing a stale merge
     */
    record Commit<T>(@Nullable T value, boolean asProposed) implements Decision<T> {}

    record Reject<T>(ErrorCode code, String message) implements Decision<T> {}
  }

  private final Kind kind;
  private final SyncType<T> type;
  private final @Nullable ObjectKey key;
  private final @Nullable PeerId from;
  private final @Nullable Snapshot<T> current;
  private final @Nullable T proposed;
  private final @Nullable String transitionId;
  private final Consumer<Decision<T>> decide;
  private final AtomicBoolean decided = new AtomicBoolean();
  /**
   * Its place in the order its node received proposals, set once by the engine before anything
   * sees it, and read on the engine's executor only: where it waits for a subscriber.
   */
  long arrival;
  /**
   * The engine's record of the {@code proposals()} subscription it last reached, set on the
   * delivering thread: that subscription's subscriber decides it, and it is not handed back when
   * that subscriber leaves. Reaching means reaching the operator after the engine's sink: a
   * proposal in the queue of an operator of the application's (a {@code publishOn}) counts as
   * taken.
   */
  volatile @Nullable Object takenBy;

  Proposal(
      Kind kind,
      SyncType<T> type,
      @Nullable ObjectKey key,
      @Nullable PeerId from,
      @Nullable Snapshot<T> current,
      @Nullable T proposed,
      @Nullable String transitionId,
      Consumer<Decision<T>> decide) {
    this.kind = kind;
    this.type = type;
    this.key = key;
    this.from = from;
    this.current = current;
    this.proposed = proposed;
    this.transitionId = transitionId;
    this.decide = decide;
  }

  public Kind kind() {
    return kind;
  }

  public SyncType<T> type() {
    return type;
  }

  /** The object's key; for {@link Kind#CREATE}, the key of the proposed value, if it has one. */
  public @Nullable ObjectKey key() {
    return key;
  }

  /** The neighbour the proposal arrived from, or {@code null} if it was made on this node. */
  public @Nullable PeerId from() {
    return from;
  }

  /** The current committed state, or {@code null} for a create. */
  public @Nullable Snapshot<T> current() {
    return current;
  }

  /**
   * The state that {@link #commit()} would commit: {@link #current()} with the proposed attributes
   * merged in; {@code null} for a delete.
   */
  public @Nullable T proposed() {
    return proposed;
  }

  /** The transition this proposal confirms, if any. */
  public @Nullable String transitionId() {
    return transitionId;
  }

  /**
   * Commits {@link #proposed()} (or deletes, for a delete). If the object was committed again after
   * {@link #current()}, a partial proposal is not committed: committing {@code proposed()} would
   * undo what was committed meanwhile in the attributes it does not name. It is offered again
   * instead, as a new {@code Proposal} whose {@code current()} is the newer state and whose {@code
   * proposed()} is its attributes merged onto it, in its place among the proposals waiting, by the
   * decision deadline of the first offer; the policy's {@code shouldListenConstructed} is asked
   * about that value first, and a refusal rejects it ({@link ErrorCode#UNAUTHORIZED}). So a
   * committed value is always one a decider was shown. This still returns {@code true}: this
   * proposal is decided.
   */
  public boolean commit() {
    return decideOnce(new Decision.Commit<>(proposed, true));
  }

  /**
   * Commits a value of the owner's choosing instead, as given, even if the object was committed
   * again after {@link #current()}; for a create, the owner may assign the key here.
   */
  public boolean commit(T value) {
    return decideOnce(new Decision.Commit<>(Objects.requireNonNull(value, "value"), false));
  }

  /** Rejects; the proposer receives {@link Outcome.Rejected} with this code and message. */
  public boolean reject(ErrorCode code, String message) {
    return decideOnce(new Decision.Reject<>(code, message));
  }

  boolean isDecided() {
    return decided.get();
  }

  private boolean decideOnce(Decision<T> decision) {
    if (!decided.compareAndSet(false, true)) {
      return false;
    }
    decide.accept(decision);
    return true;
  }

  @Override
  public String toString() {
    return "Proposal[" + kind + " " + (key != null ? key : type.name()) + " from " + from + "]";
  }
}
