package dev.entanglement.samples.webflux;

import dev.entanglement.Snapshot;
import dev.entanglement.Version;
import org.jspecify.annotations.Nullable;

/**
 * One committed state of a shape as JSON: the data of a server-sent event and the {@code state} of
 * a committed proposal.
 *
 * @param key the shape's id
 * @param owner the Entanglement owner that committed it
 * @param version the owner's version of this state ({@code epoch}, {@code serial})
 * @param value the shape; {@code null} when {@code deleted}
 * @param deleted whether the shape was deleted
 * @param committedAt the owner's commit time, in milliseconds since the epoch
 */
record ShapeEvent(
    String key, String owner, Version version, @Nullable Shape value, boolean deleted, long committedAt) {

  static ShapeEvent of(Snapshot<Shape> s) {
    return new ShapeEvent(
        s.key().key(), s.owner().value(), s.version(), s.value(), s.deleted(), s.committedAt());
  }
}
