package dev.entanglement.samples.webflux;

import dev.entanglement.SyncType;

/**
 * A shape on the shared board, keyed by {@code id}. {@code owner} and {@code team} are the board's
 * own notions (who drew it); the Entanglement owner that decides every change is the board node.
 * A {@code locked} shape refuses every proposal.
 */
record Shape(
    String id,
    String owner,
    String team,
    String kind,
    double x,
    double y,
    double w,
    double h,
    String color,
    boolean locked) {

  static final SyncType<Shape> TYPE = SyncType.of("Shape", Shape.class, Shape::id);
}
