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
 * nothing is stored. Hooks run on the node's serialized engine: they must be fast and must not
 * block. After a change to what a policy decides, call {@link EntanglementNode#refreshPolicy()}.
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
   * May {@code sender} make this request, given the decoded state? For {@link Operation#SYNC} the
   * snapshot is the received state; for proposals it is the state that would be committed.
   */
  default boolean shouldListenConstructed(
      PeerId sender, Operation operation, Snapshot<?> snapshot) {
    return true;
  }
}
