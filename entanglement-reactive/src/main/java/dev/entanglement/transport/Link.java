package dev.entanglement.transport;

import dev.entanglement.PeerId;
import org.reactivestreams.Publisher;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * One authenticated connection to a neighbour, carrying whole frame bodies in order in both
 * directions. Contract for implementations:
 *
 * <ul>
 *   <li>{@link #remote()} is established by the transport (certificate fingerprint, peer
 *       credentials, upgrade hook) before the link is handed to a node, and never changes;
 *   <li>{@link #receive()} accepts one subscriber, honours its demand, delivers frames in the order
 *       sent, and completes when the link closes; it MUST NOT signal {@code onError} for a close;
 *       it never delivers an empty body as a frame (a peer's empty body is malformed, refused by
 *       the transport). It MAY deliver {@link #END_OF_BURST} after the frames of one read from the
 *       connection (the marker takes one unit of demand); a link that delivered one MUST deliver
 *       one after every later read that brings frames, because the engine then holds a link's
 *       frames until their marker, to look up the objects of a burst of states together. It
 *       handles them without the marker once it holds {@code 256} or has no demand left. The engine
 *       cancels its subscription once the link is detached: a transport then releases whatever it
 *       received and did not deliver;
 *   <li>{@link #send(Publisher)} is called once; the transport MUST request frames only as it can
 *       carry them (channel writability, bandwidth), so that nothing outside the engine's coalescing
 *       queue buffers without bound; the node's subscription to {@code frames} is a {@link
 *       FrameSubscription}, so a transport can bound the bytes it is handed, not only the
 *       frames; when {@code frames} completes, the transport MUST deliver what
 *       it already accepted and then close the link (this is how a node sends a last ERROR frame);
 *       the returned {@code Mono} completes when the link closes;
 *   <li>an empty body ({@link #END_OF_BURST}) is not a frame and MUST NOT reach the peer: the
 *       engine sends one after each run of frames it hands over at once, if it has demand left
 *       (the marker takes one unit of it), and otherwise as soon as it has demand again, even
 *       with no frame to send. A transport may hold the frames of a run until its
 *       marker, or until every frame it requested has arrived, and write them together, one write
 *       to the connection instead of one per frame; it must not wait for anything else;
 *   <li>{@link #onClose()} completes once, when either side closes or the connection is lost;
 *   <li>{@link #dispose()} closes the link; it is idempotent.
 * </ul>
 */
public interface Link extends Disposable {
  /**
   * What the engine sends after a run of frames, and a transport may deliver after the frames of
   * one read (see above): empty, and recognised by its length, so a transport needs no reference
   * to this constant.
   */
  byte[] END_OF_BURST = new byte[0];

  /** The authenticated identity of the other end. */
  PeerId remote();

  /** Frames received, in order. */
  Flux<byte[]> receive();

  /** Sends frames pulled from {@code frames} as capacity allows. */
  Mono<Void> send(Publisher<byte[]> frames);

  /** Completes when the link is closed. */
  Mono<Void> onClose();
}
