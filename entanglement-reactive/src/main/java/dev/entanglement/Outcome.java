package dev.entanglement;

/**
 * The owner's answer to a proposal, create or delete request: a value, never an error signal.
 *
 * @param <T> the object's type
 */
public sealed interface Outcome<T> {

  /** The owner committed; {@code snapshot} is the committed state. */
  record Committed<T>(Snapshot<T> snapshot) implements Outcome<T> {}

  /**
   * The owner, a policy or a relay refused; or, with {@link ErrorCode#WITHHELD}, the owner committed
   * but the send policy does not let the requester see the committed state.
   */
  record Rejected<T>(ErrorCode code, String message) implements Outcome<T> {}

  default boolean isCommitted() {
    return this instanceof Committed;
  }
}
