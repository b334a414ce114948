package dev.entanglement;

import dev.entanglement.transport.Link;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.UUID;
import java.util.function.Predicate;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import tools.jackson.databind.JsonNode;

/**
 * A node: holds objects, commits the state of those its local owners own, and keeps the rest in
 * sync with its neighbours over {@link Link}s.
 *
 * <pre>{@code
 * EntanglementNode node = EntanglementNode.builder()
 *     .registry(Registry.builder("demo").type(CURSOR).build())
 *     .build();
 * node.watchAll(CURSOR).subscribe(s -> System.out.println(s.value()));
 * node.publish(new Cursor("me", 10, 20)).block();
 * }</pre>
 *
 * <p>All methods are non-blocking and thread-safe. Every publisher is cold: nothing happens until
 * it is subscribed. State streams never complete on their own; they complete when the node is
 * closed. Rejections are values ({@link Outcome.Rejected}); {@code onError} means a failure (no
 * route, lost link, timeout).
 */
public final class EntanglementNode {
  final Engine engine;

  private EntanglementNode(Engine engine) {
    this.engine = engine;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** This node's id, sent to neighbours in HELLO. */
  public String id() {
    return engine.nodeId;
  }

  /** The first local owner: the one {@link #publish(Object)} commits as. */
  public OwnerId owner() {
    return engine.defaultOwner();
  }

  /**
   * Starts the node: with a {@link dev.entanglement.store.StateStore}, loads owners (keeping their
   * epochs and serials), objects, tombstones and watermarks. A node with a store refuses to attach
   * links or publish before it has started; a node without one needs no start. If starting fails,
   * the node closes its store (giving up its database), and a later {@code start()} loads it again.
   */
  public Mono<Void> start() {
    return engine.start();
  }

  /**
   * Closes every link, completes every stream, and refuses further requests. Each link first sends
   * what was queued for it, then a GOAWAY frame as its last frame; requests queued toward an owner
   * fail with {@code NOT_CONNECTED}. Completes once everything accepted before has been written and
   * the store is closed (with a store), and then every link is closed: a link that does not take
   * its last frames within 1 s is closed without them, and the wait for the links is at most 2 s.
   */
  public Mono<Void> close() {
    return engine.close();
  }

  /**
   * Completes when {@link #close()} begins: from then on the node refuses further requests. For
   * what must stop with the node, such as a transport's reconnecting dialer.
   */
  public Mono<Void> onClose() {
    return engine.onClose();
  }

  // ------------------------------------------------------------------ owner writes

  /**
   * Commits {@code value} as the new state of its object, owned by {@link #owner()}, and floods it.
   * The type is found from the value's class; use {@link #publish(SyncType, Object)} when a class
   * is declared under several types.
   *
   * <p>Fails with {@link EntanglementException} ({@link ErrorCode#BAD_OWNER}) if another owner owns
   * the object: propose a change instead.
   *
   * <p>Latest state, not history: while the node is busy, publishes of an object it already holds
   * wait merged, by object and owner. A publish made while an earlier one of the same object still
   * waits replaces its value, and the earlier publish's {@code Mono} then completes <em>empty</em>,
   * on the thread of the publish that replaced it: its value never becomes a version of its own,
   * and whatever happens to the later value (an error such as {@code BAD_OWNER} included) is
   * reported to the later publish only. So a loop of publishes faster than the node commits them
   * leaves a few waiting tasks per object, not one per call. Each thread's operations on an object
   * take effect in the order it made them, whatever other threads do: a thread's publish never
   * takes the place of another thread's publish queued before the thread's own earlier operations
   * (a publish, delete, proposal, decision, transition or owner change). A publish whose thread
   * waits for it before its next operation is merged only with other threads' later publishes.
   * Values of different objects may take effect in another order than they were published (as they
   * may reach a peer in another order).
   *
   * @return the version the value took effect as; empty if a later publish of the object replaced
   *     the value before it took effect
   */
  public <T> Mono<Snapshot<T>> publish(T value) {
    Objects.requireNonNull(value, "value");
    return cast(engine.publish(null, engine.defaultOwner(), value));
  }

  /**
   * Commits {@code value} as an object of {@code type} owned by {@link #owner()}; merged while it
   * waits as {@link #publish(Object)} says.
   */
  public <T> Mono<Snapshot<T>> publish(SyncType<T> type, T value) {
    Objects.requireNonNull(value, "value");
    return cast(engine.publish(type, engine.defaultOwner(), value));
  }

  /**
   * Commits {@code value} as an object of {@code type} owned by the local owner {@code owner}; merged
   * while it waits as {@link #publish(Object)} says.
   */
  public <T> Mono<Snapshot<T>> publish(SyncType<T> type, OwnerId owner, T value) {
    Objects.requireNonNull(value, "value");
    return cast(engine.publish(type, owner, value));
  }

  /**
   * Publishes every value of {@code values}, in order, as objects of {@code type} owned by {@link
   * #owner()}, pulling them as the engine commits them. At most 256
   * values are handed over and not yet committed at any time, so a source faster than the engine
   * is slowed down (backpressure): values wait in the source, not in the node (a loop of {@link
   * #publish} calls holds its latest value per object in the node). Values a source emits on an
   * application's thread keep their order with that thread's later operations on the object, as
   * publishes do; a synchronous source is pulled on the engine's thread, in no order with the
   * application's other operations, and its values are committed as they are handed over, with no
   * task or {@code Mono} each: for a stream of values this costs less per value than a {@code
   * publish} call each (docs/BENCHMARKS.md, B2). Each such value counts as one of the engine's
   * tasks, so a thread that runs the engine's turn is held no longer than for as many tasks.
   * Versions of one object coalesce on every link as for {@code publish}.
   *
   * @return completes once the source completed and every value is committed (durable, with a
   *     store); fails with the first value that cannot be published, as {@code publish} would
   *     (the source is then cancelled and nothing after it is published), or with the source's
   *     error. Cancelling stops the pulling; values already handed over are still committed.
   */
  public <T> Mono<Void> publishAll(SyncType<T> type, Publisher<? extends T> values) {
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(values, "values");
    return engine.publishAll(type, engine.defaultOwner(), values);
  }

  /** {@link #publishAll(SyncType, Publisher)} as the local owner {@code owner}. */
  public <T> Mono<Void> publishAll(SyncType<T> type, OwnerId owner, Publisher<? extends T> values) {
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(owner, "owner");
    Objects.requireNonNull(values, "values");
    return engine.publishAll(type, owner, values);
  }

  /**
   * Deletes an object. If a local owner owns it, the delete is committed and floods as a versioned
   * tombstone; otherwise it is a request routed to the owner, who decides.
   */
  public <T> Mono<Outcome<T>> delete(SyncType<T> type, Object key) {
    return castOutcome(engine.delete(type, key));
  }

  // ------------------------------------------------------------------ reads

  /**
   * The state of one object: the current state first (if the node holds it), then every change. A
   * delete emits a snapshot marked deleted. Backpressure keeps only the latest state: a slow
   * subscriber never sees a backlog.
   */
  public <T> Flux<Snapshot<T>> watch(SyncType<T> type, Object key) {
    return engine.watch(type, type.key(key), s -> true);
  }

  /**
   * Every object of a type: the current live objects first, then every change. Backpressure is
   * per key: a slow subscriber receives the latest state of every key and loses none. For a
   * {@linkplain SyncType#unique() unique} type (events, each its own key) a slow subscriber keeps
   * the newest {@linkplain Builder#maxQueuedEvents queued events}, in order, and misses older ones.
   */
  public <T> Flux<Snapshot<T>> watchAll(SyncType<T> type) {
    return engine.watch(type, null, s -> true);
  }

  /**
   * As {@link #watchAll(SyncType)}, restricted to snapshots that pass {@code filter} (which also
   * sees deleted snapshots, whose value is null).
   */
  public <T> Flux<Snapshot<T>> watchAll(SyncType<T> type, Predicate<Snapshot<T>> filter) {
    return engine.watch(type, null, filter);
  }

  /** The latest snapshot this node holds (possibly a tombstone), or empty. */
  public <T> Optional<Snapshot<T>> get(SyncType<T> type, Object key) {
    StoredState st = engine.objects.get(type.key(key));
    if (st == null) {
      return Optional.empty();
    }
    @SuppressWarnings("unchecked")
    Snapshot<T> s = (Snapshot<T>) st.snapshot;
    return Optional.of(s);
  }

  // ------------------------------------------------------------------ proposals

  /** Proposes a full new value for an object owned elsewhere (or here). */
  public <T> Mono<Outcome<T>> propose(SyncType<T> type, Object key, T value) {
    JsonNode tree = engine.json.valueToTree(value);
    return castOutcome(engine.propose(type, key, tree, false, null));
  }

  /** Proposes new values for some attributes; the owner merges them into the current state. */
  public <T> Mono<Outcome<T>> propose(SyncType<T> type, Object key, Map<String, ?> attributes) {
    JsonNode tree = engine.attributesTree(attributes);
    return castOutcome(engine.propose(type, key, tree, true, null));
  }

  /**
   * Asks {@code owner} to create {@code value}. The owner may commit it as is, commit a value with
   * a key it assigns, or reject.
   */
  public <T> Mono<Outcome<T>> create(SyncType<T> type, OwnerId owner, T value) {
    return castOutcome(engine.create(type, owner, value));
  }

  /**
   * Proposals for objects of {@code type} owned here. The first active subscriber that has
   * requested one receives each proposal and must decide it; while subscribers exist but none has
   * requested one, proposals wait in the node, in arrival order, and go to the first that requests.
   * With no subscriber the registry's default decision applies, also to the proposals that waited
   * when the last subscriber leaves. Each proposal not decided within the decision timeout is
   * rejected with {@link ErrorCode#TIMEOUT}, and one that timed out while waiting is never handed
   * out; one handed to a subscriber that cancelled before taking it goes to the next, in its place.
   * (An operator between the flux and the decider that requests ahead, such as {@code publishOn},
   * holds what it requested: if the decider cancels, what that operator still holds is neither
   * handed on nor decided, and is rejected at its timeout.) Without such an operator, proposals are
   * handed on the node's own thread: a decider that blocks there stalls the node. A partial
   * proposal committed with {@link Proposal#commit()} after its object was committed again is
   * offered again, merged onto the newer state (see there).
   */
  public <T> Flux<Proposal<T>> proposals(SyncType<T> type) {
    return engine.proposals(type);
  }

  // ------------------------------------------------------------------ transitions

  /**
   * Starts a speculative change of an existing object. Nothing is sent until the first {@link
   * Transition#update}.
   *
   * @throws EntanglementException with {@link ErrorCode#NOT_FOUND} if the node holds no such object
   */
  public <T> Transition<T> beginTransition(SyncType<T> type, Object key) {
    @SuppressWarnings("unchecked")
    Transition<T> t = (Transition<T>) engine.beginTransition(type, key);
    return t;
  }

  /** Tentative updates and terminal signals of the transitions of one object. */
  public <T> Flux<Tentative<T>> tentative(SyncType<T> type, Object key) {
    return engine.tentative(type, type.key(key));
  }

  /** Tentative updates and terminal signals of every transition of a type. */
  public <T> Flux<Tentative<T>> tentativeAll(SyncType<T> type) {
    return engine.tentative(type, null);
  }

  // ------------------------------------------------------------------ topology and owners

  /**
   * Runs the protocol over {@code link} until it closes. Subscribing attaches the link; the Mono
   * completes when the link closes; cancelling it closes the link. A new link to a peer replaces
   * the old one.
   */
  public Mono<Void> attach(Link link) {
    return engine.attach(link);
  }

  /** True if a link to {@code peer} is attached and open. */
  public boolean isConnected(PeerId peer) {
    return engine.isConnected(peer);
  }

  /** Adds a local owner with a new epoch. */
  public Mono<Void> addOwner(OwnerId owner) {
    return engine.addOwner(owner, System.currentTimeMillis());
  }

  /** Removes a local owner: its objects disappear here and on every node that learns of it. */
  public Mono<Void> removeOwner(OwnerId owner) {
    return engine.removeOwner(owner);
  }

  /**
   * Re-applies the send policies to every open link after what they decide has changed: objects
   * that became visible are sent, and objects that became hidden are withdrawn.
   */
  public Mono<Void> refreshPolicy() {
    return engine.refreshPolicy();
  }

  /** Counters, read without synchronization (approximate while the node is busy). */
  public NodeStats stats() {
    return engine.stats();
  }

  /** Counters, read on the engine, consistent with every task submitted before the call. */
  public Mono<NodeStats> statsConsistent() {
    return engine.statsConsistent();
  }

  /**
   * Statistics every {@code period}, each consistent as {@link #statsConsistent()}, for dashboards
   * and meters (see {@code dev.entanglement.micrometer.EntanglementMeters}). Ticks run on the
   * node's scheduler; a slow subscriber skips ticks rather than queueing them; the flux completes
   * when the node closes.
   *
   * @throws IllegalArgumentException if {@code period} is not positive
   */
  public Flux<NodeStats> statsEvery(Duration period) {
    return engine.statsEvery(period);
  }

  // Unchecked casts of the Mono itself, not a map operator per call: the engine emits the value
  // of the type the caller named (generics are erased; nothing is converted).
  @SuppressWarnings("unchecked")
  private static <T> Mono<Snapshot<T>> cast(Mono<Snapshot<?>> m) {
    return (Mono<Snapshot<T>>) (Mono<?>) m;
  }

  @SuppressWarnings("unchecked")
  private static <T> Mono<Outcome<T>> castOutcome(Mono<Outcome<?>> m) {
    return (Mono<Outcome<T>>) (Mono<?>) m;
  }

  /**
   * Builds an {@link EntanglementNode}. Defaults: a random node id; one random local owner; {@link
   * Policy#ALLOW_ALL} for peers; {@link Schedulers#parallel()} for timers; decision timeout 10 s;
   * request timeout 30 s; transition TTL 5 s; keepalive 15 s; handshake timeout 10 s; tombstone
   * retention 7 days; per peer at most 1,024 pending requests and 1,024 active transitions; objects
   * up to 256 KiB; no inbound message-rate limit.
   */
  public static final class Builder {
    private String id = UUID.randomUUID().toString();
    private final List<Registry> registries = new ArrayList<>();
    private final Map<OwnerId, Long> owners = new LinkedHashMap<>();
    private Policy peerPolicy = Policy.ALLOW_ALL;
    private Scheduler scheduler = Schedulers.parallel();
    private Duration decisionTimeout = Duration.ofSeconds(10);
    private Duration requestTimeout = Duration.ofSeconds(30);
    private Duration transitionTtl = Duration.ofSeconds(5);
    private Duration keepAlive = Duration.ofSeconds(15);
    private Duration handshakeTimeout = Duration.ofSeconds(10);
    private Duration tombstoneRetention = Duration.ofDays(7);
    private int pendingRequestsPerPeer = Limits.DEFAULT_PENDING_REQUESTS_PER_PEER;
    private int transitionsPerPeer = Limits.DEFAULT_TRANSITIONS_PER_PEER;
    private int maxObjectSize = Limits.DEFAULT_MAX_OBJECT_SIZE;
    private int inboundRate;
    private int inboundBurst;
    private int queuedEvents = Limits.DEFAULT_QUEUED_EVENTS;
    private int queuedAnswers = Limits.DEFAULT_QUEUED_ANSWERS;
    private @Nullable Long epoch;
    private dev.entanglement.store.@Nullable StateStore store;

    private Builder() {}

    /** The node id. Default: a random UUID. */
    public Builder id(String id) {
      this.id = Objects.requireNonNull(id, "id");
      return this;
    }

    /** Adds a registry. Type names must be unique across all registries of a node. */
    public Builder registry(Registry registry) {
      registries.add(Objects.requireNonNull(registry, "registry"));
      return this;
    }

    /** Adds a local owner. Default: one random owner if none is added. */
    public Builder owner(OwnerId owner) {
      owners.put(Objects.requireNonNull(owner, "owner"), null);
      return this;
    }

    /**
     * The epoch of the local owners' versions. Default: the wall-clock time at build, so that an
     * in-memory node that restarts starts a newer epoch and receivers replace its old states. An
     * in-memory node whose neighbour's catch-up holds a later epoch of a local owner (its clock
     * was behind an earlier run's) moves that owner above it while it runs (docs/PROTOCOL.md §4.1).
     */
    public Builder epoch(long epoch) {
      this.epoch = epoch;
      return this;
    }

    /**
     * Where the node keeps its state across restarts. Default: none (memory only; a restarted node
     * starts a new epoch and its peers resync it). With a store, call {@link #start()} before use;
     * a local commit is acknowledged and flooded only once durable.
     */
    public Builder store(dev.entanglement.store.StateStore store) {
      this.store = Objects.requireNonNull(store, "store");
      return this;
    }

    /** The node-level policy, consulted first for every destination and sender. */
    public Builder peerPolicy(Policy policy) {
      this.peerPolicy = Objects.requireNonNull(policy, "policy");
      return this;
    }

    /**
     * Supplies time and timers, and runs the engine's work when it is more than a batch behind
     * (then no event loop or publishing thread runs it for longer than one batch). Default {@link
     * Schedulers#parallel()}; tests use virtual time.
     */
    public Builder scheduler(Scheduler scheduler) {
      this.scheduler = Objects.requireNonNull(scheduler, "scheduler");
      return this;
    }

    /** How long an owner may leave a proposal undecided. Default 10 s. */
    public Builder decisionTimeout(Duration timeout) {
      this.decisionTimeout = positive(timeout);
      return this;
    }

    /** How long a request may wait for an answer before failing with TIMEOUT. Default 30 s. */
    public Builder requestTimeout(Duration timeout) {
      this.requestTimeout = positive(timeout);
      return this;
    }

    /** How long a transition lives without an update before it expires. Default 5 s. */
    public Builder transitionTtl(Duration ttl) {
      this.transitionTtl = positive(ttl);
      return this;
    }

    /**
     * How often an idle link is pinged; a peer silent for three intervals is considered dead and its
     * link is closed. Default 15 s; {@link Duration#ZERO} disables keepalive.
     */
    public Builder keepAlive(Duration interval) {
      if (interval.isNegative()) {
        throw new IllegalArgumentException("keepalive must not be negative: " + interval);
      }
      this.keepAlive = interval;
      return this;
    }

    /** How long a new link may stay without the peer's HELLO before it is closed. Default 10 s. */
    public Builder handshakeTimeout(Duration timeout) {
      this.handshakeTimeout = positive(timeout);
      return this;
    }

    /**
     * How long tombstones are kept to tell reconnecting peers about deletes. A peer that was away
     * longer gets a full resync of the owners concerned, and drops what no longer exists. Default
     * 7 days.
     */
    public Builder tombstoneRetention(Duration retention) {
      this.tombstoneRetention = positive(retention);
      return this;
    }

    /**
     * The most requests (proposals, creates, delete requests) one neighbour may have waiting for an
     * answer from or through this node; one more is answered at once with ERROR {@code
     * LIMIT_EXCEEDED} (a {@link Outcome.Rejected} for the requester) instead of being queued.
     * Default 1,024.
     */
    public Builder maxPendingRequestsPerPeer(int requests) {
      this.pendingRequestsPerPeer = atLeastOne(requests);
      return this;
    }

    /**
     * The most active transitions one neighbour may have sent updates of; a TRANSITION that would
     * start one more is refused with ERROR {@code LIMIT_EXCEEDED} and not applied. Default 1,024.
     */
    public Builder maxTransitionsPerPeer(int transitions) {
      this.transitionsPerPeer = atLeastOne(transitions);
      return this;
    }

    /**
     * The largest object, in bytes of its attributes encoded as CBOR (as on the wire). A local
     * publish, propose, create or transition update of a larger object fails with an {@link
     * EntanglementException} of code {@code LIMIT_EXCEEDED}; a SYNC, PROPOSE, CREATE or TRANSITION
     * body from a peer larger than this is refused with ERROR {@code LIMIT_EXCEEDED} (the link
     * stays open). Frames are also bounded by the transport's maximum frame size (default 1 MiB).
     * Default 256 KiB (262,144 bytes).
     */
    public Builder maxObjectSize(int bytes) {
      this.maxObjectSize = atLeastOne(bytes);
      return this;
    }

    /**
     * The most events (values of {@linkplain SyncType#unique() unique} types) that may wait for one
     * link, or for one watcher that has requested fewer than have arrived. States need no such
     * bound: a waiting state is replaced by its object's next version, so a link or a watcher holds
     * at most one per object. Events never replace each other, so when one more arrives the oldest
     * waiting event is dropped, never sent on that link or delivered to that watcher, and counted
     * ({@link PeerStats#eventsDropped()}, {@link NodeStats#eventsDropped()}); other links and
     * watchers are unaffected, and nothing is refused. A slow peer gets the newest events, in order,
     * as it gets the newest states. Memory per link or watcher is at most this many events. Default
     * 1,024.
     */
    public Builder maxQueuedEvents(int events) {
      this.queuedEvents = atLeastOne(events);
      return this;
    }

    /**
     * How many answers may wait for one link before the node checks that its peer reads them:
     * RESPONSEs, ERRORs and NO_RESPONSEs to its requests, and WITHDRAWs of states it sent. Answers
     * wait only while the peer reads more slowly than it asks. Past this bound the link is
     * watched: if it takes no frame for 15 s while still past it, the peer reads nothing, and is
     * refused with {@link ErrorCode#LIMIT_EXCEEDED}: its
     * link closes (a peer that reads nothing never gets the ERROR, and its link closes a second
     * later), its requests end, and its answers are dropped. A dialling peer reconnects with
     * backoff. A peer that reads, however slowly (it paces its reading, its link is slow, the
     * answers are larger than its requests), is refused only past 16 times this bound.
     *
     * <p>Other replies never count and wait at most one each: a PONG answers the newest PING, a
     * keepalive PING replaces a waiting one, and an ERROR for something the peer sent unasked (a
     * refused state or transition) replaces a waiting one of its code. So a peer that floods PINGs
     * or refused states and reads nothing costs a few entries, and a neighbour whose states the
     * policy refuses is never closed for it. Memory per link is at most 16 times this many answers;
     * a RESPONSE holds its committed object's frame, so that is up to as many objects. Default
     * 4,096: four times the {@linkplain #maxPendingRequestsPerPeer pending requests}.
     */
    public Builder maxQueuedAnswers(int answers) {
      this.queuedAnswers = atLeastOne(answers);
      return this;
    }

    /**
     * Paces the frames this node reads from each link to at most {@code messagesPerSecond} on
     * average, with bursts of up to {@code burst} frames at once: over any interval of {@code t}
     * seconds a link delivers at most {@code burst + messagesPerSecond * t} frames. Excess is not
     * refused but held back: the node stops requesting frames from a link that is over its rate
     * and resumes as the allowance refills, so a flooding neighbour is slowed by its own transport's
     * flow control (TCP's window; the in-JVM sender's queue), loses nothing, and costs the node no
     * more than the rate, while other neighbours are unaffected. {@link PeerStats#inboundPauses()}
     * and {@link PeerStats#inboundThrottled()} show a link that hits it.
     *
     * <p>Default: no limit (a link is bounded by the engine's window of 256 frames requested at a
     * time, and by how fast the node handles them). A fixed default would either slow legitimate
     * traffic — one link carries well over 100,000 SYNC/s in the throughput benchmark, and a
     * reconnecting peer's catch-up sends every state it holds at once — or sit above what one node
     * can handle per second, and limit nothing. Set it for neighbours that are not trusted, well
     * above their expected rate: a legitimate peer over it is slowed, never cut off.
     *
     * @throws IllegalArgumentException if either is less than 1
     */
    public Builder maxInboundRate(int messagesPerSecond, int burst) {
      this.inboundRate = atLeastOne(messagesPerSecond);
      this.inboundBurst = atLeastOne(burst);
      return this;
    }

    public EntanglementNode build() {
      if (registries.isEmpty()) {
        throw new IllegalStateException("a node needs at least one registry");
      }
      long e = epoch != null ? epoch : System.currentTimeMillis();
      Map<OwnerId, Long> withEpochs = new LinkedHashMap<>();
      if (owners.isEmpty()) {
        withEpochs.put(OwnerId.random(), e);
      } else {
        owners.keySet().forEach(o -> withEpochs.put(o, e));
      }
      return new EntanglementNode(
          new Engine(
              id,
              registries,
              withEpochs,
              peerPolicy,
              scheduler,
              new Engine.Timeouts(
                  decisionTimeout,
                  requestTimeout,
                  transitionTtl,
                  keepAlive,
                  handshakeTimeout,
                  tombstoneRetention),
              new Limits(
                  pendingRequestsPerPeer,
                  transitionsPerPeer,
                  maxObjectSize,
                  inboundRate,
                  inboundBurst,
                  queuedEvents,
                  queuedAnswers),
              store));
    }

    private static int atLeastOne(int limit) {
      if (limit < 1) {
        throw new IllegalArgumentException("limit must be at least 1: " + limit);
      }
      return limit;
    }

    private static Duration positive(Duration d) {
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("duration must be positive: " + d);
      }
      return d;
    }
  }
}
