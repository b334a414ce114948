package dev.entanglement;

import java.util.Objects;
import java.util.UUID;

/**
 * The identity of an owner: the only party that decides the state of the objects it owns. Not
 * blank, at most {@value #MAX_LENGTH} UTF-16 units, without U+0000, so that every store can keep
 * it (see {@link ObjectKey}).
 *
 * @throws IllegalArgumentException if the value is blank, too long or contains U+0000
 */
public record OwnerId(String value) {
  /** The longest owner id, in UTF-16 units: 200. */
  public static final int MAX_LENGTH = 200;

  public OwnerId {
    Objects.requireNonNull(value, "value");
    if (value.isBlank()) {
      throw new IllegalArgumentException("owner id must not be blank");
    }
    if (value.length() > MAX_LENGTH || value.indexOf(0) >= 0) {
      throw new IllegalArgumentException("an owner id is at most " + MAX_LENGTH + " characters, without U+0000");
    }
  }

  /** A new random owner id. */
  public static OwnerId random() {
    return new OwnerId(UUID.randomUUID().toString());
  }

  public static OwnerId of(String value) {
    return new OwnerId(value);
  }

  // Written out for the same reason as ObjectKey's: compared on every received state.
  @Override
  public boolean equals(Object o) {
    return this == o || o instanceof OwnerId other && value.equals(other.value);
  }

  @Override
  public int hashCode() {
    return value.hashCode();
  }

  @Override
  public String toString() {
    return value;
  }
}
