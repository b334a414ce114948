package dev.entanglement.transport;

import org.reactivestreams.Subscription;

/**
 * The subscription a node gives the transport for a link's outbound frames ({@link
 * Link#send}): demand in frames, as on any subscription, and, once the transport asks for it, in
 * bytes too.
 *
 * <p>Why: demand in frames bounds the memory a transport holds only as far as it can guess the
 * size of the frames it will get, and frame sizes change without warning (the small HELLO and
 * ROUTES of a new link, then a catch-up of large objects). A transport that also asks for bytes
 * is handed frames only while both demands allow, so what it holds unwritten is bounded by the
 * bytes it asked for, whatever the frames' sizes.
 *
 * <p>Rules: until the transport first asks for bytes, bytes are not counted. From then on the
 * node hands over a frame only while the bytes it handed over (frame bodies, {@code
 * byte[].length}) are fewer than the bytes requested; the frame that crosses the line is handed
 * over whole, so the bytes handed over exceed those requested by less than one frame. {@link
 * Link#END_OF_BURST} takes a unit of frame demand and no bytes. Byte demand adds up as frame
 * demand does, saturating at {@code Long.MAX_VALUE}. A node's subscription takes requests from
 * any thread, also at the same time, and applies them in the order each thread made them.
 */
public interface FrameSubscription extends Subscription {
  /**
   * Asks for {@code frames} more frames and {@code bytes} more bytes in one signal, so that the
   * node looks at its queue once for both (a transport gives back what a completed write held).
   * Either may be zero; a negative one, or both zero, is ignored.
   */
  void request(long frames, long bytes);
}
