package dev.entanglement.netty;

import dev.entanglement.PeerId;

/**
 * Resolves simultaneous connects between two peers the same way on both sides: the connection
 * dialed by the peer with the lower fingerprint is kept.
 */
final class PeerOrder {
  private PeerOrder() {}

  /** True if the connection {@code local} dialed to {@code remote} wins over the reverse one. */
  static boolean localDialWins(PeerId local, PeerId remote) {
    return local.value().compareTo(remote.value()) < 0;
  }
}
