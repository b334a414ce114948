package dev.entanglement.samples.cli;

import dev.entanglement.ObjectKey;
import dev.entanglement.Operation;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Policy;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import java.lang.reflect.Method;
import java.lang.reflect.RecordComponent;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.jspecify.annotations.Nullable;

/**
 * A {@link Policy} that splits peers and objects into three teams: red, blue and staff. Red peers
 * never receive blue objects and blue peers never receive red ones; staff sees everything.
 *
 * <p><b>Objects.</b> An object's team is its {@code team} attribute: the state is a record with a
 * component {@code team}, or a {@link Map} with the key {@code "team"}, whose value is {@code
 * "red"}, {@code "blue"} or {@code "staff"}. An object without a valid team is seen by staff and
 * nodes only.
 *
 * <p><b>Peers.</b> A peer's team, and the owners it speaks for, are set with {@link #assign} (the
 * command-line node does it from the WebSocket upgrade request). A peer whose identity is a
 * certificate fingerprint ({@code ni:///sha-256;…}, as the TLS transport establishes it) is a node:
 * it relays for every team and every owner, so it sees and writes everything, like staff. A peer
 * with no team receives nothing and may write nothing.
 *
 * <p><b>Rules</b> for a red or blue peer (staff and nodes: everything is allowed):
 *
 * <ul>
 *   <li>it speaks only for the owners assigned with it ({@link #shouldAcceptRoute}): the node routes
 *       nothing else through it, and refuses its states, withdrawals and removal of any other owner,
 *       so a red peer can neither pose as a blue peer's owner nor remove it;
 *   <li>it receives objects of its own team and staff objects; a deletion (which carries no team)
 *       reaches it as a withdrawal of the object it held, with the same effect;
 *   <li>a state it sends (as an owner), a proposal's result and a created object are accepted only
 *       if their team is the peer's own; a deletion of its own object is accepted (the engine has
 *       checked that the peer speaks for the owner);
 *   <li>proposals, delete requests and transitions must be about an object this node holds with the
 *       peer's team: a relay cannot see what a proposal would commit, so it checks the object as it
 *       is, and the owner's node checks the result if it runs this policy too;
 *   <li>create requests must go to a local owner of this node, where the created value is checked;
 *       a relay cannot see it, so it refuses creates for other owners.
 * </ul>
 *
 * <p>Attach it at the registry level ({@link dev.entanglement.Registry.Builder#policy}): the engine
 * consults decoded values there, not at the node level. After {@link #assign} changed the team of a
 * connected peer, call {@link dev.entanglement.EntanglementNode#refreshPolicy()}: objects the peer
 * may no longer see are withdrawn, and those it may now see are sent.
 */
public final class TeamsPolicy implements Policy {
  /** A team. Written in lower case on the wire and in URLs. */
  public enum Team {
    RED,
    BLUE,
    STAFF;

    /** The name as written: {@code red}, {@code blue} or {@code staff}. */
    public String label() {
      return name().toLowerCase(Locale.ROOT);
    }

    /** The team written exactly as its {@link #label()}, or empty. */
    public static Optional<Team> parse(@Nullable Object text) {
      for (Team t : values()) {
        if (t.label().equals(text)) {
          return Optional.of(t);
        }
      }
      return Optional.empty();
    }
  }

  /** Reads the state the guarded node holds; {@code node::get} fits. */
  @FunctionalInterface
  public interface HeldStates {
    Optional<? extends Snapshot<?>> get(SyncType<?> type, Object key);
  }

  private static final String NODE_PREFIX = "ni:///sha-256;";

  private static final ClassValue<Optional<Method>> TEAM_ACCESSOR =
      new ClassValue<>() {
        @Override
        protected Optional<Method> computeValue(Class<?> type) {
          if (!type.isRecord()) {
            return Optional.empty();
          }
          for (RecordComponent c : type.getRecordComponents()) {
            Method m = c.getAccessor();
            if (c.getName().equals("team") && m.trySetAccessible()) {
              return Optional.of(m);
            }
          }
          return Optional.empty();
        }
      };

  /** A peer's team and the owners it speaks for. */
  private record Assignment(Team team, Set<OwnerId> owners) {}

  private final Map<PeerId, Assignment> assignments = new ConcurrentHashMap<>();
  private final HeldStates held;
  private final Set<OwnerId> localOwners;

  /**
   * @param held the states the guarded node holds, to check requests that carry no state
   * @param localOwners the owners whose objects the guarded node decides
   */
  public TeamsPolicy(HeldStates held, Set<OwnerId> localOwners) {
    this.held = Objects.requireNonNull(held, "held");
    this.localOwners = Set.copyOf(localOwners);
  }

  /**
   * Puts {@code peer} in {@code team}, speaking for {@code owners}: the owners of its own objects.
   *
   * @return true if that changed its team or its owners: then call {@code refreshPolicy()} if it is
   *     connected
   */
  public boolean assign(PeerId peer, Team team, Set<OwnerId> owners) {
    Assignment a = new Assignment(Objects.requireNonNull(team, "team"), Set.copyOf(owners));
    return !a.equals(assignments.put(Objects.requireNonNull(peer, "peer"), a));
  }

  /** Forgets the team of {@code peer}, which then receives nothing and may write nothing. */
  public void forget(PeerId peer) {
    assignments.remove(peer);
  }

  /** The team of a peer: staff for a node, the assigned team otherwise, or empty. */
  public Optional<Team> teamOf(PeerId peer) {
    if (isNode(peer)) {
      return Optional.of(Team.STAFF);
    }
    return Optional.ofNullable(assignments.get(peer)).map(Assignment::team);
  }

  /** True if {@code peer} is identified by a certificate fingerprint: a node. */
  public static boolean isNode(PeerId peer) {
    return peer.value().startsWith(NODE_PREFIX);
  }

  /** The team of an object's state, from its {@code team} attribute, or empty. */
  public static Optional<Team> teamOfValue(@Nullable Object value) {
    if (value instanceof Map<?, ?> map) {
      return Team.parse(map.get("team"));
    }
    if (value == null) {
      return Optional.empty();
    }
    Optional<Method> accessor = TEAM_ACCESSOR.get(value.getClass());
    if (accessor.isEmpty()) {
      return Optional.empty();
    }
    try {
      return Team.parse(accessor.get().invoke(value));
    } catch (ReflectiveOperationException e) {
      return Optional.empty();
    }
  }

  /** A node speaks for every owner, a peer with a team for the owners assigned with it. */
  @Override
  public boolean shouldAcceptRoute(PeerId neighbour, OwnerId owner) {
    if (isNode(neighbour)) {
      return true;
    }
    Assignment a = assignments.get(neighbour);
    return a != null && a.owners().contains(owner);
  }

  @Override
  public boolean shouldSend(PeerId destination, Snapshot<?> snapshot) {
    Team peer = teamOf(destination).orElse(null);
    if (peer == null) {
      return false;
    }
    if (peer == Team.STAFF) {
      return true;
    }
    if (snapshot.deleted()) {
      return false;
    }
    Team object = teamOfValue(snapshot.value()).orElse(null);
    return object == peer || object == Team.STAFF;
  }

  @Override
  public boolean shouldListen(
      PeerId sender, Operation operation, SyncType<?> type, ObjectKey key, OwnerId owner) {
    Team peer = teamOf(sender).orElse(null);
    if (peer == null) {
      return false;
    }
    if (peer == Team.STAFF) {
      return true;
    }
    return switch (operation) {
      case SYNC -> true; // decided on the decoded state
      case CREATE -> localOwners.contains(owner);
      case PROPOSE, DELETE, TRANSITION ->
          held.get(type, key.key())
              .filter(s -> !s.deleted() && teamOfValue(s.value()).orElse(null) == peer)
              .isPresent();
    };
  }

  @Override
  public boolean shouldListenConstructed(PeerId sender, Operation operation, Snapshot<?> snapshot) {
    Team peer = teamOf(sender).orElse(null);
    if (peer == null) {
      return false;
    }
    if (peer == Team.STAFF || snapshot.deleted()) {
      return true;
    }
    return teamOfValue(snapshot.value()).orElse(null) == peer;
  }
}
