package dev.entanglement;

import java.nio.ByteBuffer;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Objects;
import java.util.UUID;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * A synchronized type, declared once from a Java record or class:
 *
 * <pre>{@code
 * static final SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);
 * }</pre>
 *
 * <p>State travels as attributes (a Jackson tree of the value), so partial updates merge
 * attribute by attribute. Instances are immutable; the {@code with…} methods return copies.
 *
 * <p>Defaults: priority {@value #DEFAULT_PRIORITY} (lower is sent first), coalescing (not unique),
 * {@link Policy#ALLOW_ALL}.
 */
public final class SyncType<T> {
  /** The default priority. */
  public static final int DEFAULT_PRIORITY = 100;

  private static final JsonMapper KEY_MAPPER = JsonMapper.builder().build();

  private final String name;
  private final Class<T> javaType;
  private final Function<? super T, ?> keyExtractor;
  private final int priority;
  private final boolean unique;
  private final Policy policy;

  private SyncType(
      String name,
      Class<T> javaType,
      Function<? super T, ?> keyExtractor,
      int priority,
      boolean unique,
      Policy policy) {
    this.name = name;
    this.javaType = javaType;
    this.keyExtractor = keyExtractor;
    this.priority = priority;
    this.unique = unique;
    this.policy = policy;
  }

  /**
   * Declares a type.
   *
   * @param name the wire name, unique within a node
   * @param javaType the record or class the state decodes into (through Jackson)
   * @param keyExtractor returns the key of a value: a scalar, or a record for a composite key
   */
  public static <T> SyncType<T> of(
      String name, Class<T> javaType, Function<? super T, ?> keyExtractor) {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(javaType, "javaType");
    Objects.requireNonNull(keyExtractor, "keyExtractor");
    if (name.isBlank() || name.contains("/")) {
      throw new IllegalArgumentException("type name must be non-blank and contain no '/': " + name);
    }
    return new SyncType<>(name, javaType, keyExtractor, DEFAULT_PRIORITY, false, Policy.ALLOW_ALL);
  }

  /** A copy with another priority; lower is sent first. */
  public SyncType<T> withPriority(int priority) {
    if (priority < 0) {
      throw new IllegalArgumentException("priority must be >= 0: " + priority);
    }
    return new SyncType<>(name, javaType, keyExtractor, priority, unique, policy);
  }

  /**
   * A copy in unique mode: every published instance is a distinct event that never coalesces with
   * another, is delivered to watchers once and is not retained as state. A link or a watcher that
   * falls more than {@link EntanglementNode.Builder#maxQueuedEvents} events behind loses the oldest.
   */
  public SyncType<T> unique() {
    return new SyncType<>(name, javaType, keyExtractor, priority, true, policy);
  }

  /** A copy with a type-level policy, consulted after the node's and the registry's. */
  public SyncType<T> withPolicy(Policy policy) {
    return new SyncType<>(name, javaType, keyExtractor, priority, unique, Objects.requireNonNull(policy));
  }

  public String name() {
    return name;
  }

  public Class<T> javaType() {
    return javaType;
  }

  public int priority() {
    return priority;
  }

  public boolean isUnique() {
    return unique;
  }

  public Policy policy() {
    return policy;
  }

  /** The object key of {@code value}; unique types get a fresh key per call. */
  public ObjectKey keyOf(T value) {
    if (unique) {
      return new ObjectKey(name, randomKey());
    }
    return key(keyExtractor.apply(value));
  }

  /**
   * Where unique types' keys come from: a DRBG seeded once, when this class is loaded (by an
   * application declaring its types), not the operating system's source on every key as {@link
   * UUID#randomUUID} does. The engine draws keys on its executor, which may be running on an event
   * loop, where that read is a blocking call (BlockHound caught it, session 37). Unpredictable keys
   * matter: a peer that could guess the next event's key could send an event of that key first,
   * and receivers would drop the real one as already seen.
   */
  private static final SecureRandom EVENT_KEYS = seededEventKeys();

  private static SecureRandom seededEventKeys() {
    try {
      SecureRandom keys = SecureRandom.getInstance("DRBG");
      keys.nextBytes(new byte[16]); // seeds it now, on the loading thread
      return keys;
    } catch (NoSuchAlgorithmException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  /** A random (version 4) UUID from {@link #EVENT_KEYS}, as text. */
  private static String randomKey() {
    byte[] b = new byte[16];
    EVENT_KEYS.nextBytes(b);
    b[6] = (byte) ((b[6] & 0x0f) | 0x40); // version 4
    b[8] = (byte) ((b[8] & 0x3f) | 0x80); // IETF variant
    ByteBuffer bytes = ByteBuffer.wrap(b);
    return new UUID(bytes.getLong(), bytes.getLong()).toString();
  }

  /** The object key for a key value, as returned by the key extractor. */
  public ObjectKey key(@Nullable Object keyValue) {
    return new ObjectKey(name, canonicalKey(keyValue));
  }

  /**
   * The canonical string of a key value: scalars as their string form, composite keys (records,
   * maps) as compact JSON with sorted property names.
   */
  public static String canonicalKey(@Nullable Object keyValue) {
    if (keyValue == null) {
      throw new IllegalArgumentException("key must not be null");
    }
    if (keyValue instanceof CharSequence
        || keyValue instanceof Number
        || keyValue instanceof Boolean
        || keyValue instanceof UUID
        || keyValue instanceof Enum<?>) {
      return keyValue.toString();
    }
    JsonNode tree = KEY_MAPPER.valueToTree(keyValue);
    if (tree.isValueNode()) {
      return tree.asString();
    }
    return KEY_MAPPER.writeValueAsString(sorted(tree));
  }

  /** A copy of {@code node} whose objects list their properties in name order, at every depth. */
  private static JsonNode sorted(JsonNode node) {
    if (node.isObject()) {
      ObjectNode out = KEY_MAPPER.createObjectNode();
      new TreeMap<>(node.properties().stream()
              .collect(Collectors.toMap(Map.Entry::getKey, Map.Entry::getValue)))
          .forEach((k, v) -> out.set(k, sorted(v)));
      return out;
    }
    if (node.isArray()) {
      ArrayNode out = KEY_MAPPER.createArrayNode();
      node.forEach(v -> out.add(sorted(v)));
      return out;
    }
    return node;
  }

  @Override
  public String toString() {
    return "SyncType[" + name + "]";
  }
}
