package dev.entanglement;

import java.util.Objects;

/**
 * Identity of a synchronized object: the wire name of its type plus its canonical key.
 *
 * @param type the type's wire name
 * @param key the canonical key, as produced by {@link SyncType#canonicalKey(Object)}
 */
public record ObjectKey(String type, String key) implements Comparable<ObjectKey> {
  public ObjectKey {
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(key, "key");
  }

  @Override
  public int compareTo(ObjectKey o) {
    int c = type.compareTo(o.type);
    return c != 0 ? c : key.compareTo(o.key);
  }

  @Override
  public String toString() {
    return type + "/" + key;
  }
}
