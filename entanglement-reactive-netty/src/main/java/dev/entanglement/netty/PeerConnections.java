package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The open TCP connections of each node, by peer and by which side dialled, for the
 * simultaneous-connect rule ({@link PeerOrder}), which both sides apply the same way:
 *
 * <ul>
 *   <li>a server refuses a peer's connection only while the node's own dialled connection to that
 *       peer is open and wins. A connection of the peer's that the node still holds (say, half-open
 *       after the peer's side died) never blocks the peer's reconnect;
 *   <li>a client whose dial loses drops it once its handshake is done if the node holds an open
 *       connection the peer dialled (the dials crossed): attaching it would replace the connection
 *       the peer keeps, and the peer, whose own dial was attached after ours reached it, would drop
 *       ours in turn, leaving neither;
 *   <li>a server that accepts a winning dial closes the node's own dials to that peer, for the
 *       crossing the client's check missed (the peer's dial was accepted just after it looked).
 * </ul>
 *
 * <p>An entry holds the open connections and goes when the last one closes, so nothing outlives
 * the connections; safe from any thread.
 */
final class PeerConnections {
  /** Which side opened a connection. */
  enum Side {
    /** This node dialled the peer ({@link TcpClientTransport}). */
    DIALLED,
    /** The peer dialled this node ({@link TcpServerTransport}). */
    ACCEPTED
  }

  private record Key(EntanglementNode node, PeerId peer, Side side) {}

  private static final ConcurrentHashMap<Key, Set<Link>> OPEN = new ConcurrentHashMap<>();

  private PeerConnections() {}

  /** Holds {@code link}, opened on {@code side} of {@code node}, until it closes. */
  static void opened(EntanglementNode node, Link link, Side side) {
    Key k = new Key(node, link.remote(), side);
    OPEN.compute(k, (key, links) -> {
      Set<Link> s = links != null ? links : ConcurrentHashMap.newKeySet();
      s.add(link);
      return s;
    });
    link.onClose().subscribe(null, e -> closed(k, link), () -> closed(k, link));
  }

  /** Whether {@code node} has an open connection to {@code peer} opened on {@code side}. */
  static boolean open(EntanglementNode node, PeerId peer, Side side) {
    return OPEN.containsKey(new Key(node, peer, side));
  }

  /** Closes {@code node}'s open connections to {@code peer} opened on {@code side}. */
  static void closeAll(EntanglementNode node, PeerId peer, Side side) {
    Set<Link> links = OPEN.get(new Key(node, peer, side));
    if (links != null) {
      links.forEach(Link::dispose);
    }
  }

  private static void closed(Key k, Link link) {
    OPEN.computeIfPresent(k, (key, links) -> {
      links.remove(link);
      return links.isEmpty() ? null : links;
    });
  }
}
