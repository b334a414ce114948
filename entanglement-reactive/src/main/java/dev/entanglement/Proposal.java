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
     * @param asProposed made by {@link #commit()}: the engine may merge the proposed attributes
     *     again onto a newer state
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
   * Set when it reaches its {@code proposals()} subscriber, on the delivering thread: from then on
   * the subscriber decides it, and it is not handed back when that subscriber leaves.
   */
  volatile boolean taken;

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
   * merged in; {@code null} for a delete. If the object is committed again before this proposal is
   * decided, {@code commit()} merges the proposed attributes of a partial proposal onto that newer
   * state instead, so that what was committed meanwhile is not undone.
   */
  public @Nullable T proposed() {
    return proposed;
  }

  /** The transition this proposal confirms, if any. */
  public @Nullable String transitionId() {
    return transitionId;
  }

  /**
   * Commits {@link #proposed()} (or deletes, for a delete). A partial proposal decided after the
   * object was committed again is merged onto the state current at the decision: the attributes it
   * names are its own, the others those of that state, and the policy's {@code
   * shouldListenConstructed} is asked again about the result.
   */
  public boolean commit() {
    return decideOnce(new Decision.Commit<>(proposed, true));
  }

  /**
   * Commits a value of the owner's choosing instead, as given, even if the object was committed
   * again meanwhile; for a create, the owner may assign the key here.
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
