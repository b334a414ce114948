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

  // Written out rather than generated: keys are looked up in maps of every held object on each
  // frame, and the generated equals (a method-handle chain) showed as a tenth of a receiver's time.
  @Override
  public boolean equals(Object o) {
    return this == o || o instanceof ObjectKey k && key.equals(k.key) && type.equals(k.type);
  }

  @Override
  public int hashCode() {
    return hashOf(type.hashCode(), key.hashCode());
  }

  /** The hash code of the key whose type name and key have these hash codes. */
  static int hashOf(int typeHash, int keyHash) {
    return 31 * typeHash + keyHash;
  }

  @Override
  public String toString() {
    return type + "/" + key;
  }
}
