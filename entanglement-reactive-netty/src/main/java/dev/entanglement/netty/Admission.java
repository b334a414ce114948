package dev.entanglement.netty;

import dev.entanglement.PeerId;
import java.util.Collection;
import java.util.Set;
import java.util.function.Function;
import reactor.core.publisher.Mono;

/**
 * Which peers a server accepts: the configured destinations, and for any other identity the
 * answer of an {@code unknownDestination} hook, which refuses by default; a hook that fails, throws
 * or returns null refuses. A refusal is logged.
 */
final class Admission {
  private final Set<PeerId> destinations;
  private final Function<PeerId, Mono<Boolean>> unknownDestination;

  Admission(Collection<PeerId> destinations, Function<PeerId, Mono<Boolean>> unknownDestination) {
    this.destinations = Set.copyOf(destinations);
    this.unknownDestination = unknownDestination;
  }

  static Function<PeerId, Mono<Boolean>> refuseUnknown() {
    return peer -> Mono.just(false);
  }

  Mono<Boolean> admit(PeerId peer) {
    if (destinations.contains(peer)) {
      return Mono.just(true);
    }
    // A hook that throws or returns null refuses too, as one that fails.
    return Mono.defer(() -> unknownDestination.apply(peer)).defaultIfEmpty(false).onErrorReturn(false);
  }
}
