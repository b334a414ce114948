package dev.entanglement;

/** What a received message asks for; passed to the listen hooks of a {@link Policy}. */
public enum Operation {
  /** An owner's state (or tombstone) flooding through the mesh. */
  SYNC,
  /** A non-owner's proposed update. */
  PROPOSE,
  /** A request to create an object. */
  CREATE,
  /** A non-owner's delete request. */
  DELETE,
  /** A tentative update of a transition. */
  TRANSITION
}
