package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The live connections each node dialled ({@link TcpClientTransport#connect}), by peer, for the
 * simultaneous-connect rule ({@link PeerOrder}): a server refuses a peer's connection only while the
 * node's own dialled connection to that peer is open and wins. A connection of the peer's that the
 * node still holds (say, half-open after the peer's side died) never blocks the peer's reconnect.
 *
 * <p>An entry counts open connections and goes when the last one closes, so nothing outlives the
 * connections; safe from any thread.
 */
final class DialledLinks {
  private record Key(EntanglementNode node, PeerId peer) {}

  private static final ConcurrentHashMap<Key, Integer> OPEN = new ConcurrentHashMap<>();

  private DialledLinks() {}

  /** Counts {@code link}, dialled by {@code node}, until it closes. */
  static void opened(EntanglementNode node, Link link) {
    Key k = new Key(node, link.remote());
    OPEN.merge(k, 1, Integer::sum);
    link.onClose().subscribe(null, e -> closed(k), () -> closed(k));
  }

  /** Whether {@code node} has an open connection to {@code peer} that it dialled. */
  static boolean open(EntanglementNode node, PeerId peer) {
    return OPEN.containsKey(new Key(node, peer));
  }

  private static void closed(Key k) {
    OPEN.computeIfPresent(k, (key, n) -> n == 1 ? null : n - 1);
  }
}
