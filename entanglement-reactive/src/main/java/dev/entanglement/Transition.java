package dev.entanglement;

import java.util.Map;
import reactor.core.publisher.Mono;

/**
 * A speculative change in progress, from {@link EntanglementNode#beginTransition}. Updates are
 * coalesced and flooded at high rate to every node that policy allows, which see them on {@link
 * EntanglementNode#tentative}; they never change the committed state. The transition ends with
 * {@link #commit()} (confirmed through the owner), {@link #abort()}, a break by the owner, or expiry
 * after the node's transition TTL with no update.
 */
public interface Transition<T> {

  String id();

  ObjectKey key();

  /** Sets the tentative full value. */
  void update(T value);

  /** Merges tentative attributes into the tentative value. */
  void update(Map<String, ?> attributes);

  /**
   * Proposes the tentative value to the owner under this transition's id. Emits {@link
   * Outcome.Committed} when the owner commits it, or {@link Outcome.Rejected} with {@link
   * ErrorCode#BROKEN_TRANSITION} if the transition was broken or had expired.
   */
  Mono<Outcome<T>> commit();

  /** Abandons the transition; every node ends it with {@link TransitionState#ABORTED}. */
  Mono<Void> abort();
}
