package dev.entanglement;

import java.util.Objects;

/**
 * Identity of a synchronized object: the wire name of its type plus its canonical key.
 *
 * <p>Every store must be able to keep what a node holds, so both parts are bounded and free of
 * U+0000 (which PostgreSQL text cannot hold): a key of at most {@value #MAX_KEY_LENGTH} UTF-16
 * units (at most 1,500 bytes of UTF-8, within a database index entry), a type name of at most
 * {@value #MAX_TYPE_LENGTH}. A received message that names another key is refused as BAD_ENCODING
 * (PROTOCOL.md).
 *
 * @param type the type's wire name
 * @param key the canonical key, as produced by {@link SyncType#canonicalKey(Object)}
 * @throws IllegalArgumentException if a part is too long or contains U+0000
 */
public record ObjectKey(String type, String key) implements Comparable<ObjectKey> {
  /** The longest key, in UTF-16 units: 500. */
  public static final int MAX_KEY_LENGTH = 500;
  /** The longest type name, in UTF-16 units: 100. */
  public static final int MAX_TYPE_LENGTH = 100;

  public ObjectKey {
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(key, "key");
    if (key.length() > MAX_KEY_LENGTH || type.length() > MAX_TYPE_LENGTH
        || key.indexOf(0) >= 0 || type.indexOf(0) >= 0) {
      throw new IllegalArgumentException("an object key is at most " + MAX_KEY_LENGTH
          + " characters and its type name at most " + MAX_TYPE_LENGTH + ", without U+0000");
    }
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
