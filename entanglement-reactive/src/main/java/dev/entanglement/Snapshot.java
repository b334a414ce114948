package dev.entanglement;

import org.jspecify.annotations.Nullable;

/**
 * One committed state of an object, as decided by its owner.
 *
 * @param key the object's identity
 * @param value the state; {@code null} when {@code deleted}
 * @param owner the owner who committed it
 * @param version the owner's version of this state
 * @param deleted whether this is a tombstone (the owner deleted the object) or a withdrawal (the
 *     object is no longer shared with this node)
 * @param committedAt the owner's commit time, in milliseconds since the epoch of the owner's clock;
 *     {@code now - committedAt} is the age of information
 */
public record Snapshot<T>(
    ObjectKey key,
    @Nullable T value,
    OwnerId owner,
    Version version,
    boolean deleted,
    long committedAt) {

  /** The value; fails for a deleted snapshot. */
  public T require() {
    if (value == null) {
      throw new IllegalStateException(key + " is deleted");
    }
    return value;
  }
}
