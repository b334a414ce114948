package dev.entanglement;

import java.util.Objects;
import java.util.UUID;

/** The identity of an owner: the only party that decides the state of the objects it owns. */
public record OwnerId(String value) {
  public OwnerId {
    Objects.requireNonNull(value, "value");
    if (value.isBlank()) {
      throw new IllegalArgumentException("owner id must not be blank");
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
