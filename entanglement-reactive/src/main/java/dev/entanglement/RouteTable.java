package dev.entanglement;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.jspecify.annotations.Nullable;

/**
 * Routes toward owners, derived from what each neighbour announces (HELLO and ROUTES): a distance
 * vector with split horizon and poisoned reverse, capped at {@value #MAX_HOPS} hops. It holds no
 * state of its own; it reads the node's destinations and local owners, and is confined to the
 * engine's serial executor like them.
 */
final class RouteTable {
  /** Hop count that means "known, but not reachable through this neighbour". */
  static final int MAX_HOPS = 16;

  private final List<Destination> destinations;
  private final Set<OwnerId> localOwners;

  RouteTable(List<Destination> destinations, Set<OwnerId> localOwners) {
    this.destinations = destinations;
    this.localOwners = localOwners;
  }

  /** The neighbour to send a request for {@code owner} through, avoiding {@code exclude}. */
  @Nullable Destination routeTo(OwnerId owner, @Nullable Destination exclude) {
    Destination best = null;
    int bestHops = Integer.MAX_VALUE;
    for (Destination d : destinations) {
      Integer h = d.routes.get(owner);
      if (d == exclude || !routes(d) || h == null || h >= MAX_HOPS) {
        continue;
      }
      if (h < bestHops) {
        best = d;
        bestHops = h;
      }
    }
    return best;
  }

  /**
   * Whether requests may go through {@code d}: it has said HELLO, and no answer is cut off (it said
   * GOAWAY, or was refused with an ERROR: {@link Destination#passedOver}).
   */
  private static boolean routes(Destination d) {
    return d.ready && !d.passedOver;
  }

  /** True if the peer itself holds {@code owner} as a local owner: it never needs its own states. */
  static boolean ownedBy(Destination d, OwnerId owner) {
    Integer hops = d.routes.get(owner);
    return hops != null && hops == 0;
  }

  /**
   * True unless a path to {@code owner} is known and {@code from} is not on it. A neighbour is on
   * an owner's path if it announces the owner at all, even as unreachable through us: in a mesh
   * with cycles it relays that owner's states. A passed-over neighbour's announcements no longer
   * count: nothing more comes from it.
   */
  boolean onPath(Destination from, OwnerId owner) {
    if (from.routes.containsKey(owner)) {
      return true;
    }
    for (Destination d : destinations) {
      if (!d.passedOver && d.routes.containsKey(owner)) {
        return false;
      }
    }
    return true;
  }

  /** The best route to each reachable owner; computed once per change of the routes. */
  private record Best(int hops, Destination via) {}

  private @Nullable Map<OwnerId, Best> best;

  /** Forgets the computed routes; called whenever a neighbour's routes or the links change. */
  void invalidate() {
    best = null;
  }

  private Map<OwnerId, Best> best() {
    Map<OwnerId, Best> b = best;
    if (b == null) {
      b = new HashMap<>();
      for (Destination d : destinations) {
        if (!routes(d)) {
          continue;
        }
        for (Map.Entry<OwnerId, Integer> e : d.routes.entrySet()) {
          OwnerId o = e.getKey();
          int hops = e.getValue() + 1;
          if (localOwners.contains(o) || hops >= MAX_HOPS) {
            continue;
          }
          Best cur = b.get(o);
          if (cur == null || hops < cur.hops()) {
            b.put(o, new Best(hops, d));
          }
        }
      }
      best = b;
    }
    return b;
  }

  /**
   * Owners this node can reach, with hop counts, as announced to {@code to}: split horizon with
   * poisoned reverse ({@value #MAX_HOPS} means known but not reachable through this node). Costs
   * one pass over the owners: the best routes are computed once per change, not per neighbour.
   */
  Map<OwnerId, Integer> advertisedTo(Destination to) {
    Map<OwnerId, Integer> table = new HashMap<>();
    localOwners.forEach(o -> table.put(o, 0));
    // Poisoned reverse: an owner reached through `to` is still announced, as unreachable, so that
    // `to` knows this node relays that owner's states (see onPath) but never routes through it.
    best().forEach((o, b) -> table.put(o, b.via() == to ? MAX_HOPS : b.hops()));
    return table;
  }
}
