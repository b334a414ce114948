package dev.entanglement;

import java.util.List;

/**
 * Counters of one node since it was built.
 *
 * @param framesSent frames handed to links
 * @param bytesSent bytes of those frames
 * @param framesReceived frames received from links
 * @param statesEncoded SYNC frames encoded: one per committed version for all the destinations it
 *     is queued for at once, whatever their number (compare with {@code framesSent}); a version
 *     sent again later (a catch-up) is encoded again, since a sent version keeps only its value
 * @param updatesOffered state changes offered to outbound queues, one per destination
 * @param updatesCoalesced offers that merged into a pending entry instead of adding one
 * @param publishesMerged publishes whose value replaced an earlier publish of the same object that
 *     was still waiting for the node (see {@link EntanglementNode#publish(Object)}): each completed
 *     the earlier one's {@code Mono} empty
 * @param eventsDropped events (values of unique types) dropped, the oldest first, by links and
 *     watchers that fell more than {@link EntanglementNode.Builder#maxQueuedEvents} events behind:
 *     never sent on that link, or never delivered to that watcher
 * @param queuedEntries entries waiting in outbound queues now
 * @param pendingRequests requests (local or relayed) waiting for an answer now
 * @param pendingDecisions proposals waiting for an owner's decision now
 * @param activeTransitions transitions this node tracks now
 * @param errorsReceived unsolicited ERROR frames received (for example a policy veto of a SYNC)
 * @param tasksFailed engine tasks that ended with an unexpected exception (each is logged at ERROR):
 *     0 unless the node has a bug; bad input from a peer is answered with ERROR instead
 * @param peers one entry per neighbour connected now
 */
public record NodeStats(
    long framesSent,
    long bytesSent,
    long framesReceived,
    long statesEncoded,
    long updatesOffered,
    long updatesCoalesced,
    long publishesMerged,
    long eventsDropped,
    int queuedEntries,
    int pendingRequests,
    int pendingDecisions,
    int activeTransitions,
    long errorsReceived,
    long tasksFailed,
    List<PeerStats> peers) {}
