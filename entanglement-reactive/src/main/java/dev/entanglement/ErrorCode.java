package dev.entanglement;

/**
 * Typed errors. Those that an owner or a relay decides travel back to the requester and surface as
 * {@link Outcome.Rejected}; {@link #NOT_CONNECTED}, {@link #NO_RESPONSE} and a requester-side {@link
 * #TIMEOUT} are failures and surface as {@code onError} with an {@link EntanglementException}.
 */
public enum ErrorCode {
  /** A policy hook refused the message. */
  UNAUTHORIZED,
  /** The sender has no authority for the owner it claims, or the object has another owner. */
  BAD_OWNER,
  /** The object does not exist (a proposal cannot create). */
  NOT_FOUND,
  /** The message or the value could not be decoded into the declared type. */
  BAD_ENCODING,
  /** The receiver does not know the type's wire name. */
  UNKNOWN_TYPE,
  /** The operation is not valid for this object or state. */
  INVALID_OPERATION,
  /** The transition was broken, expired or already ended. */
  BROKEN_TRANSITION,
  /** No decision or answer arrived in time. */
  TIMEOUT,
  /**
   * A resource limit of the receiver was reached: too many pending requests or transitions from
   * one peer, or an object larger than the maximum object size.
   */
  LIMIT_EXCEEDED,
  /**
   * No route to the owner, the link was lost while the request was pending, or the owner's store
   * could not write the change (the node closed while its store failed, or the store refused it
   * for good): the cause, where there is one, is the store's error.
   */
  NOT_CONNECTED,
  /** A relay reported that the request will never be answered. */
  NO_RESPONSE,
  /**
   * The owner committed the request, but the send policy hides the committed state from the
   * requester (or from a relay on the way back): the answer carries no state, and a requester that
   * held the object gets a withdrawal. A value ({@link Outcome.Rejected}, since there is no snapshot
   * to give), not a failure; retrying commits again.
   */
  WITHHELD;

  /** The wire string of this code. */
  public String wire() {
    return name();
  }

  /** The code for a wire string; unknown strings map to {@link #INVALID_OPERATION}. */
  public static ErrorCode ofWire(String wire) {
    try {
      return valueOf(wire);
    } catch (IllegalArgumentException e) {
      return INVALID_OPERATION;
    }
  }

}
