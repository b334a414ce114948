package dev.entanglement;

import java.time.Duration;

/**
 * What one node sends to and receives from one neighbour, over the current link to it.
 *
 * @param peer the neighbour
 * @param framesSent frames handed to the link
 * @param bytesSent bytes of those frames (bodies; transport headers excluded)
 * @param framesReceived frames received on the link
 * @param bytesReceived bytes of those frames (bodies)
 * @param updatesProduced new object states this node had for the peer: one per committed or
 *     received version that policy and routing let it offer to this peer
 * @param updatesCoalesced of those, the ones that replaced an older state of the same object still
 *     waiting to be sent; the peer never sees the replaced version
 * @param stalenessP50 median age of information of the states sent to the peer: how long after the
 *     owner committed a version this node handed it to the link, over the last {@value
 *     AgeWindow#SIZE} states sent (zero before any); it relies on the owner's clock and this node's
 *     agreeing, as on one machine or with NTP
 * @param stalenessP99 99th percentile of the same
 * @param queueDepth entries waiting in the outbound queue to this peer now (at most one per
 *     object, whatever the update rate)
 * @param pendingRequests proposals, creates and deletes sent on this link, not yet answered and
 *     not timed out
 * @param activeTransitions transitions started by the peer's node that this node tracks now
 * @param inboundPauses times this node stopped reading the link because the peer was over the
 *     inbound rate ({@link EntanglementNode.Builder#maxInboundRate}); 0 without a rate
 * @param inboundThrottled how long the link has been paused so in total, the current pause included
 * @param eventsDropped events (values of unique types) for the peer dropped unsent, the oldest
 *     first, because more than {@link EntanglementNode.Builder#maxQueuedEvents} were waiting for the
 *     link
 */
public record PeerStats(
    PeerId peer,
    long framesSent,
    long bytesSent,
    long framesReceived,
    long bytesReceived,
    long updatesProduced,
    long updatesCoalesced,
    Duration stalenessP50,
    Duration stalenessP99,
    int queueDepth,
    int pendingRequests,
    int activeTransitions,
    long inboundPauses,
    Duration inboundThrottled,
    long eventsDropped) {

  /**
   * Updates produced per update sent or still queued: 1 when nothing coalesced, 100 when 100
   * updates of one object met a stalled link and only the last went out. 1 before any update.
   */
  public double conflationRatio() {
    long kept = updatesProduced - updatesCoalesced;
    return kept <= 0 ? 1.0 : (double) updatesProduced / kept;
  }
}
