package dev.entanglement;

/** The state of a transition as seen by one node. Every state but {@link #ACTIVE} is terminal. */
public enum TransitionState {
  /** A tentative update. */
  ACTIVE,
  /** The owner committed the transition's final state. */
  CONFIRMED,
  /** The owner changed the object, or a competing transition won. */
  BROKEN,
  /** The owner rejected the transition's final state. */
  REJECTED,
  /** No update arrived within the transition TTL. */
  EXPIRED,
  /** The originator abandoned the transition. */
  ABORTED;

  public boolean isTerminal() {
    return this != ACTIVE;
  }
}
