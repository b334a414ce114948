package dev.entanglement;

import dev.entanglement.internal.CoalescingQueue;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.Link;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Subscriber;
import tools.jackson.databind.node.ObjectNode;

/**
 * A node's session with one neighbour, over one {@link Link}.
 *
 * <p>State machine: {@code OPEN} (attached, HELLO not yet received) → {@code READY} (HELLO
 * received; routes known) → {@code CLOSED} (link closed; terminal). Before it closes, a link may
 * be ending: {@code FLUSHING} ({@link #closeWhenFlushed}: with {@link #goingAway} for the node's
 * close, what is queued is sent, then a GOAWAY; after an ERROR, that ERROR alone; then the frames
 * are completed) or {@code PEER_LEAVING} ({@link #peerLeaving}: the peer said GOAWAY; nothing is
 * sent, and the link waits for the peer to end it). A link refused with an ERROR or whose peer
 * said GOAWAY is {@link #passedOver}: its requests and routes end at once, not at the close. A
 * grace timer ({@code Engine.CLOSE_GRACE}) bounds every ending state: a link that has not taken
 * its last frame, or whose peer has not ended it, is then closed (one whose frames are completed
 * is left to its transport, which closes it once they are delivered). All fields are confined to
 * the engine's serial executor.
 *
 * <p>Invariants:
 *
 * <ul>
 *   <li>{@code queue} holds at most one entry per (lane, key); frames are materialized from the
 *       node's current state only when the link demands one, so the peer gets the latest state;
 *   <li>{@code held} is what the peer holds according to what was sent to it or received from it; a
 *       state is not sent to a peer that holds that version or a newer one;
 *   <li>every id in {@code outstanding} names a request sent on this link and not yet answered; on
 *       close, or once the link is passed over, each of their obligations is ended explicitly. An
 *       id whose obligations all timed out leaves at the sweep that ended them: its late answer, if
 *       it comes, is taken as the SYNC the owner will not send.
 * </ul>
 */
final class Destination {
  /** Lanes of the outbound queue: entries coalesce only within a lane and key. */
  enum Lane {
    CONTROL,
    STATE,
    TENTATIVE,
    PROPOSE,
    UNIQUE
  }

  record QueueKey(Lane lane, Object id) {
    // Written out: a commit offers its key to every destination's queue, and the generated record
    // methods (method-handle chains) were the hot spot of a fan-out to a thousand destinations.
    @Override
    public boolean equals(Object o) {
      return this == o || o instanceof QueueKey k && lane == k.lane && id.equals(k.id);
    }

    @Override
    public int hashCode() {
      return 31 * lane.ordinal() + id.hashCode();
    }
  }

  /** What waits in the outbound queue; the frame is built at dequeue time. */
  sealed interface Outbound {
    /**
     * The current state of {@code key} (or a withdrawal), built when the link asks for it.
     *
     * @param retained the version whose frame this entry holds ({@code StoredState#retainFrame}),
     *     released once, when the entry is sent, replaced by a newer entry or dropped with the
     *     link; null if the entry holds none (a catch-up, a policy refresh, a withdrawal)
     */
    record State(ObjectKey key, @Nullable StoredState retained) implements Outbound {
      State(ObjectKey key) {
        this(key, null);
      }
    }

    /** The current tentative state of a transition. */
    record Tentative(ObjectKey key, String transitionId) implements Outbound {}

    /** This node's route table, computed for this peer at dequeue. */
    record Routes() implements Outbound {}

    /** A message built in advance (control, and replies that are no {@link Answer}). */
    record Control(Message message) implements Outbound {}

    /**
     * An answer to something the peer sent: to a request (a RESPONSE, an ERROR or a NO_RESPONSE)
     * or to a state (a WITHDRAW); counted in {@link #answersQueued} while it waits.
     *
     * @param message the answer, encoded at dequeue; null if {@code frame} is
     * @param frame the answer's frame built in advance (a RESPONSE around a state's frame); null if
     *     {@code message} is
     */
    record Answer(@Nullable Message message, byte @Nullable [] frame) implements Outbound {}

    /**
     * An event (a value of a unique type), its frame built once for every link and relayed
     * verbatim; {@code key} is its entry's key in the queue and in {@link #queuedEvents} (until a
     * closing link's entries are queued again under keys of their own: see {@code Engine.goAway}).
     */
    record Event(QueueKey key, byte[] frame) implements Outbound {}

    /** The node's watermark for an owner, computed at dequeue; {@code full} ends a full resync. */
    record Watermark(OwnerId owner, boolean full) implements Outbound {}

    /** A request toward an owner; merges with a pending request for the same key. */
    record Request(
        Message.ProposalKind kind,
        boolean create,
        TypeBinding<?> binding,
        @Nullable ObjectKey key,
        OwnerId owner,
        boolean partial,
        ObjectNode attributes,
        @Nullable String transitionId,
        int hops,
        List<Obligation> obligations)
        implements Outbound {
      /** A request made on this node, with one local waiter. */
      static Request local(
          Message.ProposalKind kind,
          boolean create,
          TypeBinding<?> binding,
          @Nullable ObjectKey key,
          OwnerId owner,
          boolean partial,
          ObjectNode attributes,
          @Nullable String transitionId,
          Obligation waiter) {
        return new Request(
            kind, create, binding, key, owner, partial, attributes, transitionId, 0,
            new ArrayList<>(List.of(waiter)));
      }
    }
  }

  final Link link;
  final PeerId peer;
  final long order;
  /** Paces the frames requested from the link; stopped on close. */
  final InboundLimiter inbound;
  final CoalescingQueue<QueueKey, Outbound> queue = new CoalescingQueue<>();
  /**
   * The keys of the {@link Outbound.Event} entries in {@link #queue}, oldest first: an event is
   * here exactly while its entry is queued, so at most the node's limit of queued events ({@code
   * Limits#queuedEvents}); the engine drops the oldest to make room (see {@code Engine.floodEvent}).
   * Empty once the link is going away or passed over: its entries are then queued again under keys
   * of their own or dropped, and no event is offered to it any more.
   */
  final java.util.LinkedHashSet<QueueKey> queuedEvents = new java.util.LinkedHashSet<>();
  /** Events dropped from {@link #queue} unsent, the oldest first, to keep to that limit. */
  long eventsDropped;
  /**
   * The {@link Outbound.Answer} entries in {@link #queue}. Past the node's limit of queued answers
   * ({@code Limits#queuedAnswers}) the link is watched, and a peer that reads none of them is
   * refused (see {@code Engine.answer}).
   */
  int answersQueued;
  /** The pending check of a link past the bound of queued answers, or null. */
  reactor.core.@Nullable Disposable unreadAnswersCheck;
  /** {@link #framesSent} when that check was armed; the same at the check: it read nothing. */
  long framesSentWhenWatched;

  /** Empties {@link #queue}, its index too (see {@link CoalescingQueue#clear}). */
  void clearQueue() {
    queue.clear();
    queuedEvents.clear();
    answersQueued = 0;
  }
  /**
   * What the peer holds, per object; a state this link is the {@link StoredState#holder} of stands
   * for one more entry, not written here.
   */
  final HeldVersions held = new HeldVersions();
  /** Whether a state ever named this link its holder (see {@link StoredState#holder}). */
  boolean everHolder;
  final Map<String, Long> tentativeSeen = new HashMap<>();
  /** Active transitions this peer sent updates of; at most the per-peer transition limit. */
  final java.util.Set<String> transitionsReceived = new java.util.HashSet<>();
  /** Requests from this peer not answered yet; at most the per-peer pending request limit. */
  int requestsPending;
  final Map<Long, List<Obligation>> outstanding = new HashMap<>();
  /** Owner to hop count as the peer last announced it (HELLO, ROUTES). */
  Map<OwnerId, Integer> announced = Map.of();
  /**
   * The announced routes the policy lets the peer speak for ({@link Policy#shouldAcceptRoute}): the
   * only ones routed through and taken as the peer's path.
   */
  Map<OwnerId, Integer> routes = Map.of();
  @Nullable Map<OwnerId, Integer> lastAdvertised;
  /**
   * Whether the link delivered {@code Link.END_OF_BURST}: from then on its frames wait in {@link
   * #burst} until the next marker (see {@code Engine.receiveFrame}).
   */
  boolean marksBursts;
  /** Frames received since the link's last marker and not handled yet; at most {@code MAX_BURST}. */
  final List<byte[]> burst = new ArrayList<>();
  boolean ready;
  boolean closed;
  boolean closeWhenFlushed;
  /** The node is closing: the link's last frame, a GOAWAY, is queued, and nothing more will be. */
  boolean goingAway;
  /**
   * The peer said GOAWAY: nothing more is sent on the link, which waits for the peer to end it (at
   * most {@code Engine.CLOSE_GRACE}); it is {@link #passedOver}.
   */
  boolean peerLeaving;
  /**
   * Nothing more is read from the peer, or it said it sends nothing more (GOAWAY, or refused with an
   * ERROR): its requests and routes are ended ({@code Engine.endRequestsAndRoutes}), no request is
   * routed through it, its announcements put no other neighbour off an owner's path ({@code
   * RouteTable.onPath}), and nothing more is queued for it but the ERROR.
   */
  boolean passedOver;
  /**
   * Whether a frame from the peer is handled: not once the link is closed or ending. After an
   * ERROR or the node's GOAWAY nothing more is read, and after the peer's GOAWAY, its last frame,
   * whatever it sends is a protocol violation, dropped. The transport still reads to the end of
   * the stream, so that the peer can end the link cleanly.
   */
  boolean takesFrames() {
    return !closed && !closeWhenFlushed && !peerLeaving;
  }

  /** The transport's frames are completed: it closes the link once it has delivered them. */
  boolean framesCompleted;
  long nextRequestId = 1;
  long lastReceivedNanos;
  /**
   * The peer's watermarks from its CATCH_UP: it may hold states of these owners that this node
   * does not know of, so a state of them that the policy hides from it is withdrawn even if {@code
   * held} does not name it (once per key, see {@code withdrawn}).
   */
  final Map<OwnerId, Version> peerWatermarks = new HashMap<>();
  /**
   * What the peer has been sent: every state that the send policy of generation {@code
   * policyGeneration} (refreshes counted) showed it, among those this node came to hold up to its
   * count of arrivals {@code arrival}.
   */
  record Offered(long policyGeneration, long arrival) {}

  /**
   * What had left for the peer when its queue last drained after its CATCH_UP was answered;
   * carried over from its previous link at the CATCH_UP, null while unknown. Frames that left may
   * still be lost with the link: see {@link #acknowledged}.
   */
  @Nullable Offered offered;
  /**
   * What the peer acknowledged: the PONG of a probe (a PING sent after {@link #probed} had left)
   * came back, so it has processed every frame sent before. Carried over from its previous link
   * at the CATCH_UP; null while unknown.
   */
  @Nullable Offered acknowledged;
  /** Whether the watermark flush asked for a probe, sent when the queue next drains. */
  boolean probeWanted;
  /** The probe in flight, at most one: what had left before it, and its PING nonce. */
  @Nullable Offered probed;
  long probeNonce;
  /** Whether the peer's CATCH_UP has been answered (queued) on this link. */
  boolean catchUpAnswered;
  /**
   * Keys of objects the node holds that were withdrawn from the peer on this link since a state of
   * them was last sent; a key leaves when its object is dropped, purged or expires.
   */
  final java.util.Set<ObjectKey> withdrawn = new java.util.HashSet<>();
  /** The last watermark sent to the peer, per owner. */
  final Map<OwnerId, Version> sentWatermarks = new HashMap<>();
  /**
   * Keys received from the peer per owner, until the peer's first watermark for that owner; at most
   * as many in all as the node holds objects, plus {@link #CATCH_UP_RECORD_SLACK}.
   */
  final Map<OwnerId, java.util.Set<ObjectKey>> catchUpSeen = new HashMap<>();
  /** The keys in {@link #catchUpSeen}. */
  long catchUpSeenKeys;
  /**
   * Whether the record outgrew its bound and was given up: from then on nothing is recorded, and a
   * full resync on this link drops nothing (objects deleted while the peer was away may stay).
   */
  boolean catchUpRecordGivenUp;

  /** Keys a catch-up may record beyond the node's number of objects: 4,096. */
  static final int CATCH_UP_RECORD_SLACK = 4_096;

  /** States of {@link #refusedOnRoute} kept per link at most: 4,096 (the oldest go first). */
  static final int REFUSED_ON_ROUTE_KEPT = 4_096;

  /**
   * The newest state per object that the peer sent and this node refused because the peer was not
   * yet on the owner's path (a route change in flight) or the policy did not let it speak for the
   * owner: the peer counts it as delivered, so it is applied again once the routes put the peer on
   * the path, or a policy refresh allows it. Beyond the bound, a state refused on route comes back
   * only with a catch-up (the node's watermark stays below it); one refused by the policy holds no
   * watermark down and comes back with its object's next version.
   */
  final java.util.LinkedHashMap<ObjectKey, RefusedState> refusedOnRoute = new java.util.LinkedHashMap<>();

  /** A refused state as received: applied again as it was then (see {@link #refusedOnRoute}). */
  record RefusedState(
      TypeBinding<?> binding, Message.Sync sync, byte @Nullable [] frame, @Nullable Object bound) {}

  void keepRefused(ObjectKey key, RefusedState state) {
    refusedOnRoute.remove(key); // the newest goes to the end
    refusedOnRoute.put(key, state);
    if (refusedOnRoute.size() > REFUSED_ON_ROUTE_KEPT) {
      refusedOnRoute.remove(refusedOnRoute.keySet().iterator().next());
    }
  }

  /** Owners whose first watermark from the peer has arrived. */
  final java.util.Set<OwnerId> caughtUp = new java.util.HashSet<>();
  /**
   * Owners of which this node dropped tombstones after the retention that the peer's CATCH_UP is
   * behind, each with a version, the lower of the newest tombstone dropped and this node's
   * watermark: until the peer's first watermark of such an owner, a state of it from the peer that
   * this node does not hold, no newer than that version, is taken for one that was deleted
   * meanwhile (the peer was away): not applied, and withdrawn from the peer.
   */
  final Map<OwnerId, Version> behindPurge = new HashMap<>();
  /** The scheduled steady-state watermark flush; null when none is pending (at most one is). */
  reactor.core.@Nullable Disposable watermarkFlush;
  /** The handshake and keepalive timers: fixed for the life of the link. */
  final List<reactor.core.Disposable> timers = new ArrayList<>();
  @Nullable Subscriber<? super byte[]> out;
  long demand;
  /**
   * Bytes of frames the transport may still be handed: unlimited until it first asks for bytes
   * ({@link dev.entanglement.transport.FrameSubscription#request(long, long)}), then what it asked for
   * less the bodies handed over since; below zero by less than a frame after the frame that
   * crossed it.
   */
  long byteDemand = Long.MAX_VALUE;
  /** Whether the transport counts bytes: set by its first request of bytes. */
  boolean bytesCounted;
  /**
   * Whether frames were handed to {@code out} since its last {@link Link#END_OF_BURST}: the
   * transport may hold them until a marker (see {@code Engine.drain}).
   */
  boolean burstOpen;
  /** Whether this link is in the engine's list of drains left for the end of the turn. */
  boolean drainDeferred;
  /** The node id the peer announced in its HELLO; null before it. */
  @Nullable String helloNode;
  long framesSent;
  long bytesSent;
  long framesReceived;
  long bytesReceived;
  long updatesProduced;
  long updatesCoalesced;
  final AgeWindow staleness = new AgeWindow();

  Destination(Link link, long order, InboundLimiter inbound) {
    this.link = link;
    this.peer = link.remote();
    this.order = order;
    this.inbound = inbound;
  }

  @Override
  public String toString() {
    return "Destination[" + peer + "]";
  }

  /** Records that the peer holds version {@code v} of {@code key}, keeping the newer one known. */
  void noteHeld(ObjectKey key, Version v) {
    held.putIfNewer(key, v);
  }
}
