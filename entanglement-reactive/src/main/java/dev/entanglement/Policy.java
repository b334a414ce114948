package dev.entanglement;

/**
 * Decides which objects go to which neighbour and what is accepted from whom. A policy can be
 * attached at three levels, which are consulted in this order and where the first {@code false}
 * vetoes:
 *
 * <ol>
 *   <li>the node ({@link EntanglementNode.Builder#peerPolicy}): per destination or sender;
 *   <li>the registry ({@link Registry.Builder#policy});
 *   <li>the type ({@link SyncType#withPolicy}).
 * </ol>
 *
 * <p>Send: a vetoed destination never learns the object; if it already holds it, it receives a
 * withdrawal. Listen: {@link #shouldListen} runs before the value is decoded, {@link
 * #shouldListenConstructed} after; a veto answers {@link ErrorCode#UNAUTHORIZED} to the sender and
 * nothing is stored. Routes: {@link #shouldAcceptRoute} decides which owners a neighbour may speak
 * for. Hooks run on the node's serialized engine: they must be fast and must not block. After a change to what a policy decides, call {@link EntanglementNode#refreshPolicy()}.
 */
public interface Policy {

  /** Allows everything. */
  Policy ALLOW_ALL = new Policy() {};

  /** May {@code destination} hold this state? Called with the current state at send time. */
  default boolean shouldSend(PeerId destination, Snapshot<?> snapshot) {
    return true;
  }

  /** May {@code sender} make this request about {@code key}? Called before decoding. */
  default boolean shouldListen(
      PeerId sender, Operation operation, SyncType<?> type, ObjectKey key, OwnerId owner) {
    return true;
  }

  /**
   * May {@code neighbour} speak for {@code owner}? A neighbour speaks for an owner when it announces
   * a route to it (HELLO, ROUTES), relays its states, withdrawals and watermarks, announces its
   * removal (OWNER_REMOVED) and ends its transitions (TRANSITION_END). Refused, the owner is never
   * reached through the neighbour and the neighbour is never on its path: what it says for that owner
   * is refused ({@link ErrorCode#BAD_OWNER} for states, {@link ErrorCode#UNAUTHORIZED} for a removal)
   * and proposals for that owner are not routed to it.
   *
   * <p>Asked of the node's policy and of every registry's policy, not of a type's: the answer holds
   * for all of an owner's objects. Asked when the neighbour announces the owner and, for an owner it
   * does not announce, each time it speaks for it. The default trusts every neighbour for every owner;
   * where peers are not all trusted (browsers, teams), allow a peer only the owners it is known to
   * own, and relaying nodes the rest.
   */
  default boolean shouldAcceptRoute(PeerId neighbour, OwnerId owner) {
    return true;
  }

  /**
   * May {@code sender} make this request, given the decoded state? For {@link Operation#SYNC} the
   * snapshot is the received state; for proposals it is the state that would be committed.
   */
  default boolean shouldListenConstructed(
      PeerId sender, Operation operation, Snapshot<?> snapshot) {
    return true;
  }
}
