package dev.entanglement;

import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import org.jspecify.annotations.Nullable;
import tools.jackson.databind.ObjectMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * One committed version of an object as a node holds it: the typed snapshot and its encoded SYNC
 * frame, which is built at most once while the version is being sent and shared by every
 * destination (a relay reuses the frame it received, so it never re-encodes).
 *
 * <p>The attribute tree is held only when it is the source of the version (a merged proposal, a
 * stored record, a catch-up); otherwise it is derived on demand, from the frame for a received
 * state (lossless: it keeps attributes the Java type ignores) or from the value for a local
 * commit (whose frame is itself written from the value, so decoding it would only cost more).
 * Holding one form instead of three keeps a node that holds many objects cheap for the garbage
 * collector, which dominated the cost of sustained syncs when every version kept its tree.
 *
 * <p>For the same reason a local commit keeps its frame only while it has users: the engine
 * {@linkplain #retainFrame retains} the version for every destination it is queued for and while
 * it commits it, and {@linkplain #releaseFrame releases} it as each is done. At zero users the
 * frame is dropped, and encoded again from the value if a later catch-up needs it. A received frame
 * is the source of the attributes and is always kept.
 *
 * <p>Immutable except for the frame and its user count, and the arrival, which the engine sets
 * once, before the state is visible in its map of objects; only the engine's serial executor
 * touches them. A held tree is never mutated. The fields any thread touches are those of the
 * publishes that wait to replace this version ({@link PublishSlot}).
 */
final class StoredState {
  final TypeBinding<?> binding;
  final Snapshot<?> snapshot;
  private final @Nullable ObjectNode tree;
  /** Whether the frame was given (received): it is then the lossless source of the attributes. */
  private final boolean frameIsSource;
  private byte @Nullable [] frame;
  /** Destinations this version is queued for, plus one while it is being committed. */
  private int frameUsers;
  /**
   * When this node came to hold this version, in its own order of arrival (see {@code
   * Engine.arrivals}); 0 for a state reloaded from the store. Read on the engine's executor only.
   */
  long arrival;
  /**
   * Whether this is its key's state in the engine's {@link ObjectTable}: set when put there, cleared
   * when replaced or removed, by the table's writer, the engine's executor. A queue entry that
   * retained this state builds its frame from it without looking the key up again while it is set.
   */
  boolean inTable;
  /** Its slot in the {@link ObjectTable} while {@link #inTable}; set by the table's writer. */
  int tableSlot;
  /**
   * A link whose peer holds {@link #heldVersion} of this key or a newer version, or null. It stands
   * for that link's entry in its {@link Destination#held} table, which the engine then neither writes
   * nor, for its own owners' objects, reads: a node skips a table access, a likely cache miss on a
   * node of many objects, for every state its source sends it (the holder is the source) and for
   * every state it sends the holder (which it carries from version to version of its object).
   * Engine's {@code putState}, {@code noteHolds} and {@code forgetHeld} state the rules. Read and
   * written on the engine's executor only.
   */
  @Nullable Destination holder;
  /** The version {@link #holder} holds at least; set with it. */
  @Nullable Version heldVersion;
  /**
   * Whether a publish was made on this version while the engine was busy (1) or not (0). Unlike the
   * fields above, any thread: see {@link #firstPublishOn}.
   */
  private volatile int publishedOn;
  /**
   * The last {@link PublishSlot} made on this version, taken or waiting, or null. Any thread:
   * publishers read it and replace it with {@link #replacePublishSlot}.
   */
  private volatile @Nullable PublishSlot publishSlot;

  private static final java.lang.invoke.VarHandle PUBLISHED_ON;
  private static final java.lang.invoke.VarHandle PUBLISH_SLOT;

  static {
    try {
      java.lang.invoke.MethodHandles.Lookup l = java.lang.invoke.MethodHandles.lookup();
      PUBLISHED_ON = l.findVarHandle(StoredState.class, "publishedOn", int.class);
      PUBLISH_SLOT = l.findVarHandle(StoredState.class, "publishSlot", PublishSlot.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  /**
   * @param tree the attribute tree, required unless {@code frame} is given or the snapshot carries
   *     the value (or is deleted)
   */
  StoredState(
      TypeBinding<?> binding, Snapshot<?> snapshot, @Nullable ObjectNode tree, byte @Nullable [] frame) {
    if (tree == null && frame == null && snapshot.value() == null && !snapshot.deleted()) {
      throw new IllegalArgumentException("no source for the attributes of " + snapshot.key());
    }
    this.binding = binding;
    this.snapshot = snapshot;
    this.tree = tree;
    this.frameIsSource = frame != null;
    this.frame = frame;
  }

  ObjectKey key() {
    return snapshot.key();
  }

  /**
   * Marks this version as published on while the engine was busy; true for the first publish to
   * mark it, which then gets a task of its own (see {@link PublishSlot}). Any thread.
   */
  boolean firstPublishOn() {
    return publishedOn == 0 && PUBLISHED_ON.compareAndSet(this, 0, 1);
  }

  @Nullable PublishSlot publishSlot() {
    return publishSlot;
  }

  /** Lets this version's slot, if any, be joined no more; any thread. */
  void unhookPublishSlot() {
    if (publishSlot != null) {
      publishSlot = null;
    }
  }

  /** Makes {@code next} this version's slot if {@code expected} still is; any thread. */
  boolean replacePublishSlot(@Nullable PublishSlot expected, PublishSlot next) {
    return PUBLISH_SLOT.compareAndSet(this, expected, next);
  }

  OwnerId owner() {
    return snapshot.owner();
  }

  Version version() {
    return snapshot.version();
  }

  boolean deleted() {
    return snapshot.deleted();
  }

  /** The attributes of this version; a fresh tree unless held, so callers must not mutate it. */
  ObjectNode attributes(FrameCodec codec, ObjectMapper json) {
    if (tree != null) {
      return tree;
    }
    if (snapshot.deleted()) {
      return json.createObjectNode();
    }
    byte[] f = frame;
    if (frameIsSource
        && f != null
        && codec.decode(f) instanceof Message.Sync s
        && s.attributes() instanceof ObjectNode o) {
      return o;
    }
    return json.valueToTree(snapshot.value());
  }

  /**
   * A new tree: these attributes with {@code patch}'s top-level attributes replacing their own (a
   * partial proposal's merge). Only a held tree is copied first; a derived one is already fresh.
   */
  ObjectNode attributesPatchedWith(ObjectNode patch, FrameCodec codec, ObjectMapper json) {
    ObjectNode out = tree != null ? tree.deepCopy() : attributes(codec, json);
    out.setAll(patch);
    return out;
  }

  /** One more user of the frame: a destination this version is queued for, or its commit. */
  void retainFrame() {
    frameUsers++;
  }

  /** One user less; the last drops a local commit's frame (a received one is kept). */
  void releaseFrame() {
    if (frameUsers > 0 && --frameUsers == 0 && !frameIsSource) {
      frame = null;
    }
  }

  /**
   * The SYNC frame of this version, encoding it on first use and counting the encode. A published
   * version is written straight from its value, without a tree.
   */
  byte[] frame(FrameCodec codec, ObjectMapper json, AtomicLong encodeCounter) {
    byte[] f = frame;
    if (f == null) {
      Snapshot<?> s = snapshot;
      Object attributes =
          tree != null ? tree : s.deleted() ? json.createObjectNode() : Objects.requireNonNull(s.value());
      f = codec.encodeSync(
          s.key().type(), s.key().key(), s.owner().value(), s.version().epoch(), s.version().serial(),
          s.committedAt(), s.deleted(), attributes, json);
      encodeCounter.incrementAndGet();
      frame = f;
    }
    return f;
  }
}
