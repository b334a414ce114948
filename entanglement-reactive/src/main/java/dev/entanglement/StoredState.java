package dev.entanglement;

import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import java.util.concurrent.atomic.AtomicLong;
import org.jspecify.annotations.Nullable;
import tools.jackson.databind.node.ObjectNode;

/**
 * One committed version of an object as a node holds it: the typed snapshot, its attribute tree,
 * and its encoded SYNC frame, which is built at most once per version and shared by every
 * destination (a relay reuses the frame it received, so it never re-encodes).
 *
 * <p>Immutable except for the lazily set frame; the attribute tree is never mutated.
 */
final class StoredState {
  final TypeBinding<?> binding;
  final Snapshot<?> snapshot;
  final ObjectNode attributes;
  private volatile byte @Nullable [] frame;

  StoredState(TypeBinding<?> binding, Snapshot<?> snapshot, ObjectNode attributes, byte @Nullable [] frame) {
    this.binding = binding;
    this.snapshot = snapshot;
    this.attributes = attributes;
    this.frame = frame;
  }

  ObjectKey key() {
    return snapshot.key();
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

  Message.Sync toSync() {
    return new Message.Sync(
        snapshot.key().type(),
        snapshot.key().key(),
        snapshot.owner().value(),
        snapshot.version().epoch(),
        snapshot.version().serial(),
        snapshot.committedAt(),
        snapshot.deleted(),
        attributes);
  }

  /** The SYNC frame of this version, encoding it on first use and counting the encode. */
  byte[] frame(FrameCodec codec, AtomicLong encodeCounter) {
    byte[] f = frame;
    if (f == null) {
      f = codec.encode(toSync());
      encodeCounter.incrementAndGet();
      frame = f;
    }
    return f;
  }
}
