package dev.entanglement.samples.webflux;

import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.Proposal;
import java.time.Duration;
import java.util.List;
import org.jspecify.annotations.Nullable;
import org.springframework.context.SmartLifecycle;
import org.springframework.stereotype.Component;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;

/**
 * The board's owner side: starts the node with the context, decides every proposal (from HTTP and
 * from WebSocket peers alike), publishes the initial shapes, and closes the node on shutdown.
 *
 * <p>It runs in the default lifecycle phase, after the web server has started and before it stops:
 * closing the node first completes the open event streams, so a graceful shutdown does not wait for
 * them.
 */
@Component
final class ShapeBoard implements SmartLifecycle {
  /** The shapes the board starts with; {@code logo} is locked and refuses every proposal. */
  static final List<Shape> INITIAL =
      List.of(
          new Shape("sun", "ana", "red", "circle", 40, 40, 60, 60, "#f5c542", false),
          new Shape("house", "ben", "blue", "rect", 150, 120, 120, 90, "#4a90d9", false),
          new Shape("logo", "board", "staff", "rect", 10, 300, 200, 40, "#333333", true));

  private static final Duration WAIT = Duration.ofSeconds(30);

  private final EntanglementNode node;
  private @Nullable Disposable decisions;

  ShapeBoard(EntanglementNode node) {
    this.node = node;
  }

  @Override
  public void start() {
    node.start().block(WAIT);
    // Decide before anything exists to propose a change to.
    decisions = node.proposals(Shape.TYPE).subscribe(ShapeBoard::decide);
    Flux.fromIterable(INITIAL).concatMap(s -> node.publish(Shape.TYPE, s)).then().block(WAIT);
  }

  /** Locked shapes refuse every change; a shape keeps a positive size. Anything else commits. */
  static void decide(Proposal<Shape> proposal) {
    Shape current = proposal.current() == null ? null : proposal.current().value();
    Shape proposed = proposal.proposed();
    if (current != null && current.locked()) {
      proposal.reject(ErrorCode.INVALID_OPERATION, "shape '" + current.id() + "' is locked");
    } else if (proposed != null && (proposed.w() <= 0 || proposed.h() <= 0)) {
      proposal.reject(ErrorCode.INVALID_OPERATION, "width and height must be positive");
    } else {
      proposal.commit();
    }
  }

  @Override
  public void stop() {
    if (decisions != null) {
      decisions.dispose();
      decisions = null;
    }
    node.close().block(WAIT);
  }

  @Override
  public boolean isRunning() {
    return decisions != null;
  }
}
