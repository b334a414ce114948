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

  @Override
  public String toString() {
    return value;
  }
}
