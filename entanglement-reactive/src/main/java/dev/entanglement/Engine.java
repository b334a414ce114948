package dev.entanglement;

import dev.entanglement.Destination.Lane;
import dev.entanglement.Destination.Outbound;
import dev.entanglement.Destination.QueueKey;
import dev.entanglement.internal.ConflatingSubscription;
import dev.entanglement.internal.SerialExecutor;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import dev.entanglement.protocol.MessageType;
import dev.entanglement.protocol.ProtocolException;
import dev.entanglement.protocol.SyncKeyHashes;
import dev.entanglement.store.PermanentStoreException;
import dev.entanglement.store.StateStore;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import dev.entanglement.transport.Link;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Predicate;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscription;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;
import reactor.core.scheduler.Scheduler;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.ObjectReader;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * The replication engine of one node.
 *
 * <h2>Design</h2>
 *
 * <p>Every piece of mutable state is confined to one {@link SerialExecutor}: API calls, frames
 * received from links, link demand and timers all become tasks on it. The executor owns no thread;
 * tasks run on the submitting thread when the engine is idle, so nothing blocks and, in the steady
 * state, nothing is handed to a pool. Behind by more than a batch ({@value
 * SerialExecutor#DEFAULT_BATCH} tasks), it goes on on the node's scheduler, so an overloaded node
 * never holds an event loop (whose links then go unread) or a publishing thread for longer than
 * one batch. The only state read outside it is {@link #objects} (an {@link ObjectTable} of
 * immutable {@link StoredState}s, which readers on any thread may probe) for {@link
 * EntanglementNode#get}, and for a publish made while the executor is busy: the publisher looks its
 * object up, and the version's second and later publishes wait merged in one {@link PublishSlot}
 * hung on it, so that a publish loop faster than the engine queues latest states, not history.
 *
 * <p>Frames from a link that marks its reads ({@link Link#END_OF_BURST}) are held until the read's
 * marker and handled together, in order, once the objects they name were looked up at once
 * ({@link #receiveBurst}): on a node of many objects each lookup is a cache miss, and misses
 * waited for one at a time were a fifth of a receiver's time.
 *
 * <p>Replication is latest-state: a change marks its key dirty in the coalescing queue of every
 * destination; the frame is built from the current state only when the link asks for one. So a
 * slow link carries the newest state of every dirty key, once per round, and never a backlog.
 * Receivers apply a state only if its {@link Version} is newer than what they hold, which makes
 * duplicates and reordering harmless and lets meshes with cycles converge.
 *
 * <p>Requests (proposals, creates, delete requests) follow routes toward owners, learned as a
 * distance vector from HELLO and ROUTES messages with split horizon; each relay keeps an {@link
 * Obligation} per request and answers on the reverse path. Every obligation ends explicitly.
 *
 * <p>Transitions flood to every allowed node; the owner arbitrates (a newer transition breaks an
 * older one, a commit confirms or breaks) and floods the terminal state; every node also expires a
 * transition locally after the TTL with no update.
 */
final class Engine {

  private static final int INBOUND_WINDOW = 256;
  private static final int ENDED_TRANSITIONS_REMEMBERED = 65_536;
  private static final int EVENTS_REMEMBERED = 65_536;
  private static final int OWNER_IDS_REMEMBERED = 4_096;
  private static final int PEERS_REMEMBERED = 4_096;
  private static final Logger log = LoggerFactory.getLogger(Engine.class);

  final String nodeId;
  final Scheduler scheduler;
  final SerialExecutor serial;
  final FrameCodec codec = new FrameCodec();
  final JsonMapper json;
  private final Map<String, TypeBinding<?>> types;
  private final Map<Class<?>, TypeBinding<?>> typesByClass;
  /**
   * Per wire name of a type that is not unique, the reader that binds a received SYNC's attributes
   * straight from its frame ({@link FrameCodec#decodeSync}); events keep their attribute tree.
   */
  private final Map<String, ObjectReader> attributeReaders;
  private final Policy peerPolicy;
  /** The policies asked which owners a neighbour speaks for: the node's, then each registry's. */
  private final List<Policy> routePolicies;
  private final Timeouts timeouts;
  private final Limits limits;
  private final RouteTable routes;

  /** Current state of every object this node holds, tombstones included. */
  final ObjectTable objects = new ObjectTable();
  /** Local commits waiting for their batch to be durable; owner-side logic reads them first. */
  private final Map<ObjectKey, StoredState> uncommitted = new HashMap<>();

  private final @Nullable StateStore store;
  /** The batch being filled, and what to run once it is durable. */
  private WriteBatch filling = new WriteBatch();
  private List<Durable> fillingCallbacks = new ArrayList<>();
  /** Local owners whose serial advanced since the last batch was taken (one record per batch). */
  private final java.util.Set<OwnerId> ownersToPersist = new java.util.LinkedHashSet<>();
  private boolean writing;
  /**
   * The store's permanent failure, once it refused a batch for good: from then on nothing is
   * written and every change that waits for the store fails at once (see {@link StateStore}).
   */
  private @Nullable Throwable storeFailure;
  private boolean started;
  /** The start() running, shared by the calls made meanwhile; null when none runs (guarded by this). */
  private @Nullable Mono<Void> startInProgress;

  private final Map<OwnerId, LocalOwner> localOwners = new LinkedHashMap<>();
  /**
   * The first of {@code localOwners}, or null if there is none: published by the engine after each
   * change to them, read by API threads ({@link #defaultOwner}), which must not touch the map.
   */
  private volatile @Nullable OwnerId firstOwner;
  private final Map<OwnerId, Long> removedOwners = new HashMap<>();
  /** For each remote owner, the version up to which this node holds every state of it. */
  private final Map<OwnerId, Version> watermarks = new HashMap<>();
  /**
   * Per remote owner, the newest state of each key this node refused in a route race (the sender
   * was not on the owner's path yet) and has not received since: no watermark may cover them (see
   * {@link #refusedOnRoute}), so the next catch-up brings them. In memory: the watermark kept in the store
   * was already lowered below them.
   */
  private final Map<OwnerId, Map<ObjectKey, Version>> refusedStates = new HashMap<>();
  /**
   * For each owner, the newest tombstone dropped by retention: peers behind it resync fully. Kept
   * in the store, so that a restart does not forget it.
   */
  private final Map<OwnerId, Version> purgedUpTo = new HashMap<>();
  private final reactor.core.Disposable retentionTask;
  /**
   * Open requests, in deadline order (one timeout, so creation order is deadline order), and
   * undecided proposals with their deadlines (a proposal offered again keeps its first one), swept
   * by one periodic task instead of a timer per request.
   *
   * <p>{@code requestDeadlines} also holds ended requests: one is not looked up to be removed (an
   * identity hash and a map entry per request) but stays until it reaches the head, where {@link
   * #released} and the sweep drop it. Requests usually end in the order they started, so the head
   * is dropped at once; ended ones behind a long-open one are dropped in one pass whenever the deque
   * holds more than twice the open requests plus {@value #ENDED_REQUESTS_KEPT}, its bound.
   */
  private final java.util.ArrayDeque<Obligation> requestDeadlines = new java.util.ArrayDeque<>();
  private final java.util.LinkedHashMap<Proposal<?>, Long> decisionDeadlines =
      new java.util.LinkedHashMap<>();
  private final reactor.core.Disposable deadlineSweep;
  /** Copy-on-write: iterated on every change, written only on attach and detach. */
  private final List<Destination> destinations = new java.util.concurrent.CopyOnWriteArrayList<>();
  /** Links whose drain {@link #markDirty} left for the end of the turn (executor-confined). */
  private final List<Destination> drainsDeferred = new ArrayList<>();
  private final Map<String, List<Watcher>> watchers = new HashMap<>();
  private final Map<String, List<TentativeWatcher>> tentativeWatchers = new HashMap<>();
  private final ProposalDesk desk;
  private final Map<ObjectKey, Map<String, TransitionSlot>> transitions = new HashMap<>();
  /** Every slot of {@link #transitions} by its transition id: an id is open on one object at most. */
  private final Map<String, TransitionSlot> transitionsById = new HashMap<>();
  private final Map<String, TransitionState> endedTransitions = lru(ENDED_TRANSITIONS_REMEMBERED);
  private final Map<ObjectKey, Boolean> recentEvents = lru(EVENTS_REMEMBERED);
  /**
   * The last state of each object this node dropped (withdrawn, or gone at a full resync): a state
   * of it older than {@link Dropped#upTo} arriving later (from a neighbour that fell behind) is ignored,
   * so versions never go back at this node's watchers. Bounded; forgotten on restart.
   */
  private final Map<ObjectKey, Dropped> dropped = lru(EVENTS_REMEMBERED);
  /**
   * Owner ids seen in received states, so that the many states of one owner share one id instead
   * of each keeping its own decoded copy (less for the garbage collector to trace); bounded.
   */
  private final Map<String, OwnerId> ownerIds = lru(OWNER_IDS_REMEMBERED);
  /** The id {@link #ownerId} returned last; engine-confined like {@link #ownerIds}. */
  private @Nullable OwnerId lastOwnerId;
  /** Counts {@link #refreshPolicy} calls: what the send policy decides may have changed since. */
  private long policyGeneration;
  /**
   * Counts the states this node came to hold (received or committed here): {@link
   * StoredState#arrival} orders them by arrival, which, unlike versions, is the order in which a
   * relay learns them: a relay can learn late a state below a watermark it already gave.
   */
  private long arrivals;
  /**
   * For each peer whose link closed, what it had acknowledged receiving ({@link
   * Destination#acknowledged}); its next catch-up is answered from there. A peer not in this map
   * (never linked, forgotten on this node's restart, or beyond {@value #PEERS_REMEMBERED} peers) is
   * offered every state the policy shows it. Bounded; in memory only.
   */
  private final Map<PeerId, Destination.Offered> offeredAtDetach = lru(PEERS_REMEMBERED);
  /**
   * The nonce of the last PING, a probe's (see {@link Destination#probed}) or a keepalive's: each
   * lower than the one before, so a PONG to a later PING answers an earlier probe as well.
   */
  private long probes;
  private long nextDestinationOrder;
  private boolean closed;
  /** Set by the first {@link #close}: completes once every link open then is closed. */
  private Mono<Void> linksClosed = Mono.empty();

  private final AtomicLong framesSent = new AtomicLong();
  private final AtomicLong bytesSent = new AtomicLong();
  private final AtomicLong framesReceived = new AtomicLong();
  private final AtomicLong statesEncoded = new AtomicLong();
  private final AtomicLong errorsReceived = new AtomicLong();
  private final AtomicLong tasksFailed = new AtomicLong();
  /** Events dropped unsent from links and undelivered from watchers ({@link #floodEvent}, {@link #watch}). */
  private final AtomicLong eventsDropped = new AtomicLong();
  /**
   * How long a closing node lets each link flush what was queued for it and its GOAWAY, and a link
   * refused with an ERROR lets its transport take that frame: 1 s. A link that has not taken its
   * last frame then (a peer that reads nothing, a slow link under a bandwidth cap, a transport
   * that never asked) is closed. Also how long a link whose peer said GOAWAY waits for the peer to
   * end it.
   */
  static final Duration CLOSE_GRACE = Duration.ofSeconds(1);
  /**
   * How many times {@link Limits#queuedAnswers} answers a peer that reads may leave unread before it
   * is refused: 16.
   */
  static final int UNREAD_ANSWERS_FACTOR = 16;
  /**
   * How long a link past the bound of queued answers may take no frame before its peer is taken
   * for one that reads nothing: 15 s, the default keepalive interval (and not the configured one,
   * which may be off or short).
   */
  static final Duration UNREAD_ANSWERS_WATCH = Duration.ofSeconds(15);
  /** The queue key of a link's PONG: one waits at most, the newest. */
  private static final QueueKey PONG = new QueueKey(Lane.CONTROL, "pong");
  /** The queue key of a link's keepalive PING: one waits at most, the newest. */
  private static final QueueKey KEEPALIVE_PING = new QueueKey(Lane.CONTROL, "ping");
  /** The code of the GOAWAY a closing node sends on each link. */
  static final String GOAWAY_SHUTDOWN = "SHUTDOWN";
  /** Longest text of an ERROR answering a peer's request. */
  private static final int ERROR_TEXT_CHARS = 200;

  /** The text of a {@link ErrorCode#WITHHELD} answer: it names nothing of the object. */
  private static final String WITHHELD_TEXT = "committed; the send policy withholds the state";
  /** Longest quote of a peer's string in an error message (see {@link #brief}). */
  private static final int QUOTED_CHARS = 64;
  private long updatesOffered;
  private long updatesCoalesced;
  private volatile int pendingRequests;
  private volatile int pendingDecisions;
  private volatile int activeTransitions;
  /** Completes when the node closes. */
  private final reactor.core.publisher.Sinks.Empty<Void> closing = reactor.core.publisher.Sinks.empty();

  /** Completes when {@link #close()} begins. */
  Mono<Void> onClose() {
    return closing.asMono();
  }
  /** Active transitions per originating node id, for per-peer statistics read from any thread. */
  private final Map<String, Integer> transitionsByOrigin = new java.util.concurrent.ConcurrentHashMap<>();

  /**
   * Time limits of a node; see {@link EntanglementNode.Builder} for their meaning and defaults. A
   * zero keepalive disables keepalive and dead-peer detection.
   */
  record Timeouts(
      Duration decision,
      Duration request,
      Duration transitionTtl,
      Duration keepAlive,
      Duration handshake,
      Duration tombstoneRetention) {}

  /** A local owner: its epoch and the last serial it assigned. */
  private static final class LocalOwner {
    final long epoch;
    long serial;
    /**
     * With a store, the serial its stored owner record holds: every version up to it is durable, so
     * it is the watermark peers are told (a crash cannot reissue a serial they recorded).
     */
    long durable;

    LocalOwner(long epoch) {
      this.epoch = epoch;
    }
  }

  private record Watcher(
      @Nullable ObjectKey key,
      Predicate<Snapshot<?>> filter,
      ConflatingSubscription<ObjectKey, Snapshot<?>> subscription) {}

  private record TentativeKey(ObjectKey key, String transitionId) {}

  /**
   * An object this node dropped: the last state it held, the version up to which the withdrawal
   * covers it ({@code upTo} ≥ {@code state}'s version), and whether it is gone for every peer (a
   * full resync found it absent at the source) or only for peers the policy hides it from.
   */
  private record Dropped(StoredState state, Version upTo, boolean gone) {}

  private record TentativeWatcher(
      @Nullable ObjectKey key, ConflatingSubscription<TentativeKey, Tentative<?>> subscription) {}

  /** A transition this node tracks. */
  private static final class TransitionSlot {
    final TypeBinding<?> binding;
    final ObjectKey key;
    final OwnerId owner;
    final String id;
    final String origin;
    /** This node's own transition: only this node updates or abandons it. */
    boolean local;
    long seq;
    boolean partial = true;
    ObjectNode attributes;
    long lastUpdateNanos;
    reactor.core.@Nullable Disposable expiry;

    TransitionSlot(
        TypeBinding<?> binding,
        ObjectKey key,
        OwnerId owner,
        String id,
        String origin,
        ObjectNode attributes) {
      this.binding = binding;
      this.key = key;
      this.owner = owner;
      this.id = id;
      this.origin = origin;
      this.attributes = attributes;
    }
  }

  Engine(
      String nodeId,
      Collection<Registry> registries,
      Map<OwnerId, Long> owners,
      Policy peerPolicy,
      Scheduler scheduler,
      Timeouts timeouts,
      Limits limits,
      @Nullable StateStore store) {
    this.nodeId = nodeId;
    this.limits = limits;
    this.scheduler = scheduler;
    this.peerPolicy = peerPolicy;
    this.timeouts = timeouts;
    this.store = store;
    this.started = store == null;
    this.routes = new RouteTable(destinations, localOwners.keySet());
    this.serial =
        new SerialExecutor(
            SerialExecutor.DEFAULT_BATCH,
            task -> scheduler.schedule(task),
            this::drainDeferred,
            this::taskFailed);
    this.json =
        JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .addModule(new DirectCreators())
            .build();
    Map<String, TypeBinding<?>> byName = new LinkedHashMap<>();
    Map<Class<?>, TypeBinding<?>> byClass = new HashMap<>();
    for (Registry r : registries) {
      for (SyncType<?> t : r.types()) {
        TypeBinding<?> b = new TypeBinding<>(t, r);
        TypeBinding<?> previous = byName.putIfAbsent(t.name(), b);
        if (previous != null) {
          throw new IllegalArgumentException(
              "type '"
                  + t.name()
                  + "' is declared by registries '"
                  + previous.registry().name()
                  + "' and '"
                  + r.name()
                  + "'");
        }
        // A class declared under several names cannot be published without naming its type.
        if (byClass.putIfAbsent(t.javaType(), b) != null) {
          byClass.put(t.javaType(), null);
        }
      }
    }
    byClass.values().removeIf(Objects::isNull);
    List<Policy> rp = new ArrayList<>();
    rp.add(peerPolicy);
    registries.forEach(r -> rp.add(r.policy()));
    this.routePolicies = List.copyOf(rp);
    this.types = byName;
    this.desk = new ProposalDesk(nodeId, serial, byName::get, () -> closed, this::taskFailed);
    this.typesByClass = byClass;
    Map<String, ObjectReader> readers = new HashMap<>();
    byName.forEach((name, b) -> {
      if (!b.type().isUnique()) {
        readers.put(name, json.readerFor(b.type().javaType())
            .without(DeserializationFeature.FAIL_ON_TRAILING_TOKENS));
      }
    });
    this.attributeReaders = Map.copyOf(readers);
    owners.forEach((o, epoch) -> localOwners.put(o, new LocalOwner(epoch)));
    localOwnersChanged();
    long sweep = Math.max(1, Math.min(timeouts.tombstoneRetention().toNanos() / 4, Duration.ofHours(1).toNanos()));
    this.retentionTask =
        scheduler.schedulePeriodically(
            () -> serial.execute(this::dropExpiredTombstones), sweep, sweep, TimeUnit.NANOSECONDS);
    // Deadlines are checked every tenth of the shortest timeout, between 10 ms and 1 s; the links'
    // queues are trimmed on the same tick.
    long tick =
        Math.max(10_000_000L, Math.min(1_000_000_000L,
            Math.min(timeouts.request().toNanos(), timeouts.decision().toNanos()) / 10));
    this.deadlineSweep =
        scheduler.schedulePeriodically(
            () -> {
              serial.execute(this::sweepDeadlines);
              serial.execute(this::trimQueues);
            },
            tick, tick, TimeUnit.NANOSECONDS);
  }

  // ------------------------------------------------------------------ public operations (any thread)

  /** Loads the store, if any: owners keep their epochs and serials, objects and watermarks return. */
  Mono<Void> start() {
    if (store == null) {
      return Mono.empty();
    }
    // Calls made while a start runs share it: two loads at once, one failing, would close the
    // store under the other. It is forgotten as it ends, before its subscribers hear of it, so a
    // retry after a failure starts anew.
    return Mono.defer(() -> {
      synchronized (this) {
        if (startInProgress == null) {
          AtomicReference<Mono<Void>> self = new AtomicReference<>();
          Mono<Void> shared = startNow().doOnTerminate(() -> {
            synchronized (this) {
              if (startInProgress == self.get()) {
                startInProgress = null;
              }
            }
          }).cache();
          self.set(shared);
          startInProgress = shared;
        }
        return startInProgress;
      }
    });
  }

  private Mono<Void> startNow() {
    StateStore s = Objects.requireNonNull(store);
    return onEngine(() -> {
          if (closed) {
            throw new IllegalStateException("node " + nodeId + " is closed");
          }
          return started;
        })
        .flatMap(alreadyStarted -> alreadyStarted ? Mono.<Void>empty() : s.load().flatMap(data -> onEngine(() -> {
          if (closed) { // closed while loading, perhaps its store before this load
            throw new IllegalStateException("node " + nodeId + " is closed");
          }
          if (!started) {
            restore(data); // throws with nothing restored
            started = true;
          }
          return Boolean.TRUE;
        })).then())
        // A node that did not start gives its store up (a database claim, connections); the
        // store may be loaded again by a later start(). A started node keeps it.
        .onErrorResume(e -> onEngine(() -> !started)
            .flatMap(notStarted -> notStarted ? s.close().onErrorResume(x -> Mono.empty()) : Mono.<Void>empty())
            .then(Mono.error(e)));
  }

  /** {@code task}'s result, computed on the engine's executor; what it throws fails the Mono. */
  private <T> Mono<T> onEngine(java.util.function.Supplier<T> task) {
    return Mono.create(sink -> serial.execute(() -> {
      T result;
      try {
        result = task.get();
      } catch (Throwable e) { // an Error while restoring too: start() must end, and give the store up
        sink.error(e);
        return;
      }
      sink.success(result);
    }));
  }

  /**
   * Takes the stored data in: every object is decoded first, so that one that no longer decodes
   * into its type (an application's type changed) fails start() with nothing restored, rather than
   * half of the node.
   */
  private void restore(StoredData data) {
    List<StoredState> restored = new ArrayList<>(data.objects().size());
    for (StoredData.ObjectRecord r : data.objects()) {
      TypeBinding<?> b = types.get(r.type());
      if (b == null) {
        log.warn("node {}: stored object of unknown type {} ignored", nodeId, r.type());
        continue;
      }
      try {
        ObjectNode attrs = r.deleted() ? emptyObject() : (ObjectNode) json.readTree(r.attributes());
        Object value = r.deleted() ? null : json.treeToValue(attrs, b.type().javaType());
        ObjectKey key = new ObjectKey(r.type(), r.key()); // its bounds (a store of an older version)
        Snapshot<?> snap =
            new Snapshot<>(key, value, OwnerId.of(r.owner()), new Version(r.epoch(), r.serial()),
                r.deleted(), r.committedAt());
        restored.add(new StoredState(b, snap, attrs, null));
      } catch (JacksonException | ClassCastException | IllegalArgumentException e) {
        throw new IllegalStateException("node " + nodeId + ": stored object " + r.type() + " " + brief(r.key())
            + " does not decode into " + b.type().javaType().getName() + ": " + e.getMessage(), e);
      }
    }
    for (StoredData.OwnerRecord o : data.owners()) {
      OwnerId id = OwnerId.of(o.owner());
      if (o.local()) {
        LocalOwner lo = new LocalOwner(o.epoch());
        lo.serial = o.serial();
        lo.durable = o.serial();
        localOwners.put(id, lo);
        localOwnersChanged();
      } else {
        removedOwners.put(id, o.epoch());
      }
    }
    restored.forEach(objects::put);
    for (StoredData.WatermarkRecord w : data.watermarks()) {
      watermarks.put(OwnerId.of(w.owner()), new Version(w.epoch(), w.serial()));
    }
    for (StoredData.PurgeRecord p : data.purges()) {
      purgedUpTo.put(OwnerId.of(p.owner()), new Version(p.epoch(), p.serial()));
    }
    routes.invalidate();
    // Owners configured but not stored (a new or lost store) start here, in their new epoch.
    localOwners.forEach((o, lo) -> persist(new WriteBatch.PutOwner(
        new StoredData.OwnerRecord(o.value(), lo.epoch, lo.serial, true))));
    log.info("node {}: loaded {} objects, {} owners", nodeId, data.objects().size(), data.owners().size());
  }

  private void requireStarted() {
    if (!started) {
      throw new IllegalStateException("node " + nodeId + " has a store: call start() first");
    }
  }

  Mono<Snapshot<?>> publish(@Nullable SyncType<?> declared, OwnerId owner, Object value) {
    return Mono.create(
        sink -> {
          if (!serial.isBusy()) {
            // Runs at once, unless a drain began meanwhile: then it may be queued behind a slot.
            queueOn(() -> keyFor(declared, value), () -> publishTask(declared, null, owner, value, sink));
            return;
          }
          // The engine is busy: the publish finds the object's current state here. The first
          // publish on a version queues a task of its own (which then needs no lookup); the later
          // ones wait merged in the version's slot.
          ObjectKey key = keyFor(declared, value);
          StoredState current = key == null ? null : objects.get(key);
          if (current != null && !current.firstPublishOn()) {
            mergeInSlot(key, current, owner, value, sink);
            return;
          }
          // A slot hung on its object since the lookup, on this version or a newer one, may lie
          // ahead of this task (usually there is none: the flag was set just now).
          queueOn(() -> key, () -> publishTask(declared, current, owner, value, sink));
        });
  }

  private void publishTask(
      @Nullable SyncType<?> declared,
      @Nullable StoredState current,
      OwnerId owner,
      Object value,
      MonoSink<Snapshot<?>> sink) {
    try {
      publishNow(declared, current, owner, value, sink::success, e -> sink.error(notWritten(e)));
    } catch (RuntimeException e) {
      sink.error(e);
    } catch (Error e) {
      // The publisher learns of it too, instead of waiting for good; the executor still logs and
      // counts it as a failed task.
      sink.error(e);
      throw e;
    }
  }

  /** Publishes that joined a waiting {@link PublishSlot}; any thread. */
  private final java.util.concurrent.atomic.AtomicLong publishesMerged =
      new java.util.concurrent.atomic.AtomicLong();

  /**
   * Per application thread, the last operation on no one object (an owner added or removed, a
   * create, a close) it queued on this engine, or null: until it starts, the thread's publishes
   * join no slot (see {@link PublishSlot}'s ordering rule).
   */
  private final ThreadLocal<ApplicationTask> notToOvertake = new ThreadLocal<>();

  /** Queues an application's operation on no one object; any thread. */
  private void queueUnlessStarted(Runnable task) {
    ApplicationTask.Flagged flagged = new ApplicationTask.Flagged(task);
    serial.execute(flagged);
    if (!flagged.started()) {
      notToOvertake.set(flagged);
    }
  }

  /**
   * Queues an application's operation on object {@code key} (any object, if null) other than a
   * publish: later publishes of the object may not join a slot queued before it. Any thread.
   */
  private void queueOn(@Nullable ObjectKey key, Runnable operation) {
    if (key == null) {
      queueUnlessStarted(operation);
    } else {
      queueOn(() -> key, operation);
    }
  }

  /**
   * Queues an application's task on the object {@code key} names (the key asked for only if the task
   * did not run at once; null: none that a slot could hold) and, if the task did not run at once,
   * unhooks the object's slot, which may be queued ahead of it. Any thread.
   */
  private void queueOn(java.util.function.Supplier<@Nullable ObjectKey> key, Runnable task) {
    ApplicationTask.Flagged flagged = new ApplicationTask.Flagged(task);
    serial.execute(flagged);
    if (!flagged.started()) {
      ObjectKey k = key.get();
      if (k != null) {
        unhookSlot(k);
      }
    }
  }

  /**
   * After an operation on {@code key} was queued: the waiting slot of the object's current version,
   * queued before it, is no longer joined; a later publish makes a new one, behind the operation.
   * A slot hung after this lookup is queued after the operation; one on an older version is not
   * found by the lookups of publishes made after this one.
   */
  private void unhookSlot(ObjectKey key) {
    StoredState current = objects.get(key);
    if (current != null) {
      current.unhookPublishSlot();
    }
  }

  /**
   * On the publisher's thread: the key of the object {@code value} is a version of, or null if the
   * engine must judge the publish alone (an event, a type it does not know, a value of another
   * class, a key function that throws: the engine then says why).
   */
  private @Nullable ObjectKey keyFor(@Nullable SyncType<?> declared, Object value) {
    TypeBinding<?> b = declared != null ? types.get(declared.name()) : typesByClass.get(value.getClass());
    if (b == null || b.type().isUnique() || !b.type().javaType().isInstance(value)) {
      return null;
    }
    @SuppressWarnings("unchecked")
    SyncType<Object> t = (SyncType<Object>) b.type();
    try {
      return t.keyOf(value);
    } catch (RuntimeException e) {
      return null;
    }
  }

  /**
   * On the publisher's thread: puts the publish in {@code current}'s waiting {@link PublishSlot} if
   * this thread may join it, or else in a new slot, hung on {@code current} before it is queued and
   * joinable only once queued.
   */
  private void mergeInSlot(
      ObjectKey key, StoredState current, OwnerId owner, Object value, MonoSink<Snapshot<?>> sink) {
    PublishSlot.Pending mine = new PublishSlot.Pending(value, sink);
    ApplicationTask holdsBack = notToOvertake.get();
    boolean free = holdsBack == null || holdsBack.started();
    for (;;) {
      PublishSlot waiting = current.publishSlot();
      if (waiting != null && free && waiting.join(owner, mine)) {
        publishesMerged.incrementAndGet();
        return;
      }
      PublishSlot slot = new PublishSlot(current, owner, mine, this::runPublishSlot);
      if (current.replacePublishSlot(waiting, slot)) {
        serial.execute(slot);
        if (!slot.started() && (objects.get(key) != current || current.publishSlot() != slot)) {
          // Made on a version no longer current, or replaced while it was not yet joinable: the
          // slot hung now may be queued ahead of this one. Before anyone may join this one.
          unhookSlot(key);
        }
        slot.queued();
        return;
      }
    }
  }

  /** The engine's side of a {@link PublishSlot}: commits the latest value it holds. */
  private void runPublishSlot(PublishSlot slot, StoredState base) {
    PublishSlot.Pending p = slot.take();
    publishTask(base.binding.type(), base, slot.owner, p.value(), p.sink());
  }

  /**
   * Values a {@link #publishAll} source may have handed over that are not yet committed (durable,
   * with a store): 256. Half of it is requested again each time that many have been committed.
   */
  static final int PUBLISH_WINDOW = 256;

  /**
   * Sources being pulled with their values published at once ({@code PublishAll.pull}): their
   * commits leave the links' drains for the end of the pull, as a backlog of tasks leaves them for
   * the end of the turn.
   */
  private int publishingInline;

  Mono<Void> publishAll(@Nullable SyncType<?> declared, OwnerId owner, Publisher<?> values) {
    return Mono.create(sink -> {
      PublishAll p = new PublishAll(declared, owner, sink);
      sink.onCancel(p);
      values.subscribe(p);
    });
  }

  /**
   * Pulls a source of values to publish at the pace the engine commits them.
   *
   * <p>State machine: {@code PULLING} (at most {@link #PUBLISH_WINDOW} values requested and not
   * yet committed) → {@code DONE}: on the source's completion once every value before it has run
   * (success, after the store made them durable); on the first value that cannot be published, the
   * node's close or the source's error (failure; the source is cancelled); or on the caller's
   * cancel (the source is cancelled; values already handed over still run). Confinement: the
   * source's signals only submit tasks, in order, to the engine's executor; the counters, every
   * {@code request} and the end are touched there alone, so requests are serialized and a
   * synchronous source is pulled on the engine's own thread.
   *
   * <p>A value handed over on the engine's thread while it requests ({@link #pulling}: a
   * synchronous source) is published at once, not queued as a task of its own, unless values the
   * source handed over before are still queued ({@link #queued}), which it then follows (in
   * groups, whose objects are looked up together first: {@link #publishPulled}). Commits
   * made meanwhile request nothing; what they free is requested by a task of its own ({@link
   * #pullCommitted}), so one task publishes at most a window of the source. Each value published
   * at once counts against the executor's batch ({@link SerialExecutor#charge}), so a thread that
   * runs the engine's turn, an application's or an event loop, is held as long as for that many
   * tasks, and other work goes on between.
   */
  private final class PublishAll extends BaseSubscriber<Object> {
    private final @Nullable SyncType<?> declared;
    private final OwnerId owner;
    private final MonoSink<Void> sink;
    /** Values committed since the last request; requested again in halves of the window. */
    private int committedSinceRequest;
    /** Values published at once, as handed over while pulling; on the engine's thread. */
    private long publishedInline;
    /**
     * Values handed over while pulling and not yet published: up to {@link #PREFETCH_GROUP}, whose
     * objects are then looked up together ({@link #publishPulled}). On the engine's thread.
     */
    private final List<Object> pulled = new ArrayList<>();
    private boolean done;
    /** The source completed: {@code done}, the end waiting for the store to write every value. */
    private boolean sourceCompleted;
    /**
     * The engine's thread while it is in {@link #request}, else null. Written there alone: another
     * thread never reads itself here, however stale its view.
     */
    private @Nullable Thread pulling;
    /** Values handed over and queued as tasks of their own, not yet run; any thread. */
    private final java.util.concurrent.atomic.AtomicInteger queued =
        new java.util.concurrent.atomic.AtomicInteger();

    PublishAll(@Nullable SyncType<?> declared, OwnerId owner, MonoSink<Void> sink) {
      this.declared = declared;
      this.owner = owner;
      this.sink = sink;
    }

    @Override
    protected void hookOnSubscribe(Subscription s) {
      serial.execute(() -> {
        if (closed) {
          endClosed();
        } else if (!done) {
          pull(PUBLISH_WINDOW);
        }
      });
    }

    /** On the engine's thread: requests {@code n} values, publishing at once those handed over now. */
    private void pull(int n) {
      pulling = Thread.currentThread();
      publishingInline++;
      long before = publishedInline;
      try {
        try {
          request(n);
        } finally {
          publishPulled(); // still pulling: their commits request nothing
        }
      } finally {
        pulling = null;
        publishingInline--;
        serial.charge((int) (publishedInline - before));
      }
      // What the values changed leaves as one run per link, as at a turn's end; a turn of many
      // pulls would otherwise send nothing until it ends.
      drainDeferred();
      if (!done && committedSinceRequest >= PUBLISH_WINDOW / 2) {
        serial.execute(this::pullCommitted);
      }
    }

    /** Requests again what was committed while the source was pulled. */
    private void pullCommitted() {
      if (!done && committedSinceRequest > 0) {
        int n = committedSinceRequest;
        committedSinceRequest = 0;
        pull(n);
      }
    }

    @Override
    protected void hookOnNext(Object value) {
      if (pulling == Thread.currentThread() && queued.get() == 0) {
        publishedInline++;
        pulled.add(value);
        if (pulled.size() >= PREFETCH_GROUP) {
          publishPulled();
        }
        return;
      }
      // Handed over on an application thread (an asynchronous source), it is ordered like a
      // publish's own task with that thread's later publishes of the object.
      queued.incrementAndGet();
      queueOn(() -> keyFor(declared, value), () -> {
        queued.decrementAndGet();
        publishValue(value);
      });
    }

    /**
     * Publishes the values {@link #pulled} holds, in order, once the objects they are versions of
     * were looked up together ({@link ObjectTable#prefetch}): on a node of many objects each lookup
     * is a cache miss, and misses issued together overlap, where a publish at a time waits for each.
     */
    private void publishPulled() {
      int n = pulled.size();
      if (n > 1) {
        int[] keyHashCodes = new int[n];
        int keys = 0;
        for (int i = 0; i < n; i++) {
          ObjectKey key = keyFor(declared, pulled.get(i));
          if (key != null) {
            keyHashCodes[keys++] = key.hashCode();
          }
        }
        if (keys > 1) {
          objects.prefetch(keyHashCodes, keys);
        }
      }
      try {
        for (int i = 0; i < pulled.size(); i++) {
          publishValue(pulled.get(i));
        }
      } finally {
        pulled.clear();
      }
    }

    private void publishValue(Object value) {
      if (done) {
        return;
      }
      if (closed) {
        endClosed();
        return;
      }
      try {
        publishNow(declared, null, owner, value, s -> committed(), e -> {
          if (!done) {
            end(notWritten(e));
          } else if (sourceCompleted) {
            // The end waits for the store: this failure comes first, and a later success is void.
            sink.error(notWritten(e));
          }
        });
      } catch (RuntimeException e) {
        end(e);
      }
    }

    /** A value is committed (durable, with a store): the window moves on (see {@link #pull}). */
    private void committed() {
      if (!done && ++committedSinceRequest >= PUBLISH_WINDOW / 2 && pulling == null) {
        int n = committedSinceRequest;
        committedSinceRequest = 0;
        pull(n);
      }
    }

    @Override
    protected void hookOnComplete() {
      serial.execute(() -> {
        if (!done) {
          done = true;
          sourceCompleted = true;
          if (store == null) {
            sink.success();
          } else {
            whenDurable(sink::success, e -> sink.error(notWritten(e)));
          }
        }
      });
    }

    @Override
    protected void hookOnError(Throwable t) {
      serial.execute(() -> {
        if (!done) {
          done = true;
          sink.error(t);
        }
      });
    }

    @Override
    protected void hookOnCancel() {
      serial.execute(() -> done = true);
    }

    private void end(RuntimeException e) {
      done = true;
      cancel();
      sink.error(e);
    }

    private void endClosed() {
      end(new EntanglementException(ErrorCode.NOT_CONNECTED, "node " + nodeId + " is closed"));
    }
  }

  Mono<Outcome<?>> delete(SyncType<?> type, Object keyValue) {
    ObjectKey key = type.key(keyValue);
    return request(
        key,
        sink -> {
          TypeBinding<?> b = binding(type);
          StoredState cur = current(key);
          if (cur == null || cur.deleted()) {
            sink.success(new Outcome.Rejected<>(ErrorCode.NOT_FOUND, key + " does not exist"));
            return;
          }
          if (localOwners.containsKey(cur.owner())) {
            commitLocal(b, key, cur.owner(), null, null, true, null, List.of(),
                st -> sink.success(new Outcome.Committed<>(st.snapshot)), e -> sink.error(notWritten(e)));
            return;
          }
          LocalWaiter w = localWaiter(sink);
          sendRequest(
              Outbound.Request.local(
                  Message.ProposalKind.DELETE,
                  false,
                  b,
                  key,
                  cur.owner(),
                  true,
                  emptyObject(),
                  null,
                  w),
              null);
        });
  }

  /**
   * The tree of a partial update's attributes: the map's entries in its order, as {@code
   * json.valueToTree} builds them for a plain copy of the map (never through a serializer of the
   * map's own class). Values of the common scalar classes (text, {@code Integer}, {@code Long},
   * {@code Double}, {@code Boolean}, null) under text names become nodes directly, sparing the
   * serializer and its token buffer on every proposal; any other value or name (a null name, a
   * name of another class that an unchecked map may hold) sends the copy through the mapper.
   */
  ObjectNode attributesTree(Map<String, ?> attributes) {
    ObjectNode tree = json.createObjectNode();
    for (Map.Entry<String, ?> e : attributes.entrySet()) {
      Object name = e.getKey();
      Object v = e.getValue();
      JsonNode node;
      if (v == null) {
        node = tree.nullNode();
      } else if (v instanceof String t) {
        node = tree.stringNode(t);
      } else if (v instanceof Integer i) {
        node = tree.numberNode(i.intValue());
      } else if (v instanceof Long l) {
        node = tree.numberNode(l.longValue());
      } else if (v instanceof Double d) {
        node = tree.numberNode(d.doubleValue());
      } else if (v instanceof Boolean b) {
        node = tree.booleanNode(b);
      } else {
        node = null;
      }
      if (node == null || !(name instanceof String text)) {
        return json.valueToTree(new LinkedHashMap<>(attributes));
      }
      tree.set(text, node);
    }
    return tree;
  }

  Mono<Outcome<?>> propose(
      SyncType<?> type, Object keyValue, JsonNode attributes, boolean partial, @Nullable String tid) {
    ObjectKey key = type.key(keyValue);
    return request(
        key,
        sink -> {
          TypeBinding<?> b = binding(type);
          StoredState cur = objects.get(key);
          if (cur == null || cur.deleted()) {
            sink.success(new Outcome.Rejected<>(ErrorCode.NOT_FOUND, key + " does not exist"));
            return;
          }
          limits.checkObjectSize(attributes, "the proposal for ", key);
          ObjectNode attrs = asObject(attributes); // before the waiter: a refusal leaves nothing pending
          LocalWaiter w = localWaiter(sink);
          Outbound.Request r =
              Outbound.Request.local(
                  Message.ProposalKind.UPDATE,
                  false,
                  b,
                  key,
                  cur.owner(),
                  partial,
                  attrs,
                  tid,
                  w);
          if (localOwners.containsKey(cur.owner())) {
            offerProposal(r, null);
          } else {
            sendRequest(r, null);
          }
        });
  }

  Mono<Outcome<?>> create(SyncType<?> type, OwnerId owner, Object value) {
    return request(
        null,
        sink -> {
          TypeBinding<?> b = binding(type);
          limits.checkObjectSize(value, "the new ", type.name());
          ObjectNode attrs = asObject(json.valueToTree(value)); // before the waiter, as in propose
          LocalWaiter w = localWaiter(sink);
          Outbound.Request r =
              Outbound.Request.local(
                  Message.ProposalKind.UPDATE,
                  true,
                  b,
                  null,
                  owner,
                  false,
                  attrs,
                  null,
                  w);
          if (localOwners.containsKey(owner)) {
            offerProposal(r, null);
          } else {
            sendRequest(r, null);
          }
        });
  }

  <T> Flux<Snapshot<T>> watch(SyncType<T> type, @Nullable ObjectKey key, Predicate<Snapshot<T>> p) {
    binding(type);
    @SuppressWarnings("unchecked")
    Predicate<Snapshot<?>> filter = s -> p.test((Snapshot<T>) s);
    return Flux.<Snapshot<?>>from(
            s -> {
              Watcher[] holder = new Watcher[1];
              // Events never coalesce: a watcher that requests fewer than arrive keeps the newest.
              ConflatingSubscription<ObjectKey, Snapshot<?>> cs =
                  new ConflatingSubscription<>(
                      s,
                      () -> serial.execute(() -> removeWatcher(type.name(), holder[0])),
                      type.isUnique() ? limits.queuedEvents() : Integer.MAX_VALUE,
                      eventsDropped::incrementAndGet);
              holder[0] = new Watcher(key, filter, cs);
              s.onSubscribe(cs);
              serial.execute(() -> addWatcher(type.name(), holder[0]));
            })
        .map(
            s -> {
              @SuppressWarnings("unchecked")
              Snapshot<T> t = (Snapshot<T>) s;
              return t;
            });
  }

  <T> Flux<Tentative<T>> tentative(SyncType<T> type, @Nullable ObjectKey key) {
    binding(type);
    return Flux.<Tentative<?>>from(
            s -> {
              TentativeWatcher[] holder = new TentativeWatcher[1];
              ConflatingSubscription<TentativeKey, Tentative<?>> cs =
                  new ConflatingSubscription<>(
                      s,
                      () ->
                          serial.execute(
                              () -> removeFrom(tentativeWatchers, type.name(), holder[0])));
              holder[0] = new TentativeWatcher(key, cs);
              s.onSubscribe(cs);
              serial.execute(() -> addTentativeWatcher(type.name(), holder[0]));
            })
        .map(
            t -> {
              @SuppressWarnings("unchecked")
              Tentative<T> c = (Tentative<T>) t;
              return c;
            });
  }

  <T> Flux<Proposal<T>> proposals(SyncType<T> type) {
    binding(type);
    return desk.proposals(type.name())
        .map(
            p -> {
              @SuppressWarnings("unchecked")
              Proposal<T> t = (Proposal<T>) p;
              return t;
            });
  }

  Mono<Void> attach(Link link) {
    return Mono.create(
        sink -> {
          sink.onCancel(link::dispose);
          serial.execute(
              () -> {
                if (closed || !started) {
                  link.dispose();
                  sink.error(new IllegalStateException(
                      "node " + nodeId + (closed ? " is closed" : " has a store: call start() first")));
                  return;
                }
                if (link.isDisposed()) {
                  // Closed before its turn (a transport dropped it): it must not replace a live
                  // link to the same peer.
                  sink.success();
                  return;
                }
                attachNow(link, sink);
              });
        });
  }

  Mono<Void> removeOwner(OwnerId owner) {
    return Mono.create(
        sink ->
            queueUnlessStarted(
                () -> {
                  LocalOwner lo = localOwners.remove(owner);
                  if (lo == null) {
                    sink.error(new IllegalArgumentException(owner + " is not a local owner"));
                    return;
                  }
                  localOwnersChanged();
                  // Its commits still being written never take effect (see commit): no longer current.
                  uncommitted.values().removeIf(st -> st.owner().equals(owner));
                  purgeOwner(owner, lo.epoch, null);
                  routesChanged();
                  sink.success();
                }));
  }

  Mono<Void> addOwner(OwnerId owner, long epoch) {
    return Mono.create(
        sink ->
            queueUnlessStarted(
                () -> {
                  if (localOwners.containsKey(owner)) {
                    sink.error(new IllegalArgumentException(owner + " is already a local owner"));
                    return;
                  }
                  localOwners.put(owner, new LocalOwner(epoch));
                  localOwnersChanged();
                  removedOwners.remove(owner);
                  persist(new WriteBatch.PutOwner(new StoredData.OwnerRecord(owner.value(), epoch, 0, true)));
                  routesChanged();
                  sink.success();
                }));
  }

  Mono<Void> refreshPolicy() {
    return Mono.create(
        sink ->
            serial.execute(
                () -> {
                  policyGeneration++;
                  boolean routesMoved = false;
                  for (Destination d : destinations) {
                    routesMoved |= acceptRoutes(d, d.announced);
                  }
                  if (routesMoved) {
                    routesChanged();
                  } else {
                    for (Destination d : destinations) {
                      applyRefusedNowOnPath(d);
                    }
                  }
                  for (Destination d : destinations) {
                    for (StoredState st : objects.values()) {
                      offer(d, new QueueKey(Lane.STATE, st.key()), st.binding.priority(),
                          new Outbound.State(st.key()));
                    }
                    // Dropped here but still held by the peer: withdrawn if now hidden from it.
                    for (Dropped x : dropped.values()) {
                      ObjectKey key = x.state().key();
                      if (!objects.containsKey(key) && (x.state().holder == d || d.held.containsKey(key))) {
                        offer(d, new QueueKey(Lane.STATE, key), x.state().binding.priority(),
                            new Outbound.State(key));
                      }
                    }
                    drain(d);
                  }
                  sink.success();
                }));
  }

  Mono<Void> close() {
    return Mono.create(
        sink ->
            queueUnlessStarted(
                () -> {
                  if (!closed) {
                    closed = true;
                    closing.tryEmitEmpty();
                    retentionTask.dispose();
                    deadlineSweep.dispose();
                    List<Mono<Void>> links = new ArrayList<>();
                    for (Destination d : new ArrayList<>(destinations)) {
                      links.add(d.link.onClose().onErrorResume(e -> Mono.empty()));
                      goAway(d);
                    }
                    // close() completes once the links are closed, so that a process that exits
                    // after it does not cut their last frames; bounded, whatever the transports do.
                    linksClosed =
                        Mono.whenDelayError(links)
                            .timeout(CLOSE_GRACE.multipliedBy(2), scheduler)
                            .onErrorResume(e -> Mono.empty())
                            .cache();
                    watchers.values().forEach(l -> l.forEach(w -> w.subscription().complete()));
                    tentativeWatchers
                        .values()
                        .forEach(l -> l.forEach(w -> w.subscription().complete()));
                    desk.close();
                    // Without the deadline sweep nothing would end them: their requesters are
                    // answered, and a decision made later does not count.
                    for (Proposal<?> p : List.copyOf(decisionDeadlines.keySet())) {
                      p.reject(ErrorCode.NOT_CONNECTED, "the owner's node closed before deciding");
                    }
                    for (Map<String, TransitionSlot> slots : transitions.values()) {
                      slots.values().forEach(s -> cancelExpiry(s));
                    }
                  }
                  Mono<Void> links = linksClosed;
                  if (store == null) {
                    links.subscribe(null, sink::error, sink::success);
                  } else {
                    // Everything accepted before close reaches the store; then the store closes.
                    whenDurable(
                        () -> store.close().then(links).subscribe(null, sink::error, sink::success),
                        // Written or not, the store is closed (its connections released); close() fails.
                        e -> store.close().then(links)
                            .subscribe(null, x -> sink.error(e), () -> sink.error(e)));
                  }
                }));
  }

  /**
   * Ends {@code d} for a closing node: what is queued for it goes out, then a GOAWAY as its last
   * frame, then the transport closes the link (Link's contract for completed frames); a link that
   * has not taken its last frame within {@link #CLOSE_GRACE} is closed. Requests queued toward an
   * owner fail with {@code NOT_CONNECTED} (their answer could not come back), and nothing offered
   * from now on is queued. A link that has sent nothing yet, not even its HELLO, or whose peer said
   * GOAWAY ({@link #peerLeaving}), is closed at once.
   */
  private void goAway(Destination d) {
    if (d.closed) {
      return;
    }
    if (d.framesSent == 0 || d.peerLeaving) { // nothing said, or nothing more to say
      d.link.dispose();
      return;
    }
    if (!d.closeWhenFlushed) { // otherwise it is already ending, after an ERROR
      List<Outbound> queued = new ArrayList<>();
      for (Outbound o; (o = d.queue.poll()) != null; ) {
        queued.add(o);
      }
      int answers = d.answersQueued;
      d.clearQueue();
      d.answersQueued = answers; // queued again below
      // Queued again in the order they would have gone, at one priority: nothing merges into
      // them from now on. Straight into the queue: they are no new updates to count.
      queued.add(new Outbound.Control(
          new Message.GoAway(GOAWAY_SHUTDOWN, "node " + nodeId + " is closing")));
      for (Outbound o : queued) {
        if (o instanceof Outbound.Request) {
          discard(o);
        } else {
          d.queue.offer(new QueueKey(Lane.UNIQUE, new Object()), 0, o, Engine::mergeOutbound);
        }
      }
      d.closeWhenFlushed = true;
    }
    d.goingAway = true;
    if (closeAfterGrace(d, () -> closeUnlessCompleted(d))) {
      drain(d);
    }
  }

  /**
   * Closes a link that has not taken its last frame. One whose frames are completed is left to
   * its transport, which closes it its own way once they are delivered (a stream lingers for the
   * peer's end of stream, so that no reset discards the last frames).
   */
  private static void closeUnlessCompleted(Destination d) {
    if (!d.framesCompleted) {
      d.link.dispose();
    }
  }

  /**
   * Runs {@code expire} on the engine after {@link #CLOSE_GRACE}, unless {@code d} is detached
   * first (its timers are disposed then). Returns false, having closed the link, if no scheduler is
   * left to bound the wait.
   */
  private boolean closeAfterGrace(Destination d, Runnable expire) {
    try {
      d.timers.add(
          scheduler.schedule(
              () -> serial.execute(expire), CLOSE_GRACE.toNanos(), TimeUnit.NANOSECONDS));
      return true;
    } catch (java.util.concurrent.RejectedExecutionException e) {
      d.link.dispose();
      return false;
    }
  }

  /** Drops an entry that will never be sent: its frame is released, its requesters answered. */
  private void discard(Outbound o) {
    if (o instanceof Outbound.State s && s.retained() != null) {
      s.retained().releaseFrame();
    } else if (o instanceof Outbound.Request r) {
      r.obligations().forEach(ob -> fail(ob, ErrorCode.NOT_CONNECTED, "node " + nodeId + " closed"));
    }
  }

  boolean isConnected(PeerId peer) {
    for (Destination d : destinations) {
      if (d.peer.equals(peer) && !d.closed) {
        return true;
      }
    }
    return false;
  }

  /**
   * Times a link's queue gave back its index after a backlog ({@link #trimQueues}), over the links
   * attached now. For tests, which read it while the engine is idle.
   */
  int queueIndexRebuilds() {
    int n = 0;
    for (Destination d : destinations) {
      n += d.queue.indexRebuilds();
    }
    return n;
  }

  /**
   * Keys recorded over every link for catch-ups still waiting for the peer's first watermark of
   * their owner ({@link Destination#catchUpSeen}). For tests, which read it while the engine is idle:
   * the record must end with the catch-up.
   */
  int keysAwaitingWatermark() {
    int keys = 0;
    for (Destination d : destinations) {
      for (java.util.Set<ObjectKey> seen : d.catchUpSeen.values()) {
        keys += seen.size();
      }
    }
    return keys;
  }

  /**
   * Owners whose first watermark ended a link's catch-up, over every link ({@link
   * Destination#caughtUp}). For tests, which read it while the engine is idle.
   */
  int ownersCaughtUp() {
    int owners = 0;
    for (Destination d : destinations) {
      owners += d.caughtUp.size();
    }
    return owners;
  }

  /**
   * Whether the engine takes the link to {@code peer} to hold {@code v} of {@code key} or a newer
   * version: in the link's table, or as the holder of the key's state (held or dropped). For tests,
   * which read it while the engine is idle.
   */
  boolean peerHolds(PeerId peer, ObjectKey key, Version v) {
    for (Destination d : destinations) {
      if (d.peer.equals(peer)) {
        StoredState st = objects.get(key);
        return holdsAtLeast(d, key, st != null ? st : droppedState(key), v);
      }
    }
    return false;
  }

  /**
   * Whether the state of {@code key} names a detached link as its holder, which would keep that
   * link reachable for the object's life. For tests, which read it while the engine is idle.
   */
  boolean heldByDetachedLink(ObjectKey key) {
    StoredState st = objects.get(key);
    return st != null && st.holder != null && st.holder.closed;
  }

  /**
   * How many links record anything of {@code key}: hold it (in the object's state or their table)
   * or had it withdrawn. For tests, which read it while the engine is idle.
   */
  int linksRecording(ObjectKey key) {
    StoredState st = objects.get(key);
    int n = 0;
    for (Destination d : destinations) {
      if (st != null && st.holder == d || d.held.containsKey(key) || d.withdrawn.contains(key)) {
        n++;
      }
    }
    return n;
  }

  /**
   * Counters read from any thread: confined fields read outside the serial executor may be
   * slightly stale or mutually inconsistent, a benign race for statistics; {@link
   * #statsConsistent} reads them on the executor.
   */
  NodeStats stats() {
    int queued = 0;
    List<PeerStats> peers = new ArrayList<>();
    for (Destination d : destinations) {
      queued += d.queue.size();
      peers.add(peerStats(d));
    }
    return new NodeStats(
        framesSent.get(),
        bytesSent.get(),
        framesReceived.get(),
        statesEncoded.get(),
        updatesOffered,
        updatesCoalesced,
        publishesMerged.get(),
        eventsDropped.get(),
        queued,
        pendingRequests,
        pendingDecisions,
        activeTransitions,
        errorsReceived.get(),
        tasksFailed.get(),
        List.copyOf(peers));
  }

  private PeerStats peerStats(Destination d) {
    String node = d.helloNode;
    return new PeerStats(
        d.peer,
        d.framesSent,
        d.bytesSent,
        d.framesReceived,
        d.bytesReceived,
        d.updatesProduced,
        d.updatesCoalesced,
        d.staleness.quantile(0.5),
        d.staleness.quantile(0.99),
        d.queue.size(),
        d.outstanding.size(),
        node == null ? 0 : transitionsByOrigin.getOrDefault(node, 0),
        d.inbound.pauses(),
        d.inbound.throttled(),
        d.eventsDropped);
  }

  Mono<NodeStats> statsConsistent() {
    return Mono.create(sink -> serial.execute(() -> sink.success(stats())));
  }

  /**
   * Consistent statistics every {@code period} on the node's scheduler, until the node closes. A
   * slow subscriber skips ticks instead of queueing them.
   */
  Flux<NodeStats> statsEvery(java.time.Duration period) {
    if (period.isNegative() || period.isZero()) {
      throw new IllegalArgumentException("period must be positive: " + period);
    }
    return Flux.interval(period, scheduler)
        .onBackpressureDrop()
        .concatMap(tick -> statsConsistent(), 1)
        .takeUntilOther(closing.asMono());
  }

  TypeBinding<?> binding(SyncType<?> type) {
    TypeBinding<?> b = types.get(type.name());
    if (b == null) {
      throw new IllegalArgumentException(type + " is not registered on node " + nodeId);
    }
    return b;
  }

  TypeBinding<?> bindingOf(Class<?> cls) {
    TypeBinding<?> b = typesByClass.get(cls);
    if (b == null) {
      throw new IllegalArgumentException(
          "no unique type is registered for "
              + cls.getName()
              + " on node "
              + nodeId
              + "; use publish(type, value)");
    }
    return b;
  }

  /** The first local owner; callable from any thread. */
  OwnerId defaultOwner() {
    OwnerId o = firstOwner;
    if (o == null) {
      throw new IllegalStateException("node " + nodeId + " has no local owner");
    }
    return o;
  }

  private void localOwnersChanged() {
    firstOwner = localOwners.isEmpty() ? null : localOwners.keySet().iterator().next();
  }

  // ------------------------------------------------------------------ transitions (API side)

  Transition<?> beginTransition(SyncType<?> type, Object keyValue) {
    TypeBinding<?> b = binding(type);
    ObjectKey key = type.key(keyValue);
    StoredState cur = objects.get(key);
    if (cur == null || cur.deleted()) {
      throw new EntanglementException(ErrorCode.NOT_FOUND, key + " does not exist");
    }
    return new LocalTransition<>(b, key, cur.owner(), java.util.UUID.randomUUID().toString());
  }

  private final class LocalTransition<T> implements Transition<T> {
    private final TypeBinding<?> binding;
    private final ObjectKey key;
    private final OwnerId owner;
    private final String id;

    LocalTransition(TypeBinding<?> binding, ObjectKey key, OwnerId owner, String id) {
      this.binding = binding;
      this.key = key;
      this.owner = owner;
      this.id = id;
    }

    @Override
    public String id() {
      return id;
    }

    @Override
    public ObjectKey key() {
      return key;
    }

    @Override
    public void update(T value) {
      ObjectNode tree = json.valueToTree(value);
      limits.checkObjectSize(tree, "the update of transition ", id);
      queueOn(key, () -> localTransitionUpdate(binding, key, owner, id, tree, false));
    }

    @Override
    public void update(Map<String, ?> attributes) {
      ObjectNode tree = attributesTree(attributes);
      limits.checkObjectSize(tree, "the update of transition ", id);
      queueOn(key, () -> localTransitionUpdate(binding, key, owner, id, tree, true));
    }

    @Override
    public Mono<Outcome<T>> commit() {
      Mono<Outcome<?>> m = request(key, sink -> commitTransition(binding, key, owner, id, sink));
      return m.map(
          o -> {
            @SuppressWarnings("unchecked")
            Outcome<T> t = (Outcome<T>) o;
            return t;
          });
    }

    @Override
    public Mono<Void> abort() {
      return Mono.create(
          sink ->
              queueOn(
                  key,
                  () -> {
                    endTransition(key, id, TransitionState.ABORTED, true, null);
                    sink.success();
                  }));
    }
  }

  private void localTransitionUpdate(
      TypeBinding<?> b, ObjectKey key, OwnerId owner, String tid, ObjectNode tree, boolean partial) {
    if (endedTransitions.containsKey(tid)) {
      log.debug("update of ended transition {} ignored", tid);
      return;
    }
    TransitionSlot slot = transitionSlot(b, key, owner, tid, nodeId);
    slot.local = true;
    slot.seq++;
    if (partial) {
      slot.attributes = merge(slot.attributes, tree);
    } else {
      slot.attributes = tree;
      slot.partial = false;
    }
    touch(slot);
    emitTentative(slot, TransitionState.ACTIVE);
    floodTentative(slot, null);
  }

  private void commitTransition(
      TypeBinding<?> b, ObjectKey key, OwnerId owner, String tid, MonoSink<Outcome<?>> sink) {
    TransitionState ended = endedTransitions.get(tid);
    if (ended != null) {
      sink.success(
          new Outcome.Rejected<>(ErrorCode.BROKEN_TRANSITION, "transition " + tid + " " + ended));
      return;
    }
    Map<String, TransitionSlot> slots = transitions.get(key);
    TransitionSlot slot = slots == null ? null : slots.get(tid);
    if (slot == null) {
      sink.success(
          new Outcome.Rejected<>(
              ErrorCode.INVALID_OPERATION, "transition " + tid + " has no update to commit"));
      return;
    }
    LocalWaiter w = localWaiter(sink);
    Outbound.Request r =
        Outbound.Request.local(
            Message.ProposalKind.UPDATE,
            false,
            b,
            key,
            owner,
            slot.partial,
            slot.attributes,
            tid,
            w);
    if (localOwners.containsKey(owner)) {
      // The owner's own transition: no one to ask.
      StoredState cur = current(key);
      if (cur == null || cur.deleted()) {
        w.rejected(ErrorCode.NOT_FOUND, key + " does not exist");
        return;
      }
      ObjectNode merged =
          slot.partial ? cur.attributesPatchedWith(slot.attributes, codec, json) : slot.attributes;
      try {
        Object value = json.treeToValue(merged, b.type().javaType());
        commitLocal(b, key, owner, merged, value, false, tid, List.of(), w::committed,
            e -> {
              if (e instanceof EntanglementException removed) { // the owner, while it was written
                w.rejected(removed.code(), removed.getMessage());
              } else {
                fail(w, ErrorCode.NOT_CONNECTED, NOT_WRITTEN);
              }
            });
      } catch (JacksonException e) {
        w.rejected(ErrorCode.BAD_ENCODING, "tentative value does not decode: " + e.getOriginalMessage());
      }
      return;
    }
    sendRequest(r, null);
  }

  // ------------------------------------------------------------------ local commits

  /**
   * @param known the state of the value's object a publisher found, if it looked (while the engine
   *     was busy); it spares the lookup if it is still current
   */
  private void publishNow(
      @Nullable SyncType<?> declared,
      @Nullable StoredState known,
      OwnerId owner,
      Object value,
      java.util.function.Consumer<Snapshot<?>> done,
      java.util.function.Consumer<Throwable> lost) {
    requireStarted();
    TypeBinding<?> b = declared != null ? binding(declared) : bindingOf(value.getClass());
    if (!b.type().javaType().isInstance(value)) {
      throw new IllegalArgumentException(value.getClass() + " is not a " + b.type());
    }
    LocalOwner lo = localOwners.get(owner);
    if (lo == null) {
      throw new EntanglementException(ErrorCode.BAD_OWNER, owner + " is not a local owner of " + nodeId);
    }
    @SuppressWarnings("unchecked")
    SyncType<Object> t = (SyncType<Object>) b.type();
    ObjectKey key = known != null ? known.key() : t.keyOf(value);
    if (t.isUnique()) {
      limits.checkObjectSize(value, key);
      done.accept(publishEvent(b, key, owner, json.valueToTree(value), value));
      return;
    }
    StoredState cur = known != null && known.inTable && uncommitted.isEmpty() ? known : current(key);
    if (cur != null) {
      if (!cur.deleted() && !cur.owner().equals(owner)) {
        throw new EntanglementException(
            ErrorCode.BAD_OWNER, key + " is owned by " + cur.owner() + "; propose a change instead");
      }
      key = cur.key(); // one key instance per object, however many versions
    }
    Version v = new Version(lo.epoch, lo.serial + 1);
    StoredState st = new StoredState(b, new Snapshot<>(key, value, owner, v, false, now()), null, null);
    // The size check encodes the SYNC frame every destination is sent (one encode), and holds it
    // to the bound a receiver applies to that frame.
    limits.checkEncodedSize(st.frame(codec, json, statesEncoded).length, key);
    lo.serial++;
    commit(st, cur, null, List.of(), s -> done.accept(s.snapshot), lost);
  }

  private Snapshot<?> publishEvent(
      TypeBinding<?> b, ObjectKey key, OwnerId owner, ObjectNode tree, Object value) {
    LocalOwner lo = localOwners.get(owner);
    Snapshot<?> snap =
        new Snapshot<>(key, value, owner, new Version(lo.epoch, ++lo.serial), false, now());
    StoredState st = new StoredState(b, snap, tree, null);
    recentEvents.put(key, Boolean.TRUE);
    notifyWatchers(snap);
    floodEvent(st, null);
    return snap;
  }

  /**
   * Commits a new version of a local owner's object. Without a store it takes effect at once. With
   * one, it takes effect — watchers, flood, transitions, {@code done} — only once its batch is
   * durable, so nothing acknowledged or sent is ever lost by a crash; meanwhile owner-side logic
   * sees it through {@link #current}.
   *
   * @param attributes the new attributes; null for a delete, or when {@code value} is given (a
   *     publish, a decided proposal), whose tree is then derived only when needed
   * @param answering the requests this commit answers: each learns the state before it takes
   *     effect, so a link whose RESPONSE will carry it is not also sent the SYNC
   */
  private void commitLocal(
      TypeBinding<?> b,
      ObjectKey key,
      OwnerId owner,
      @Nullable ObjectNode attributes,
      @Nullable Object value,
      boolean deleted,
      @Nullable String confirmsTransition,
      List<Obligation> answering,
      java.util.function.Consumer<StoredState> done,
      java.util.function.Consumer<Throwable> lost) {
    LocalOwner lo = localOwners.get(owner);
    Version v = new Version(lo.epoch, ++lo.serial);
    Object typed = value;
    if (typed == null && !deleted) {
      typed = json.treeToValue(Objects.requireNonNull(attributes, "attributes"), b.type().javaType());
    }
    Snapshot<?> snap = new Snapshot<>(key, deleted ? null : typed, owner, v, deleted, now());
    commit(
        new StoredState(b, snap, deleted || value != null ? null : attributes, null),
        null, confirmsTransition, answering, done, lost);
  }

  /**
   * Commits a new version of a local owner's object, built by the caller: see {@link #commitLocal}.
   * With a store, {@code done} runs once it is durable; if the node closes before it can be written,
   * the answering obligations fail and {@code lost} runs instead, and the version never takes effect.
   */
  private void commit(
      StoredState st,
      @Nullable StoredState current,
      @Nullable String confirmsTransition,
      List<Obligation> answering,
      java.util.function.Consumer<StoredState> done,
      java.util.function.Consumer<Throwable> lost) {
    ObjectKey key = st.key();
    Version v = st.version();
    st.retainFrame(); // until done: an answer is built around the frame the flood sends
    if (store == null) {
      answering.forEach(o -> o.willAnswer(st));
      takeEffect(st, current, confirmsTransition);
      done.accept(st);
      st.releaseFrame();
      return;
    }
    uncommitted.put(key, st);
    ownersToPersist.add(st.owner());
    persist(new WriteBatch.PutObject(record(st)));
    LocalOwner committer = localOwners.get(st.owner());
    whenDurable(
        () -> {
          uncommitted.remove(key, st);
          if (localOwners.get(st.owner()) != committer) {
            // Removed while the version was written: the store dropped it with the owner's other
            // objects (the removal was written after it), so it must not take effect here either.
            st.releaseFrame();
            String why = st.owner() + " was removed from " + nodeId + " before the change took effect";
            answering.forEach(o -> o.rejected(ErrorCode.BAD_OWNER, why));
            lost.accept(new EntanglementException(ErrorCode.BAD_OWNER, why));
            return;
          }
          answering.forEach(o -> o.willAnswer(st));
          takeEffect(st, current, confirmsTransition);
          done.accept(st);
          st.releaseFrame();
        },
        e -> {
          uncommitted.remove(key, st);
          st.releaseFrame();
          answering.forEach(o -> fail(o, ErrorCode.NOT_CONNECTED, NOT_WRITTEN));
          lost.accept(e);
        });
  }

  private static final String NOT_WRITTEN = "the change could not be written to the store";

  /** The failure of a change never written, or {@code cause} itself if it says why already. */
  private static EntanglementException notWritten(Throwable cause) {
    if (cause instanceof EntanglementException known) {
      return known;
    }
    EntanglementException e = new EntanglementException(ErrorCode.NOT_CONNECTED, NOT_WRITTEN);
    e.initCause(cause);
    return e;
  }

  /** @param current the key's state as the committer found it, if it has it: spares a lookup */
  private void takeEffect(StoredState st, @Nullable StoredState current, @Nullable String confirmsTransition) {
    st.arrival = ++arrivals;
    putState(st, current);
    notifyWatchers(st.snapshot);
    markDirty(st, null);
    settleTransitions(st.key(), confirmsTransition);
  }

  /**
   * Makes {@code st} its key's state. The holder of the state it replaces (see {@link
   * StoredState#holder}) goes on holding the same version: a new version of the same owner without a
   * holder of its own carries it; otherwise, unless the new state has the same holder (which then
   * holds it, a newer version), the holding goes to the holder's table. A state of another owner
   * replaces every holding of the key: versions of different owners do not compare.
   */
  private void putState(StoredState st, @Nullable StoredState current) {
    StoredState old = current != null && current.inTable ? objects.replace(current, st) : objects.put(st);
    if (old == null) {
      return;
    }
    if (!old.owner().equals(st.owner())) {
      // Versions of another owner say nothing about this owner's (its epochs may be lower): no
      // link is taken to hold the new state but its own holder.
      for (Destination d : destinations) {
        d.held.remove(st.key());
      }
      return;
    }
    if (old.holder == null) {
      return;
    }
    if (st.holder == null) {
      st.holder = old.holder;
      st.heldVersion = old.heldVersion;
    } else if (st.holder != old.holder) {
      old.holder.noteHeld(old.key(), old.heldVersion);
    }
  }

  /**
   * Records that {@code d} holds {@code st}'s version (it is sent it, a RESPONSE carries it, or a
   * catch-up showed it); false if it held that version or a newer one already. The state's holder,
   * or a first link that holds one of this node's own objects, is recorded in the state, any other
   * link in its table. For this node's own objects, the holder's table is never written (no state of
   * theirs is received), and was found older when the link became the holder: so it need not be
   * read.
   */
  private boolean noteHolds(Destination d, ObjectKey key, StoredState st) {
    Version v = st.version();
    if (st.holder == d) {
      if (st.heldVersion.compareTo(v) >= 0
          || !localOwners.containsKey(st.owner()) && d.held.holdsAtLeast(key, v)) {
        return false;
      }
      st.heldVersion = v;
      return true;
    }
    if (st.holder == null && localOwners.containsKey(st.owner())) {
      if (d.held.holdsAtLeast(key, v)) {
        return false;
      }
      makeHolder(st, d, v);
      return true;
    }
    return d.held.putIfNewer(key, v);
  }

  /** The state of {@code key} this node dropped last, if it still remembers it, or null. */
  private @Nullable StoredState droppedState(ObjectKey key) {
    Dropped x = dropped.get(key);
    return x == null ? null : x.state();
  }

  /**
   * Makes {@code d} the holder of {@code st} at {@code v} (see {@link StoredState#holder}); the link
   * is marked, so that its detach clears what it holds.
   */
  private static void makeHolder(StoredState st, Destination d, Version v) {
    st.holder = d;
    st.heldVersion = v;
    d.everHolder = true;
  }

  /** Whether {@code d} holds {@code v} of {@code key} or a newer version; {@code st} is its state. */
  private static boolean holdsAtLeast(Destination d, ObjectKey key, @Nullable StoredState st, Version v) {
    return st != null && st.holder == d && st.heldVersion.compareTo(v) >= 0 || d.held.holdsAtLeast(key, v);
  }

  /** Forgets that {@code d} holds {@code key}, in its table and as the holder of {@code st}. */
  private static void forgetHeld(Destination d, ObjectKey key, @Nullable StoredState st) {
    d.held.remove(key);
    if (st != null) {
      forgetHolder(d, st);
    }
  }

  private static void forgetHolder(Destination d, StoredState st) {
    if (st.holder == d) {
      st.holder = null;
      st.heldVersion = null;
    }
  }

  /**
   * A refused state that its source still holds: recorded in its table if it was to stand for the
   * holding ({@code heldBySource}, see {@link #applyState}).
   */
  private static ErrorCode refusedHeld(
      Destination from, ObjectKey key, Version v, boolean heldBySource, ErrorCode code) {
    if (heldBySource) {
      from.noteHeld(key, v);
    }
    return code;
  }

  /** The newest state of {@code key}, including a local commit not yet durable. */
  private @Nullable StoredState current(ObjectKey key) {
    StoredState pending = uncommitted.get(key);
    return pending != null ? pending : objects.get(key);
  }

  // ------------------------------------------------------------------ persistence

  private StoredData.ObjectRecord record(StoredState st) {
    return record(st, st.attributes(codec, json));
  }

  private StoredData.ObjectRecord record(StoredState st, ObjectNode attributes) {
    Snapshot<?> s = st.snapshot;
    return new StoredData.ObjectRecord(
        s.key().type(), s.key().key(), s.owner().value(), s.version().epoch(), s.version().serial(),
        s.committedAt(), s.deleted(), s.deleted() ? "{}" : json.writeValueAsString(attributes));
  }

  /** Adds a change to the batch being filled; with no store, does nothing. */
  private void persist(WriteBatch.Change change) {
    if (store == null || storeFailure != null) {
      return;
    }
    filling.add(change);
    flushWrites();
  }

  /**
   * What to run once everything persisted so far is durable, and what to run instead if it never
   * will be: the node closed while the store failed (see {@link #flushWrites}).
   */
  private record Durable(Runnable then, java.util.function.Consumer<Throwable> lost) {}

  /** A local owner's serial as a batch records it: durable once the batch is. */
  private record CoveredSerial(LocalOwner owner, long serial) {}

  private void whenDurable(Runnable then, java.util.function.Consumer<Throwable> lost) {
    Throwable failure = storeFailure;
    if (failure != null) {
      lost.accept(failure);
      return;
    }
    fillingCallbacks.add(new Durable(then, lost));
    flushWrites();
  }

  /**
   * One batch in flight at a time (group commit): changes made while it is written go into the
   * next batch, so a burst of commits costs one transaction, not one each.
   */
  private void flushWrites() {
    if (writing || store == null || storeFailure != null
        || (filling.isEmpty() && fillingCallbacks.isEmpty())) {
      return;
    }
    writing = true;
    // Taken in a task of its own, so that every change of the current task joins this batch.
    serial.execute(
        () -> {
          WriteBatch batch = filling;
          List<Durable> callbacks = fillingCallbacks;
          filling = new WriteBatch();
          fillingCallbacks = new ArrayList<>();
          // The owner's serial as of now covers every commit in this batch, and no later one. Kept
          // with the owner instance: an owner removed and added again meanwhile starts anew.
          Map<OwnerId, CoveredSerial> covered = new HashMap<>();
          for (OwnerId o : ownersToPersist) {
            LocalOwner lo = localOwners.get(o);
            if (lo != null) {
              batch.add(new WriteBatch.PutOwner(
                  new StoredData.OwnerRecord(o.value(), lo.epoch, lo.serial, true)));
              covered.put(o, new CoveredSerial(lo, lo.serial));
            }
          }
          ownersToPersist.clear();
          (batch.isEmpty() ? Mono.<Void>empty() : store.write(batch))
              .subscribe(
                  null,
                  e ->
                      serial.execute(
                          () -> {
                            if (closed || e instanceof PermanentStoreException) {
                              // Closing, or a batch no retry can write: give up. Every change not
                              // written fails its caller (and close() fails).
                              if (closed) {
                                log.error("node {}: {} changes could not be written before close",
                                    nodeId, batch.size() + filling.size(), e);
                              } else {
                                log.error("node {}: the store refused {} changes for good; this node"
                                    + " writes nothing more, and every local commit fails",
                                    nodeId, batch.size() + filling.size(), e);
                                storeFailure = e;
                                writing = false;
                                filling = new WriteBatch();
                                ownersToPersist.clear();
                              }
                              List<Durable> lost = new ArrayList<>(callbacks);
                              lost.addAll(fillingCallbacks);
                              fillingCallbacks = new ArrayList<>();
                              lost.forEach(c -> c.lost().accept(e));
                              return;
                            }
                            // Nothing of the batch took effect: retry it ahead of later changes.
                            log.error("node {}: writing {} changes failed; retrying in 1 s",
                                nodeId, batch.size(), e);
                            batch.changes().addAll(filling.changes());
                            filling = batch;
                            ownersToPersist.addAll(covered.keySet()); // their durable serial, again
                            callbacks.addAll(fillingCallbacks);
                            fillingCallbacks = callbacks;
                            scheduler.schedule(
                                () -> serial.execute(() -> {
                                  writing = false;
                                  flushWrites();
                                }),
                                1,
                                TimeUnit.SECONDS);
                          }),
                  () ->
                      serial.execute(
                          () -> {
                            writing = false;
                            for (CoveredSerial c : covered.values()) {
                              if (c.owner().durable < c.serial()) {
                                c.owner().durable = c.serial();
                              }
                            }
                            for (Durable c : callbacks) {
                              try {
                                c.then().run();
                              } catch (RuntimeException failed) { // one change's failure is its own
                                taskFailed(failed);
                              }
                            }
                            flushWrites();
                          }));
        });
  }

  // ------------------------------------------------------------------ links

  private void attachNow(Link link, MonoSink<Void> sink) {
    for (Destination existing : List.copyOf(destinations)) {
      if (existing.peer.equals(link.remote())) {
        log.info("node {}: new link to {} replaces the old one", nodeId, link.remote());
        receiveBurst(existing); // received: handled, not lost with the link (as at its close)
        existing.link.dispose();
        detach(existing);
      }
    }
    Destination d =
        new Destination(
            link,
            nextDestinationOrder++,
            new InboundLimiter(
                limits.inboundRate(), limits.inboundBurst(), INBOUND_WINDOW, scheduler, serial));
    destinations.add(d);
    List<Message.OwnerAd> ads = new ArrayList<>();
    localOwners.forEach((o, lo) -> ads.add(new Message.OwnerAd(o.value(), lo.epoch)));
    offer(d, new QueueKey(Lane.CONTROL, "hello"), 0,
        new Outbound.Control(new Message.Hello(FrameCodec.PROTOCOL_VERSION, nodeId, ads, 0)));
    offer(d, new QueueKey(Lane.CONTROL, "routes"), 0, new Outbound.Routes());
    removedOwners.forEach(
        (o, epoch) ->
            offer(d, new QueueKey(Lane.CONTROL, "removed:" + o), 1,
                new Outbound.Control(new Message.OwnerRemoved(o.value(), epoch))));
    List<Message.Mark> holds = new ArrayList<>();
    watermarks.forEach((o, v) -> holds.add(new Message.Mark(o.value(), v.epoch(), v.serial())));
    offer(d, new QueueKey(Lane.CONTROL, "catch-up"), 0,
        new Outbound.Control(new Message.CatchUp(holds)));
    for (Map<String, TransitionSlot> slots : transitions.values()) {
      for (TransitionSlot s : slots.values()) {
        offer(d, new QueueKey(Lane.TENTATIVE, s.id), s.binding.priority(),
            new Outbound.Tentative(s.key, s.id));
      }
    }
    d.lastReceivedNanos = scheduler.now(TimeUnit.NANOSECONDS);
    d.timers.add(
        scheduler.schedule(
            () -> serial.execute(() -> {
              if (!d.ready && !d.closed) {
                protocolError(d, ErrorCode.TIMEOUT, "no HELLO within " + timeouts.handshake());
              }
            }),
            timeouts.handshake().toNanos(),
            TimeUnit.NANOSECONDS));
    long keepAlive = timeouts.keepAlive().toNanos();
    if (keepAlive > 0) {
      d.timers.add(
          scheduler.schedulePeriodically(
              () -> serial.execute(() -> keepAlive(d)), keepAlive, keepAlive, TimeUnit.NANOSECONDS));
    }
    // Subscribed first: whatever happens below, a closed link is detached and attach completes.
    link.onClose()
        .onErrorResume(e -> Mono.empty())
        .subscribe(
            null,
            null,
            () ->
                serial.execute(
                    () -> {
                      // Netty reports the close before the end of the receive stream: frames held
                      // for a marker that will not come are handled before the link is detached.
                      receiveBurst(d);
                      detach(d);
                      sink.success();
                    }));
    try {
      link.receive()
          .subscribe(
              new BaseSubscriber<byte[]>() {
                @Override
                protected void hookOnSubscribe(Subscription s) {
                  serial.execute(() -> d.inbound.start(s));
                }

                @Override
                protected void hookOnNext(byte[] frame) {
                  serial.execute(
                      () -> {
                        try {
                          if (d.takesFrames()) {
                            receiveFrame(d, frame);
                          }
                        } finally {
                          // Even if a handler failed: the link must not stall.
                          if (frame.length == 0) {
                            d.inbound.receivedMarker();
                          } else {
                            d.inbound.received();
                          }
                          if (!d.burst.isEmpty() && !d.inbound.awaiting()) {
                            receiveBurst(d); // no marker comes before more is requested
                          }
                        }
                      });
                }

                @Override
                protected void hookOnError(Throwable t) {
                  log.warn("node {}: link to {} failed", nodeId, d.peer, t);
                  serial.execute(() -> receiveBurst(d));
                  link.dispose();
                }

                @Override
                protected void hookOnComplete() {
                  serial.execute(() -> receiveBurst(d));
                  link.dispose();
                }
              });
      link.send(
              s -> {
                // Urgent, all three: a link's demand must not wait behind a backlog of commits,
                // or a burst is committed in full before its first frame is sent (one core idle).
                // In one lane, so demand is never counted before the subscriber it is for. The
                // drain it allows runs at once on an idle executor; while tasks wait, at the end
                // of the turn (within one batch), as a commit's does: the turn's changes then
                // leave as one run, not a run per unit of demand given back mid-turn. A burst left
                // open when demand ran out is ended at once, though: its frames are with the
                // transport already, which may hold them for the marker (see drain).
                serial.executeUrgent(() -> d.out = s);
                s.onSubscribe(
                    new dev.entanglement.transport.FrameSubscription() {
                      @Override
                      public void request(long n) {
                        if (n <= 0) {
                          // Reactive Streams §3.9: the transport has a bug; the link ends.
                          serial.executeUrgent(() -> {
                            if (d.out == s) {
                              d.out = null;
                              s.onError(new IllegalArgumentException(
                                  "§3.9: request must be positive, was " + n));
                              d.link.dispose();
                            }
                          });
                          return;
                        }
                        request(n, 0);
                      }

                      @Override
                      public void request(long frames, long bytes) {
                        if (frames < 0 || bytes < 0 || frames == 0 && bytes == 0) {
                          return;
                        }
                        serial.executeUrgent(
                            () -> {
                              d.demand = d.demand + frames < 0 ? Long.MAX_VALUE : d.demand + frames;
                              if (bytes > 0) {
                                // The first request starts the count. Saturating; the demand may
                                // be below zero (a frame crossed the line).
                                d.byteDemand = !d.bytesCounted ? bytes
                                    : d.byteDemand > Long.MAX_VALUE - bytes ? Long.MAX_VALUE
                                    : d.byteDemand + bytes;
                                d.bytesCounted = true;
                              }
                              demandArrived(d);
                            });
                      }

                      @Override
                      public void cancel() {
                        serial.executeUrgent(() -> d.out = null);
                      }
                    });
              })
          .subscribe(v -> {}, e -> log.warn("node {}: sending to {} failed", nodeId, d.peer, e));
    } catch (RuntimeException e) {
      log.warn("node {}: link to {} failed while attaching: {}", nodeId, d.peer, e.toString());
      link.dispose();
    }
  }

  /** On the executor, after the link's transport asked for more frames or bytes. */
  private void demandArrived(Destination d) {
    boolean backlog = serial.hasWaiting();
    if (backlog) {
      try {
        endOpenBurst(d);
      } catch (RuntimeException e) {
        transportThrew(d, e);
      }
    }
    drainOrDefer(d, backlog);
  }

  /**
   * Pings an idle peer; closes the link of a peer silent for three keepalive intervals and detaches
   * its destination at once. Not waiting for the link's {@code onClose}: a transport may report
   * the close late (behind this executor's backlog) or, if buggy, never, and a destination left
   * attached keeps its queue, takes every commit and would be closed again every interval.
   */
  private void keepAlive(Destination d) {
    if (d.closed) {
      return;
    }
    receiveBurst(d); // frames held for a late marker were received: the link is not silent
    long silent = scheduler.now(TimeUnit.NANOSECONDS) - d.lastReceivedNanos;
    if (silent >= 3 * timeouts.keepAlive().toNanos()) {
      log.warn("node {}: {} silent for {} ms; closing the link", nodeId, d.peer, silent / 1_000_000);
      d.link.dispose();
      detach(d);
      return;
    }
    // One waits at most: a newer keepalive replaces one a peer that does not read left waiting.
    offer(d, KEEPALIVE_PING, 0, new Outbound.Control(new Message.Ping(--probes)));
    drain(d);
  }

  private void detach(Destination d) {
    if (d.closed) {
      return;
    }
    d.closed = true;
    d.timers.forEach(reactor.core.Disposable::dispose);
    d.inbound.stop();
    if (d.watermarkFlush != null) {
      d.watermarkFlush.dispose();
    }
    if (d.unreadAnswersCheck != null) {
      d.unreadAnswersCheck.dispose();
    }
    destinations.remove(d);
    if (d.everHolder) {
      // What it held goes with it; no state keeps the closed link reachable.
      for (StoredState st : objects.values()) {
        forgetHolder(d, st);
      }
      for (Dropped x : dropped.values()) {
        forgetHolder(d, x.state());
      }
    }
    if (d.acknowledged != null) {
      offeredAtDetach.put(d.peer, d.acknowledged);
    }
    d.out = null;
    if (!d.passedOver) {
      endRequestsAndRoutes(d, "link to " + d.peer + " lost before the answer");
    } else {
      d.clearQueue(); // at most an ERROR never taken
      routesChanged(); // d is gone from the destinations now
    }
    log.debug("node {}: detached {}", nodeId, d.peer);
  }

  /**
   * Ends what {@code d} carries once nothing more can pass it: its requests awaiting an answer fail
   * with {@code NOT_CONNECTED} (they may have taken effect), what is queued for it is dropped, the
   * routes are computed again without it and announced, and the requests queued for it go to
   * another neighbour that knows their owner; none goes back to {@code d}, which {@link
   * RouteTable} passes over from now on ({@link Destination#passedOver}), and nothing more is
   * queued for it.
   */
  private void endRequestsAndRoutes(Destination d, String unanswered) {
    d.passedOver = true;
    for (List<Obligation> obs : d.outstanding.values()) {
      for (Obligation o : obs) {
        fail(o, ErrorCode.NOT_CONNECTED, unanswered);
      }
    }
    d.outstanding.clear();
    List<Outbound.Request> unsent = new ArrayList<>();
    for (Outbound o; (o = d.queue.poll()) != null; ) {
      if (o instanceof Outbound.Request r) {
        unsent.add(r);
      } else if (o instanceof Outbound.State s && s.retained() != null) {
        s.retained().releaseFrame(); // never to be sent on this link
      }
    }
    // Its index too: the transport may hold its subscription, and with it d, for a while yet.
    d.clearQueue();
    routesChanged();
    for (Outbound.Request r : unsent) {
      sendRequest(r, null); // fail over to another neighbour that knows the owner
    }
  }

  /**
   * Sends as many frames as the link demands (in frames, and in bytes once its transport counts
   * them: {@link dev.entanglement.transport.FrameSubscription}), building each from the current
   * state, and ends the burst with {@link Link#END_OF_BURST} while demand is left: the transport
   * may hold a burst's frames until then and write them at once. A burst that used the last unit
   * of demand is ended by the next drain that has demand, even with nothing to send: the transport
   * counts the demand it asked for when it asks, and may have asked for more before that last
   * frame reached it, so the frame would otherwise wait for the next one.
   *
   * <p>A transport that throws from {@code onNext} or {@code onComplete} breaks the Reactive
   * Streams contract (§2.13): its subscription counts as cancelled and its link is closed, so that
   * the peer catches up over a new one. The exception goes no further: the change that was being
   * sent has taken effect, and the other links and the caller go on as if this link had dropped.
   */
  private void drain(Destination d) {
    try {
      drainFrames(d);
    } catch (RuntimeException e) {
      transportThrew(d, e);
    }
  }

  private void transportThrew(Destination d, RuntimeException e) {
    tasksFailed.incrementAndGet();
    log.error("node {}: the transport to {} threw while taking frames; closing the link", nodeId, d.peer, e);
    d.out = null;
    d.link.dispose();
  }

  private void drainFrames(Destination d) {
    while (d.demand > 0 && d.byteDemand > 0 && d.out != null && !d.closed && !d.peerLeaving) {
      Outbound o = d.queue.poll();
      if (o == null && d.catchUpAnswered && (d.offered == null
          || d.offered.policyGeneration() != policyGeneration || d.offered.arrival() != arrivals)) {
        d.offered = new Destination.Offered(policyGeneration, arrivals); // everything offered left
      }
      if (o == null && d.probeWanted && probeDue(d) && !d.closeWhenFlushed && !d.passedOver) {
        // Sent from an empty queue, so it takes no place in it: the queue stays within one entry
        // per object and per owner's watermark.
        d.probeWanted = false;
        d.probed = d.offered;
        d.probeNonce = --probes;
        o = new Outbound.Control(new Message.Ping(d.probeNonce));
      }
      if (o == null) {
        scheduleWatermarkFlush(d);
        if (d.closeWhenFlushed) {
          // Completing the frames tells the transport to flush them, then close the link.
          d.out.onComplete();
          d.out = null;
          d.framesCompleted = true;
        }
        break;
      }
      byte[] frame;
      try {
        frame = materialize(d, o);
      } catch (RuntimeException e) {
        log.error("node {}: could not build a frame for {}", nodeId, d.peer, e);
        continue;
      }
      if (frame == null) {
        continue;
      }
      d.demand--;
      if (d.bytesCounted) {
        d.byteDemand -= frame.length; // may go below zero: the frame that crosses the line goes whole
      }
      d.framesSent++;
      d.bytesSent += frame.length;
      framesSent.incrementAndGet();
      bytesSent.addAndGet(frame.length);
      d.burstOpen = true;
      d.out.onNext(frame);
    }
    endOpenBurst(d);
  }

  /** Ends the burst {@code d}'s transport may be holding, if one is open and demand allows. */
  private void endOpenBurst(Destination d) {
    if (d.burstOpen && d.demand > 0 && d.out != null && !d.closed) {
      d.demand--;
      d.burstOpen = false;
      d.out.onNext(Link.END_OF_BURST);
    }
  }

  private byte @Nullable [] materialize(Destination d, Outbound o) {
    if (o instanceof Outbound.State s) {
      try {
        StoredState retained = s.retained();
        // The version the entry retained, while it is still the current one: no second lookup.
        return retained != null && retained.inTable
            ? stateFrame(d, s.key(), retained)
            : stateFrame(d, s.key());
      } finally {
        if (s.retained() != null) {
          s.retained().releaseFrame(); // d's queue entry is spent, whatever was sent
        }
      }
    } else if (o instanceof Outbound.Control c) {
      return codec.encode(c.message());
    } else if (o instanceof Outbound.Answer a) {
      d.answersQueued--;
      return a.frame() != null ? a.frame() : codec.encode(a.message());
    } else if (o instanceof Outbound.Event e) {
      d.queuedEvents.remove(e.key());
      return e.frame();
    } else if (o instanceof Outbound.Routes) {
      Map<OwnerId, Integer> table = routes.advertisedTo(d);
      if (table.equals(d.lastAdvertised)) {
        return null;
      }
      d.lastAdvertised = table;
      Map<String, Integer> wire = new LinkedHashMap<>();
      table.forEach((k, v) -> wire.put(k.value(), v));
      return codec.encode(new Message.Routes(wire));
    } else if (o instanceof Outbound.Tentative t) {
      return tentativeFrame(d, t);
    } else if (o instanceof Outbound.Request r) {
      return requestFrame(d, r);
    } else if (o instanceof Outbound.Watermark w) {
      return watermarkFrame(d, w);
    }
    throw new IllegalStateException("unknown outbound " + o);
  }

  private byte @Nullable [] stateFrame(Destination d, ObjectKey key) {
    StoredState st = objects.get(key);
    return st == null ? droppedFrame(d, key) : stateFrame(d, key, st);
  }

  /**
   * Dropped here: a peer that may see what it holds keeps it (another neighbour may still be its
   * source); a peer the policy hides it from, or any peer if it is gone, is withdrawn it.
   */
  private byte @Nullable [] droppedFrame(Destination d, ObjectKey key) {
    Dropped x = dropped.get(key);
    boolean heldThere = x != null && x.state().holder == d || d.held.containsKey(key);
    if (!heldThere || x != null && !x.gone() && sendAllowed(d.peer, x.state())) {
      return null;
    }
    forgetHeld(d, key, x != null ? x.state() : null);
    // Gone (deleted, owner removed): every version up to the withdrawn one goes. Hidden: only
    // what was judged, the state held here; a newer one the peer holds was judged by its sender.
    return x == null ? null
        : withdrawFrame(key, x.state().owner(), x.gone() ? x.upTo() : x.state().version());
  }

  /** The SYNC of {@code st} for {@code d}, a WITHDRAW if the policy hides it, or nothing. */
  private byte @Nullable [] stateFrame(Destination d, ObjectKey key, StoredState st) {
    if (!sendAllowed(d.peer, st)) {
      if (st.holder == d || d.held.containsKey(key)
          || d.peerWatermarks.containsKey(st.owner()) && !d.withdrawn.contains(key)) {
        // It holds this state, or may: its catch-up said it holds states of this owner (once per
        // key and link, until a state of it is sent again).
        forgetHeld(d, key, st);
        d.withdrawn.add(key);
        return withdrawFrame(key, st.owner(), st.version());
      }
      return null;
    }
    if (RouteTable.ownedBy(d, st.owner()) || !noteHolds(d, key, st)) {
      return null;
    }
    if (!d.withdrawn.isEmpty()) { // hashing the key is a cache miss on a node of many objects
      d.withdrawn.remove(key);
    }
    d.staleness.record(now() - st.snapshot.committedAt());
    Map<String, TransitionSlot> slots = transitionsOf(key);
    if (slots != null) {
      // Tentative states held back until the peer had this base (see tentativeAllowed).
      for (TransitionSlot slot : slots.values()) {
        offer(d, new QueueKey(Lane.TENTATIVE, slot.id), st.binding.priority(),
            new Outbound.Tentative(key, slot.id));
      }
    }
    return st.frame(codec, json, statesEncoded);
  }

  private byte[] withdrawFrame(ObjectKey key, OwnerId owner, Version upTo) {
    return codec.encode(
        new Message.Withdraw(key.type(), key.key(), owner.value(), upTo.epoch(), upTo.serial()));
  }

  private byte @Nullable [] tentativeFrame(Destination d, Outbound.Tentative t) {
    Map<String, TransitionSlot> slots = transitions.get(t.key());
    TransitionSlot slot = slots == null ? null : slots.get(t.transitionId());
    if (slot == null) {
      return null;
    }
    Long seen = d.tentativeSeen.get(slot.id);
    if (seen != null && seen >= slot.seq) {
      return null;
    }
    if (!tentativeAllowed(d, slot)) {
      return null;
    }
    d.tentativeSeen.put(slot.id, slot.seq);
    Version base = objects.get(t.key()).version(); // present: tentativeAllowed judged on it
    return codec.encode(
        new Message.Transition(
            t.key().type(),
            t.key().key(),
            slot.owner.value(),
            base.epoch(),
            base.serial(),
            slot.id,
            slot.origin,
            slot.seq,
            slot.partial,
            slot.attributes));
  }

  private byte @Nullable [] requestFrame(Destination d, Outbound.Request r) {
    List<Obligation> live = new ArrayList<>();
    for (Obligation o : r.obligations()) {
      if (!o.isDone()) {
        live.add(o);
      }
    }
    if (live.isEmpty()) {
      return null;
    }
    long id = d.nextRequestId++;
    d.outstanding.put(id, live);
    Message m =
        r.create()
            ? new Message.Create(id, r.binding().type().name(), r.owner().value(), r.attributes(), r.hops())
            : new Message.Propose(
                id,
                r.kind(),
                r.binding().type().name(),
                Objects.requireNonNull(r.key()).key(),
                r.owner().value(),
                r.partial(),
                r.attributes(),
                r.transitionId(),
                r.hops());
    return codec.encode(m);
  }

  /** Returns whether {@code entry} was queued (merged or not): false once the link is ending. */
  private boolean offer(Destination d, QueueKey key, int priority, Outbound entry) {
    if (d.goingAway || d.passedOver) {
      discard(entry);
      return false;
    }
    updatesOffered++;
    boolean state = key.lane() == Lane.STATE;
    if (state) {
      d.updatesProduced++;
    }
    if (d.queue.offer(key, priority, entry, Engine::mergeOutbound)) {
      updatesCoalesced++;
      if (state) {
        d.updatesCoalesced++;
      }
    }
    return true;
  }

  /**
   * Last operation wins; requests merge their attributes and their obligations, and a full
   * watermark stays full. A replaced state entry gives back the frame it retained. Package-private
   * for tests.
   */
  static Outbound mergeOutbound(Outbound pending, Outbound next) {
    if (pending instanceof Outbound.State p && p.retained() != null) {
      p.retained().releaseFrame();
    }
    if (pending instanceof Outbound.Watermark p && next instanceof Outbound.Watermark n && p.full()) {
      // A full resync's watermark stays full: a steady-state one queued behind it must not turn it
      // into one that drops nothing.
      return new Outbound.Watermark(n.owner(), true);
    }
    if (pending instanceof Outbound.Request p && next instanceof Outbound.Request n) {
      List<Obligation> obligations = new ArrayList<>(p.obligations());
      obligations.addAll(n.obligations());
      boolean partial = p.partial() && n.partial();
      ObjectNode attrs =
          n.kind() == Message.ProposalKind.DELETE || !n.partial()
              ? n.attributes()
              : merge(p.attributes(), n.attributes());
      return new Outbound.Request(
          n.kind(),
          n.create(),
          n.binding(),
          n.key(),
          n.owner(),
          n.kind() == Message.ProposalKind.DELETE || partial,
          attrs,
          n.transitionId(),
          Math.max(p.hops(), n.hops()),
          obligations);
    }
    return next;
  }

  private void markDirty(StoredState st, @Nullable Destination except) {
    // One queue key and entry, immutable, shared by every destination's queue.
    QueueKey queueKey = new QueueKey(Lane.STATE, st.key());
    Outbound.State entry = new Outbound.State(st.key(), st);
    boolean backlog = publishingInline > 0 || serial.hasWaiting();
    for (Destination d : destinations) {
      if (d != except) {
        st.retainFrame(); // released when d's entry is sent, replaced or dropped
        offer(d, queueKey, st.binding.priority(), entry);
        drainOrDefer(d, backlog);
      }
    }
  }

  /**
   * Drains {@code d} now, or, when tasks wait behind this one ({@code backlog}, {@link
   * SerialExecutor#hasWaiting} read by the caller), leaves the drain for the end of the turn: their
   * changes coalesce in the link's queue meanwhile and leave as one run, instead of a frame per
   * change handed to the transport's thread. A link without demand (frames or bytes) needs no
   * deferred drain: its demand drains it.
   */
  private void drainOrDefer(Destination d, boolean backlog) {
    if (!backlog) {
      drain(d);
    } else if (!d.drainDeferred && d.demand > 0 && d.byteDemand > 0) {
      d.drainDeferred = true;
      drainsDeferred.add(d);
    }
  }

  /**
   * At the end of each turn of the executor: the drains left for it. One failing link (a transport
   * throwing from {@code onNext}) is closed by its drain and does not keep the others waiting.
   */
  private void drainDeferred() {
    // Indexed: a drain hands frames to transports, which may only submit tasks, not add to this.
    for (int i = 0; i < drainsDeferred.size(); i++) {
      Destination d = drainsDeferred.get(i);
      d.drainDeferred = false;
      drain(d);
    }
    drainsDeferred.clear();
  }

  /** Sends a control message of this node's own accord (a TRANSITION_END). */
  private void sendControl(Destination d, Message m, int priority) {
    if (!d.closed) {
      offer(d, new QueueKey(Lane.UNIQUE, new Object()), priority, new Outbound.Control(m));
      drain(d);
    }
  }

  /**
   * Queues an answer to what the peer sent, counted in {@link Destination#answersQueued}. Answers
   * never coalesce, so these bounds are what keep a peer that asks and does not read from growing
   * its link's queue:
   *
   * <ul>
   *   <li>past {@link Limits#queuedAnswers}, the link is watched: a peer whose link takes no frame
   *       for {@link #UNREAD_ANSWERS_WATCH} while it stays past the bound reads nothing, and is
   *       refused; one that reads, however slowly (a paced reader, a slow link, answers larger than
   *       the requests), is not;
   *   <li>past {@value #UNREAD_ANSWERS_FACTOR} times that, the peer is refused at once, reading or
   *       not.
   * </ul>
   *
   * <p>A refusal runs in a task of its own: an answer may be queued from deep inside another link's
   * ending.
   */
  private void answer(Destination d, int priority, Outbound.Answer a) {
    if (d.closed || !offer(d, new QueueKey(Lane.UNIQUE, new Object()), priority, a)) {
      return;
    }
    long queued = ++d.answersQueued;
    if (queued > limits.queuedAnswers()) {
      if (queued == (long) UNREAD_ANSWERS_FACTOR * limits.queuedAnswers() + 1) {
        serial.execute(() -> {
          if (d.answersQueued > (long) UNREAD_ANSWERS_FACTOR * limits.queuedAnswers()) {
            refuseUnread(d);
          }
        });
      } else if (d.unreadAnswersCheck == null) {
        watchUnreadAnswers(d);
      }
    }
    drain(d);
  }

  /** Checks {@code d} again {@link #UNREAD_ANSWERS_WATCH} from now (see {@link #answer}). */
  private void watchUnreadAnswers(Destination d) {
    d.framesSentWhenWatched = d.framesSent;
    try {
      d.unreadAnswersCheck =
          scheduler.schedule(
              () -> serial.execute(() -> {
                d.unreadAnswersCheck = null;
                if (d.closed || d.answersQueued <= limits.queuedAnswers()) {
                  return;
                }
                if (d.framesSent == d.framesSentWhenWatched) {
                  refuseUnread(d);
                } else {
                  watchUnreadAnswers(d); // it reads: still past the bound, so watched on
                }
              }),
              UNREAD_ANSWERS_WATCH.toNanos(),
              TimeUnit.NANOSECONDS);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // the node's scheduler is shutting down, and the link with it
    }
  }

  private void refuseUnread(Destination d) {
    if (!d.closed) {
      protocolError(d, ErrorCode.LIMIT_EXCEEDED, "more than " + limits.queuedAnswers() + " answers unread");
    }
  }

  private void answer(Destination d, int priority, Message m) {
    answer(d, priority, new Outbound.Answer(m, null));
  }

  /**
   * Sends an ERROR. In reply to a request ({@code inReplyTo} not 0) it is an {@linkplain #answer
   * answer}. Without one it refuses something the peer sent unasked (a state, a transition, an
   * owner's removal): informational, so it replaces a waiting ERROR of its code, and a peer that
   * floods refused messages and reads nothing costs one entry per code.
   */
  private void sendError(Destination d, long inReplyTo, ErrorCode code, String message) {
    Message.Error e = new Message.Error(inReplyTo, code.wire(), message);
    if (inReplyTo != 0) {
      answer(d, 0, e);
    } else if (!d.closed) {
      offer(d, new QueueKey(Lane.CONTROL, code), 0, new Outbound.Control(e));
      drain(d);
    }
  }

  /**
   * Refuses {@code d}'s peer: one ERROR frame, its last, then the link closes. Nothing more is
   * read from it, so its requests and routes end as at a detach ({@link #endRequestsAndRoutes}),
   * and what was queued for it is dropped (its peer catches up on a new link). Its transport may
   * not have asked for frames yet (right after attach it may at any moment: a peer's first frames
   * can come first), or may have stopped asking (a peer that reads nothing): a link that has not
   * taken the ERROR within {@link #CLOSE_GRACE} is closed without it.
   */
  private void protocolError(Destination d, ErrorCode code, String message) {
    log.warn("node {}: protocol error from {}: {}", nodeId, d.peer, message);
    if (d.closed || d.closeWhenFlushed) {
      return; // ending already, with its last frame queued
    }
    if (!d.passedOver) {
      endRequestsAndRoutes(d, "link to " + d.peer + " refused before the answer");
    }
    // Straight into the queue, emptied above: offers are discarded from now on.
    d.queue.offer(new QueueKey(Lane.UNIQUE, new Object()), 0,
        new Outbound.Control(new Message.Error(0, code.wire(), message)), Engine::mergeOutbound);
    d.closeWhenFlushed = true;
    if (closeAfterGrace(d, () -> closeUnlessCompleted(d))) {
      drain(d);
    }
  }

  // ------------------------------------------------------------------ receive

  /**
   * Frames a link's burst holds before they are handled without waiting for its marker: 256. It
   * bounds what a burst holds, and how long its first frame waits for a marker that is late.
   */
  static final int MAX_BURST = 256;

  /**
   * A frame or marker from {@code d}'s link (see {@link Link#receive}). Once the link marked the
   * end of a burst, its frames are held until the next marker and handled together by {@link
   * #receiveBurst}; before that, each is handled at once.
   */
  private void receiveFrame(Destination d, byte[] frame) {
    if (frame.length == 0) { // Link.END_OF_BURST
      d.marksBursts = true;
      receiveBurst(d);
    } else if (d.marksBursts) {
      d.burst.add(frame);
      if (d.burst.size() >= MAX_BURST) {
        receiveBurst(d);
      }
    } else {
      d.lastReceivedNanos = scheduler.now(TimeUnit.NANOSECONDS);
      receive(d, frame);
    }
  }

  /**
   * Handles the frames {@code d}'s burst holds, in order, once the objects its SYNCs name were
   * looked up together ({@link ObjectTable#prefetch}): the cache misses of a burst's lookups then
   * overlap, where they otherwise stall one state at a time. Each frame is handled exactly as it
   * would have been on arrival; a frame whose handling throws is reported as a failed task is, and
   * the next is handled.
   */
  private void receiveBurst(Destination d) {
    List<byte[]> frames = d.burst;
    int n = frames.size();
    if (n == 0) {
      return;
    }
    d.lastReceivedNanos = scheduler.now(TimeUnit.NANOSECONDS); // one clock read a burst
    try {
      for (int i = 0; i < n && d.takesFrames(); i++) {
        if (i % PREFETCH_GROUP == 0 && n - i > 1) {
          prefetchStates(frames, i, Math.min(n, i + PREFETCH_GROUP));
        }
        try {
          receive(d, frames.get(i));
        } catch (RuntimeException e) {
          taskFailed(e);
        }
      }
    } finally {
      frames.clear();
    }
  }

  /**
   * Frames whose objects are looked up together, just before they are handled: 32. Enough reads
   * in flight at once; and what they bring into the caches is still there when its frame's turn
   * comes, where the lookups of a whole burst are evicted by the handling of its first frames.
   */
  private static final int PREFETCH_GROUP = 32;

  private void prefetchStates(List<byte[]> frames, int from, int to) {
    int[] keyHashCodes = new int[to - from];
    int n = 0;
    for (int i = from; i < to; i++) {
      long h = SyncKeyHashes.of(frames.get(i));
      if (h != SyncKeyHashes.NONE) {
        keyHashCodes[n++] = ObjectKey.hashOf(SyncKeyHashes.typeHash(h), SyncKeyHashes.keyHash(h));
      }
    }
    if (n > 1) {
      objects.prefetch(keyHashCodes, n);
    }
  }

  private void taskFailed(Throwable t) {
    tasksFailed.incrementAndGet();
    log.error("engine task failed on node {}", nodeId, t);
  }

  private void receive(Destination d, byte[] frame) {
    framesReceived.incrementAndGet();
    d.framesReceived++;
    d.bytesReceived += frame.length;
    Message m;
    Object bound = null;
    byte[] stateFrame = null;
    try {
      if (frame.length > 0 && frame[0] == MessageType.SYNC.code()) {
        FrameCodec.BoundSync b =
            codec.decodeSync(frame, (type, key, owner) -> attributeReader(d, type, key, owner));
        m = b.sync();
        bound = b.value();
        stateFrame = frame;
      } else if (frame.length > 0 && frame[0] == MessageType.RESPONSE.code()) {
        FrameCodec.BoundResponse b =
            codec.decodeResponse(frame, id -> id > 0 && id < d.nextRequestId,
                (type, key, owner) -> attributeReader(d, type, key, owner));
        m = b.response();
        bound = b.value();
        stateFrame = b.syncFrame();
      } else {
        m = codec.decode(frame);
      }
    } catch (ProtocolException e) {
      log.debug("node {}: undecodable frame from {}", nodeId, d.peer, e);
      protocolError(d, ErrorCode.BAD_ENCODING, e.getMessage());
      return;
    }
    if (d.ready && frame.length > limits.maxObjectSize() && refusedAsOversize(d, m)) {
      return;
    }
    try {
      dispatch(d, m, stateFrame, bound);
    } catch (IllegalArgumentException e) {
      // A value the codec accepts but the model refuses, such as a blank owner id.
      log.debug("node {}: invalid {} from {}", nodeId, m.type(), d.peer, e);
      protocolError(d, ErrorCode.BAD_ENCODING, "invalid " + m.type() + " message");
    }
  }

  /**
   * The reader that binds a state's attributes (a SYNC's, a RESPONSE's) as its frame is read, or
   * null to leave them as a tree: an event type, a link not yet greeted, or a sender the policy
   * does not listen to about that object (its state is refused before its value is decoded, as
   * {@link Policy} promises).
   */
  private @Nullable ObjectReader attributeReader(Destination d, String type, String key, String owner) {
    ObjectReader reader = attributeReaders.get(type);
    if (reader == null || !d.ready) {
      return null;
    }
    TypeBinding<?> b = types.get(type);
    return listenAllowed(d.peer, Operation.SYNC, b, new ObjectKey(type, key), ownerId(owner)) ? reader : null;
  }

  /**
   * Refuses a body over the maximum object size that carries an object (SYNC, PROPOSE, CREATE,
   * TRANSITION) with ERROR {@code LIMIT_EXCEEDED}, answering the request if it is one; the link
   * stays open. Other messages are not objects: the frame limit alone bounds them.
   */
  private boolean refusedAsOversize(Destination d, Message m) {
    long inReplyTo;
    if (m instanceof Message.Propose p) {
      inReplyTo = p.requestId();
    } else if (m instanceof Message.Create c) {
      inReplyTo = c.requestId();
    } else if (m instanceof Message.Sync || m instanceof Message.Transition) {
      inReplyTo = 0;
    } else {
      return false;
    }
    log.warn("node {}: refused an oversize {} from {}", nodeId, m.type(), d.peer);
    sendError(d, inReplyTo, ErrorCode.LIMIT_EXCEEDED, "object larger than " + limits.maxObjectSize() + " bytes");
    return true;
  }

  /**
   * @param stateFrame the SYNC frame of the state the message carries, if it has one: a SYNC's own
   *     body, the SYNC a RESPONSE embeds (see {@link FrameCodec#decodeResponse})
   * @param bound the value that state's attributes were bound to as it was decoded, if they were
   */
  private void dispatch(Destination d, Message m, byte @Nullable [] stateFrame, @Nullable Object bound) {
    if (!d.ready && !(m instanceof Message.Hello)) {
      if (m instanceof Message.Error e) {
        // The peer refused the link before its HELLO (its transport keeps another connection to
        // this node, or does not know it): nothing to answer, an ERROR is never answered.
        log.warn("node {}: {} refused the link: {} {}", nodeId, d.peer, brief(e.code()), brief(e.message()));
        d.link.dispose();
        return;
      }
      protocolError(d, ErrorCode.INVALID_OPERATION, "the first message must be HELLO");
      return;
    }
    if (m instanceof Message.Hello h) {
      onHello(d, h);
    } else if (m instanceof Message.Routes r) {
      onRoutes(d, r);
    } else if (m instanceof Message.Sync s) {
      onSync(d, s, Objects.requireNonNull(stateFrame, "a SYNC's frame"), bound);
    } else if (m instanceof Message.Withdraw w) {
      onWithdraw(d, w);
    } else if (m instanceof Message.Propose p) {
      onPropose(d, p);
    } else if (m instanceof Message.Create c) {
      onCreate(d, c);
    } else if (m instanceof Message.Transition t) {
      onTransition(d, t);
    } else if (m instanceof Message.TransitionEnd e) {
      onTransitionEnd(d, e);
    } else if (m instanceof Message.Response r) {
      onResponse(d, r, stateFrame, bound);
    } else if (m instanceof Message.Error e) {
      onErrorMessage(d, e);
    } else if (m instanceof Message.NoResponse n) {
      List<Obligation> obs = d.outstanding.remove(n.inReplyTo());
      if (obs != null) {
        obs.forEach(o -> fail(o, ErrorCode.NO_RESPONSE, "a relay could not reach the owner"));
      }
    } else if (m instanceof Message.OwnerRemoved o) {
      onOwnerRemoved(d, o);
    } else if (m instanceof Message.CatchUp c) {
      onCatchUp(d, c);
    } else if (m instanceof Message.Watermark w) {
      onWatermark(d, w);
    } else if (m instanceof Message.Ping p) {
      // The newest PING's answer replaces a waiting one: a PONG to a PING says that every frame
      // sent before that PING was read, which is all a prober learns from it (a PONG to a later
      // PING acknowledges an earlier probe too, see the PONG below).
      offer(d, PONG, 0, new Outbound.Control(new Message.Pong(p.nonce())));
      drain(d);
    } else if (m instanceof Message.Pong p) {
      // This node's nonces fall PING after PING: this PONG answers the probe or a later PING, and
      // a peer may answer only the newest of the PINGs waiting for it.
      if (d.probed != null && p.nonce() <= d.probeNonce) {
        d.acknowledged = d.probed;
        d.probed = null;
        scheduleWatermarkFlush(d);
      }
    } else if (m instanceof Message.GoAway g) {
      log.info("node {}: {} is going away: {} {}", nodeId, d.peer, g.code(), g.message());
      peerLeaving(d);
    }
  }

  /**
   * The peer said GOAWAY, its last frame: nothing more is sent to it, and the link waits for the
   * peer to end it, as it does right after that frame (its end of stream, or its WebSocket close
   * frame, which the transport answers before it closes the connection). Cutting the link at once
   * would deny the peer that answer. What the peer sends after its GOAWAY is dropped ({@link
   * Destination#takesFrames}). No answer can come over the link any more, so its requests
   * and routes end now, as at a detach ({@link #endRequestsAndRoutes}): a request queued for it
   * fails over at once, not when the link closes. A peer that does not end the link within {@link
   * #CLOSE_GRACE} has it closed.
   */
  private void peerLeaving(Destination d) {
    if (d.peerLeaving || d.closed) {
      return;
    }
    d.peerLeaving = true;
    if (!d.passedOver) {
      endRequestsAndRoutes(d, d.peer + " went away before the answer");
    }
    closeAfterGrace(d, d.link::dispose);
  }

  private void onHello(Destination d, Message.Hello h) {
    if (d.ready) {
      protocolError(d, ErrorCode.INVALID_OPERATION, "HELLO received twice");
      return;
    }
    if (h.protocolVersion() != FrameCodec.PROTOCOL_VERSION) {
      protocolError(
          d, ErrorCode.INVALID_OPERATION, "unsupported protocol version " + h.protocolVersion());
      return;
    }
    d.ready = true;
    d.helloNode = h.nodeId();
    Map<OwnerId, Integer> r = new HashMap<>();
    for (Message.OwnerAd ad : h.owners()) {
      r.put(OwnerId.of(ad.owner()), 0);
    }
    acceptRoutes(d, r);
    routesChanged();
  }

  private void onRoutes(Destination d, Message.Routes m) {
    Map<OwnerId, Integer> r = new HashMap<>();
    m.hops().forEach((o, h) -> {
      if (h >= 0) {
        r.put(OwnerId.of(o), Math.min(h, RouteTable.MAX_HOPS));
      }
    });
    acceptRoutes(d, r);
    routesChanged();
  }

  /**
   * Takes what {@code d} announces: its routes are the announced ones the policy lets it speak for
   * ({@link Policy#shouldAcceptRoute}). Returns whether its routes changed.
   */
  private boolean acceptRoutes(Destination d, Map<OwnerId, Integer> announced) {
    Map<OwnerId, Integer> accepted = announced;
    for (OwnerId o : announced.keySet()) {
      if (!routeAllowed(d.peer, o)) {
        if (accepted == announced) {
          accepted = new HashMap<>(announced);
        }
        accepted.remove(o);
        log.debug("node {}: {} may not speak for {}: its route is ignored", nodeId, d.peer, o);
      }
    }
    boolean changed = !accepted.equals(d.routes);
    d.announced = announced;
    d.routes = accepted;
    return changed;
  }

  /** Whether every route policy lets {@code neighbour} speak for {@code owner}. */
  private boolean routeAllowed(PeerId neighbour, OwnerId owner) {
    for (Policy p : routePolicies) {
      if (!p.shouldAcceptRoute(neighbour, owner)) {
        return false;
      }
    }
    return true;
  }

  /**
   * Whether the policy lets {@code d} speak for {@code owner}: as decided when {@code d} announced
   * it, or asked now for an owner it does not announce. Says nothing of the path (see {@link
   * #speaksFor}).
   */
  private boolean routeAllowedFrom(Destination d, OwnerId owner) {
    return d.routes.containsKey(owner)
        || !d.announced.containsKey(owner) && routeAllowed(d.peer, owner);
  }

  /**
   * Whether {@code d} speaks for {@code owner}: the policy lets it, and it is on the owner's path
   * ({@link RouteTable#onPath}). A local owner is spoken for by this node alone.
   */
  private boolean speaksFor(Destination d, OwnerId owner) {
    return !localOwners.containsKey(owner) && routeAllowedFrom(d, owner) && routes.onPath(d, owner);
  }

  private void onSync(Destination d, Message.Sync s, byte[] frame, @Nullable Object bound) {
    TypeBinding<?> b = types.get(s.objectType());
    if (b == null) {
      sendError(d, 0, ErrorCode.UNKNOWN_TYPE, "unknown type " + brief(s.objectType()));
      return;
    }
    if (b.type().isUnique()) {
      onEvent(d, b, s, frame);
      return;
    }
    ErrorCode refused = applyState(d, b, s, frame, bound, List.of());
    if (refused != null) {
      refuse(d, refused, s);
    }
  }

  /**
   * A peer's string as quoted in an error message: at most {@value #QUOTED_CHARS} characters, control
   * characters replaced by '?', so that an answer never carries a large part of the offending
   * message and stays one line.
   */
  private static String brief(String peerText) {
    return oneLine(peerText, QUOTED_CHARS);
  }

  /** {@code text} cut at {@code max} characters, control characters replaced by '?'. */
  private static String oneLine(String text, int max) {
    String s = text.length() <= max ? text : text.substring(0, max) + "...";
    return s.chars().anyMatch(Character::isISOControl) ? s.replaceAll("\\p{Cntrl}", "?") : s;
  }

  /** Answers an unsolicited message with a typed error (never in reply to an error). */
  private void refuse(Destination d, ErrorCode code, Message.Sync s) {
    String message =
        code + " for " + brief(s.objectType()) + "/" + brief(s.key()) + " of owner " + brief(s.owner());
    sendError(d, 0, code, message);
  }

  /**
   * Applies a received state if it is newer than the one held, and floods it; returns the refusal
   * code, or null if it was applied or was not newer.
   *
   * @param answering the requests a RESPONSE carrying this state answers: each learns the state
   *     before it is flooded (see {@link Obligation#willAnswer})
   */
  private @Nullable ErrorCode applyState(
      Destination from, TypeBinding<?> b, Message.Sync s, byte @Nullable [] frame,
      @Nullable Object bound, List<Obligation> answering) {
    ObjectKey key = new ObjectKey(b.type().name(), s.key());
    OwnerId owner = ownerId(s.owner());
    Version v = new Version(s.epoch(), s.serial());
    if (localOwners.containsKey(owner)) {
      return ErrorCode.BAD_OWNER;
    }
    Long removedEpoch = removedOwners.get(owner);
    if (removedEpoch != null && removedEpoch >= s.epoch()) {
      return null;
    }
    // Sent in the peer's catch-up, refused (on route or by policy) or not: the peer holds it, so
    // the end of a full resync must not take it for gone.
    if (!from.caughtUp.contains(owner)) {
      seenInCatchUp(from, owner, key);
    }
    // A neighbour that announces the owner was let speak for it then, and is on its path: one
    // table lookup for the common case, on every state received.
    boolean announces = from.routes.containsKey(owner);
    if (!announces && !routeAllowedFrom(from, owner)) {
      // Kept, as a state refused on route is (bounded per link), for a policy refresh that allows
      // the sender; but it holds no watermark down, so a peer cannot stall an owner it may not speak for.
      if (answering.isEmpty()) {
        from.keepRefused(key, new Destination.RefusedState(b, s, frame, bound));
      }
      return ErrorCode.BAD_OWNER;
    }
    if (deletedWhileThePeerWasAway(from, owner, v) && objects.get(key) == null && !dropped.containsKey(key)) {
      // Not refused either (no refusal may hold the watermark down for it): withdrawn, so that
      // the peer drops it too, whatever this node's watermark covers.
      answer(from, 1, new Message.Withdraw(s.objectType(), s.key(), s.owner(), s.epoch(), s.serial()));
      return null;
    }
    if (!announces && !routes.onPath(from, owner)) {
      // Possibly a route change that overtook the state: no watermark may cover it here until it
      // arrives again (refusedStates).
      if (refusedOnRoute(key, owner, v) && answering.isEmpty()) {
        from.keepRefused(key, new Destination.RefusedState(b, s, frame, bound)); // see routesChanged
      }
      return ErrorCode.BAD_OWNER;
    }
    // A bound value was bound only because the policy listens to this sender about this object.
    if (bound == null && !listenAllowed(from.peer, Operation.SYNC, b, key, owner)) {
      return ErrorCode.UNAUTHORIZED;
    }
    StoredState cur = objects.get(key);
    if (cur != null) {
      key = cur.key(); // one key instance per object: the received one is garbage at once
    }
    // Not when it withdrew this key from the peer and the state is not newer: that state
    // crossed the withdrawal, and the peer drops it on receiving it.
    boolean fromHolds = from.withdrawn.isEmpty() || !from.withdrawn.contains(key)
        || cur != null && v.isNewerThan(cur.version());
    // The common case, a newer state of the object's owner: applied below unless it is refused,
    // and then the state's holder stands for the holding (StoredState.holder), not a table entry.
    boolean heldBySource = fromHolds && cur != null && cur.owner().equals(owner) && v.isNewerThan(cur.version());
    if (fromHolds && !heldBySource) {
      from.noteHeld(key, v);
    }
    if (cur == null) {
      Dropped gone = dropped.get(key);
      if (gone != null && gone.state().owner().equals(owner) && gone.upTo().isNewerThan(v)) {
        return null;
      }
    } else {
      if (!cur.owner().equals(owner)) {
        if (!cur.deleted()) {
          return ErrorCode.BAD_OWNER;
        }
      } else if (!v.isNewerThan(cur.version())) {
        if (cur.version().isNewerThan(v)) {
          // The sender is behind: bring it up to date.
          offer(from, new QueueKey(Lane.STATE, key), b.priority(), new Outbound.State(key));
          drain(from);
        }
        return null;
      }
    }
    Object value = bound;
    // Null when the attributes were bound straight from the frame, which then stands for them.
    ObjectNode attrs = null;
    if (s.deleted()) {
      attrs = emptyObject();
    } else if (value == null) {
      if (!(s.attributes() instanceof ObjectNode o)) {
        return refusedHeld(from, key, v, heldBySource, ErrorCode.BAD_ENCODING);
      }
      attrs = o;
      try {
        value = json.treeToValue(attrs, b.type().javaType());
      } catch (JacksonException | IllegalArgumentException e) {
        return refusedHeld(from, key, v, heldBySource, ErrorCode.BAD_ENCODING);
      }
    }
    Snapshot<?> snap = new Snapshot<>(key, value, owner, v, s.deleted(), s.committedAt());
    if (!constructedAllowed(from.peer, Operation.SYNC, b, snap)) {
      return refusedHeld(from, key, v, heldBySource, ErrorCode.UNAUTHORIZED);
    }
    StoredState st = new StoredState(b, snap, frame != null ? null : attrs, frame);
    st.arrival = ++arrivals;
    if (fromHolds) {
      makeHolder(st, from, v);
    }
    putState(st, null);
    if (!dropped.isEmpty()) {
      dropped.remove(key);
    }
    if (!refusedStates.isEmpty()) {
      receivedAfterRefusal(key, owner, v);
    }
    if (store != null) {
      persist(new WriteBatch.PutObject(attrs != null ? record(st, attrs) : record(st)));
    }
    notifyWatchers(snap);
    answering.forEach(o -> o.willAnswer(st));
    markDirty(st, from);
    if (!RouteTable.ownedBy(from, owner) && !sendAllowed(from.peer, st)) {
      // The sender holds a state this node's policy hides from it (it got it elsewhere, or before
      // its role changed): the flood skips the link a state came from, so withdraw it explicitly.
      offer(from, new QueueKey(Lane.STATE, key), b.priority(), new Outbound.State(key));
      drain(from);
    }
    return null;
  }

  /**
   * Records a key the peer's catch-up sent. The keys are the peer's to choose, so the record of a
   * link holds at most as many as this node holds objects, plus {@link
   * Destination#CATCH_UP_RECORD_SLACK}: one more gives the record up (see {@link
   * Destination#catchUpRecordGivenUp}), since keeping an object that was deleted is the safe
   * failure, and dropping one the peer holds is not.
   */
  private void seenInCatchUp(Destination from, OwnerId owner, ObjectKey key) {
    if (from.catchUpRecordGivenUp) {
      return;
    }
    if (from.catchUpSeen.computeIfAbsent(owner, o -> new java.util.HashSet<>()).add(key)
        && ++from.catchUpSeenKeys > (long) objects.size() + Destination.CATCH_UP_RECORD_SLACK) {
      log.info("node {}: {}'s catch-up sent more keys than this node holds objects, plus {}; its full "
          + "resyncs on this link drop nothing", nodeId, from.peer, Destination.CATCH_UP_RECORD_SLACK);
      from.catchUpRecordGivenUp = true;
      from.catchUpSeen.clear();
      from.catchUpSeenKeys = 0;
    }
  }

  private void onEvent(Destination d, TypeBinding<?> b, Message.Sync s, byte[] frame) {
    ObjectKey key = new ObjectKey(b.type().name(), s.key());
    OwnerId owner = ownerId(s.owner());
    if (recentEvents.containsKey(key)) {
      return;
    }
    if (!speaksFor(d, owner)) {
      refuse(d, ErrorCode.BAD_OWNER, s);
      return;
    }
    if (!listenAllowed(d.peer, Operation.SYNC, b, key, owner) || !(s.attributes() instanceof ObjectNode attrs)) {
      refuse(d, ErrorCode.UNAUTHORIZED, s);
      return;
    }
    Object value;
    try {
      value = json.treeToValue(attrs, b.type().javaType());
    } catch (JacksonException | IllegalArgumentException e) {
      refuse(d, ErrorCode.BAD_ENCODING, s);
      return;
    }
    Snapshot<?> snap =
        new Snapshot<>(key, value, owner, new Version(s.epoch(), s.serial()), false, s.committedAt());
    if (!constructedAllowed(d.peer, Operation.SYNC, b, snap)) {
      refuse(d, ErrorCode.UNAUTHORIZED, s);
      return;
    }
    recentEvents.put(key, Boolean.TRUE);
    notifyWatchers(snap);
    floodEvent(new StoredState(b, snap, attrs, frame), d);
  }

  /**
   * Queues event {@code st} for every link that may have it. Events never coalesce, so a link that
   * takes frames slower than events come would queue them without bound: it keeps the newest
   * {@link Limits#queuedEvents} and drops the oldest unsent one to make room, counting it ({@link
   * PeerStats#eventsDropped}). The newest, as for states, since a slow peer would rather have what
   * happens now than what happened long ago.
   */
  private void floodEvent(StoredState st, @Nullable Destination except) {
    for (Destination d : destinations) {
      if (d != except && !RouteTable.ownedBy(d, st.owner()) && sendAllowed(d.peer, st)) {
        if (d.goingAway || d.passedOver) {
          continue; // offers are discarded
        }
        QueueKey key = new QueueKey(Lane.UNIQUE, st.key());
        if (d.queuedEvents.size() >= limits.queuedEvents() && !d.queuedEvents.contains(key)) {
          java.util.Iterator<QueueKey> oldest = d.queuedEvents.iterator();
          d.queue.remove(oldest.next());
          oldest.remove();
          d.eventsDropped++;
          eventsDropped.incrementAndGet();
        }
        d.queuedEvents.add(key);
        offer(d, key, st.binding.priority(), new Outbound.Event(key, st.frame(codec, json, statesEncoded)));
        drain(d);
      }
    }
  }

  /**
   * A withdrawal covers the owner's states up to its version: a newer state held here stays (the
   * withdrawal is stale), and an older one arriving later is ignored.
   */
  private void onWithdraw(Destination d, Message.Withdraw w) {
    ObjectKey key = new ObjectKey(w.objectType(), w.key());
    OwnerId owner = ownerId(w.owner());
    Version upTo = new Version(w.epoch(), w.serial());
    StoredState cur = objects.get(key);
    forgetHeld(d, key, cur != null ? cur : droppedState(key));
    Destination.RefusedState kept = d.refusedOnRoute.get(key);
    if (kept != null && kept.sync().owner().equals(owner.value())
        && !new Version(kept.sync().epoch(), kept.sync().serial()).isNewerThan(upTo)) {
      d.refusedOnRoute.remove(key); // withdrawn by its sender: never to be applied from there
    }
    if (cur == null || !cur.owner().equals(owner) || cur.version().isNewerThan(upTo)
        || !speaksFor(d, owner)) {
      return;
    }
    drop(cur, d, upTo, false);
  }

  private void onPropose(Destination d, Message.Propose p) {
    inboundRequest(
        d,
        p.requestId(),
        p.objectType(),
        p.attributes(),
        (b, attrs, obligations) ->
            new Outbound.Request(
                p.kind(),
                false,
                b,
                new ObjectKey(p.objectType(), p.key()),
                OwnerId.of(p.owner()),
                p.partial(),
                attrs,
                p.transitionId(),
                p.hops() + 1,
                obligations));
  }

  private void onCreate(Destination d, Message.Create c) {
    inboundRequest(
        d,
        c.requestId(),
        c.objectType(),
        c.attributes(),
        (b, attrs, obligations) ->
            new Outbound.Request(
                Message.ProposalKind.UPDATE,
                true,
                b,
                null,
                OwnerId.of(c.owner()),
                false,
                attrs,
                null,
                c.hops() + 1,
                obligations));
  }

  /** Builds the request for a received PROPOSE or CREATE once its type and attributes check out. */
  @FunctionalInterface
  private interface RequestFactory {
    Outbound.Request build(TypeBinding<?> binding, ObjectNode attributes, List<Obligation> obligations);
  }

  private void inboundRequest(
      Destination d, long requestId, String type, JsonNode attributes, RequestFactory factory) {
    if (d.requestsPending >= limits.pendingRequestsPerPeer()) {
      sendError(d, requestId, ErrorCode.LIMIT_EXCEEDED,
          "more than " + limits.pendingRequestsPerPeer() + " requests pending");
      return;
    }
    RelayObligation ob = relayObligation(d, requestId);
    TypeBinding<?> b = types.get(type);
    if (b == null) {
      ob.rejected(ErrorCode.UNKNOWN_TYPE, "unknown type " + brief(type));
      return;
    }
    if (!(attributes instanceof ObjectNode attrs)) {
      ob.rejected(ErrorCode.BAD_ENCODING, "attributes must be a map");
      return;
    }
    routeRequest(factory.build(b, attrs, new ArrayList<>(List.of(ob))), d);
  }

  /** A request that arrived from {@code from}: decide it here if we own it, else pass it on. */
  private void routeRequest(Outbound.Request r, Destination from) {
    Operation op = operationOf(r);
    ObjectKey checkKey = r.key() != null ? r.key() : new ObjectKey(r.binding().type().name(), "");
    if (!listenAllowed(from.peer, op, r.binding(), checkKey, r.owner())) {
      r.obligations().forEach(o -> o.rejected(ErrorCode.UNAUTHORIZED, op + " refused by policy"));
      return;
    }
    if (localOwners.containsKey(r.owner())) {
      offerProposal(r, from);
    } else {
      sendRequest(r, from);
    }
  }

  private static Operation operationOf(Outbound.Request r) {
    if (r.create()) {
      return Operation.CREATE;
    }
    return r.kind() == Message.ProposalKind.DELETE ? Operation.DELETE : Operation.PROPOSE;
  }

  /** The queue id of a request made in a transition. */
  private record KeyInTransition(ObjectKey key, String transitionId) {}

  /** Queues a request toward its owner, or ends its obligations if there is no way there. */
  private void sendRequest(Outbound.Request r, @Nullable Destination from) {
    if (r.hops() > RouteTable.MAX_HOPS || r.hops() < 0) { // negative: a peer's count overflowed
      r.obligations().forEach(o -> fail(o, ErrorCode.NO_RESPONSE, "hop limit reached"));
      return;
    }
    Destination route = routes.routeTo(r.owner(), from);
    if (route == null) {
      r.obligations()
          .forEach(o -> fail(o, ErrorCode.NOT_CONNECTED, "no route to owner " + r.owner()));
      return;
    }
    // Requests of an object coalesce only within one transition (or none): the owner confirms or
    // breaks a transition by the id its request carries.
    QueueKey qk =
        r.create() || r.key() == null
            ? new QueueKey(Lane.UNIQUE, new Object())
            : new QueueKey(Lane.PROPOSE,
                r.transitionId() == null ? r.key() : new KeyInTransition(r.key(), r.transitionId()));
    offer(route, qk, r.binding().priority(), r);
    drain(route);
  }

  /**
   * @param stateFrame the SYNC the RESPONSE embeds, when it was decoded from it: the state's
   *     lossless source, kept as a received SYNC's frame is
   * @param bound the value its attributes were bound to, if they were
   */
  private void onResponse(
      Destination d, Message.Response r, byte @Nullable [] stateFrame, @Nullable Object bound) {
    List<Obligation> obs = d.outstanding.remove(r.inReplyTo());
    if (obs == null) {
      // A late answer to a request given up on (timed out, see sweepDeadlines): the owner counts
      // its state as delivered and sends no SYNC of that version, so it is taken as one. An answer
      // to no request this link carried is ignored.
      TypeBinding<?> b = types.get(r.state().objectType());
      if (r.inReplyTo() > 0 && r.inReplyTo() < d.nextRequestId && b != null && !b.type().isUnique()) {
        ErrorCode refused = applyState(d, b, r.state(), stateFrame, bound, List.of());
        if (refused != null) {
          refuse(d, refused, r.state());
        }
      }
      return;
    }
    TypeBinding<?> b = types.get(r.state().objectType());
    if (b == null) {
      obs.forEach(o -> o.rejected(ErrorCode.UNKNOWN_TYPE, "unknown type " + brief(r.state().objectType())));
      return;
    }
    Message.Sync s = r.state();
    ObjectKey key = new ObjectKey(b.type().name(), s.key());
    Version version = new Version(s.epoch(), s.serial());
    if (applyState(d, b, s, stateFrame, bound, obs) != null) {
      log.debug("node {}: committed state in a response was not applied locally", nodeId);
    }
    StoredState held = objects.get(key);
    if (held != null && held.version().equals(version) && held.owner().value().equals(s.owner())) {
      obs.forEach(o -> o.committed(held)); // the state just applied: no second decode
      return;
    }
    Object value = bound;
    if (value == null && !s.deleted() && s.attributes() instanceof ObjectNode attrs) {
      try {
        value = json.treeToValue(attrs, b.type().javaType());
      } catch (JacksonException | IllegalArgumentException e) {
        obs.forEach(o -> o.rejected(ErrorCode.BAD_ENCODING, "committed state does not decode"));
        return;
      }
    }
    Snapshot<?> snap =
        new Snapshot<>(
            key,
            value,
            OwnerId.of(s.owner()),
            version,
            s.deleted(),
            s.committedAt());
    StoredState st =
        stateFrame != null
            ? new StoredState(b, snap, null, stateFrame)
            : new StoredState(b, snap, s.attributes() instanceof ObjectNode o ? o : emptyObject(), null);
    obs.forEach(o -> o.committed(st));
  }

  private void onErrorMessage(Destination d, Message.Error e) {
    if (e.inReplyTo() == 0) {
      errorsReceived.incrementAndGet();
      log.debug("node {}: {} refused a message: {} {}", nodeId, d.peer, e.code(), e.message());
      return;
    }
    List<Obligation> obs = d.outstanding.remove(e.inReplyTo());
    if (obs != null) {
      obs.forEach(o -> o.rejected(ErrorCode.ofWire(e.code()), e.message()));
    }
  }

  private void onOwnerRemoved(Destination d, Message.OwnerRemoved m) {
    OwnerId owner = OwnerId.of(m.owner());
    if (localOwners.containsKey(owner)) {
      sendError(d, 0, ErrorCode.BAD_OWNER, owner + " is local to " + nodeId);
      return;
    }
    Long known = removedOwners.get(owner);
    if (known != null && known >= m.epoch()) {
      return;
    }
    // The policy's word, not the path: the owner is gone, and its removal reaches later neighbours
    // from any node that learnt it (attachNow), so no path leads to it any more.
    if (!routeAllowedFrom(d, owner)) {
      sendError(d, 0, ErrorCode.UNAUTHORIZED, d.peer + " may not remove owner " + brief(m.owner()));
      return;
    }
    purgeOwner(owner, m.epoch(), d);
  }

  /** Drops every object of a removed owner and tells the neighbours (except {@code from}). */
  private void purgeOwner(OwnerId owner, long epoch, @Nullable Destination from) {
    removedOwners.put(owner, epoch);
    watermarks.remove(owner);
    Map<ObjectKey, Version> refused = refusedStates.get(owner);
    if (refused != null) { // states of a later epoch stay missing
      refused.values().removeIf(r -> r.epoch() <= epoch);
      if (refused.isEmpty()) {
        refusedStates.remove(owner);
      }
    }
    purgedUpTo.computeIfPresent(owner, (o, v) -> v.epoch() <= epoch ? null : v);
    persist(new WriteBatch.RemoveOwner(owner.value(), epoch));
    for (StoredState st : List.copyOf(objects.values())) {
      if (st.owner().equals(owner) && st.version().epoch() <= epoch) {
        objects.remove(st.key());
        Snapshot<?> s = st.snapshot;
        if (!s.deleted()) {
          notifyWatchers(new Snapshot<>(s.key(), null, owner, s.version(), true, s.committedAt()));
        }
        for (Destination d : destinations) {
          d.held.remove(st.key());
          d.withdrawn.remove(st.key()); // its record of withdrawn keys holds objects held only
        }
      }
    }
    for (Destination d : destinations) {
      if (d != from) {
        offer(d, new QueueKey(Lane.CONTROL, "removed:" + owner), 1,
            new Outbound.Control(new Message.OwnerRemoved(owner.value(), epoch)));
        drain(d);
      }
    }
  }

  // ------------------------------------------------------------------ catch-up

  /** The version up to which this node holds every state of {@code owner}, or null. */
  private @Nullable Version watermarkOf(OwnerId owner) {
    LocalOwner lo = localOwners.get(owner);
    if (lo != null) {
      return new Version(lo.epoch, store == null ? lo.serial : lo.durable);
    }
    return watermarks.get(owner);
  }

  /**
   * The peer says what it holds completely: send it the states newer than that, and those that
   * arrived here since its last link had sent it everything, then a watermark per owner. Its
   * watermarks may come from a relay that may see less than it does, so they are trusted only for
   * states this node had sent it: a state below them that arrived later (this node had it hidden
   * from a relay too), or any state for a peer this node does not remember, is offered as well.
   * A peer that holds another epoch of an owner, or is behind the tombstones dropped by retention,
   * gets a full resync of that owner: every state, then a watermark that lets it drop the rest. A
   * peer whose last link closed before a policy refresh is also offered every state the policy now
   * shows it: it may lack one that was hidden from it when its watermark was given.
   */
  private void onCatchUp(Destination d, Message.CatchUp m) {
    Map<OwnerId, Version> holds = d.peerWatermarks;
    holds.clear();
    for (Message.Mark mark : m.holds()) {
      OwnerId o = OwnerId.of(mark.owner());
      holds.put(o, new Version(mark.epoch(), mark.serial()));
      LocalOwner lo = localOwners.get(o);
      if (lo != null && mark.epoch() > lo.epoch) {
        outgrowEpoch(d, o, mark.epoch());
      }
    }
    java.util.Set<OwnerId> owners = new java.util.LinkedHashSet<>(localOwners.keySet());
    owners.addAll(watermarks.keySet());
    for (StoredState st : objects.values()) {
      owners.add(st.owner());
    }
    Destination.Offered was = offeredAtDetach.remove(d.peer);
    d.offered = was;
    d.acknowledged = was;
    boolean policyRefreshed = was != null && was.policyGeneration() != policyGeneration;
    long sentUpTo = was == null ? -1 : was.arrival(); // -1: nothing known, offer every state
    d.catchUpAnswered = true;
    Map<OwnerId, Boolean> full = new HashMap<>();
    for (OwnerId o : owners) {
      Version h = holds.get(o);
      Version wm = watermarkOf(o);
      Version purged = purgedUpTo.get(o);
      full.put(o, h == null
          || (wm != null && h.epoch() != wm.epoch())
          || (purged != null && purged.epoch() == h.epoch() && h.serial() < purged.serial()));
      // Up to this node's watermark too: above it a state it lacks may just not have arrived (a
      // refusal on route holds the watermark below it). Never for the peer's own owners, which
      // cannot hold a deleted object's old state.
      if (purged != null && (h == null || purged.isNewerThan(h)) && wm != null
          && !RouteTable.ownedBy(d, o)) {
        d.behindPurge.put(o, purged.compareTo(wm) <= 0 ? purged : wm);
      }
    }
    for (StoredState st : objects.values()) {
      Version h = holds.get(st.owner());
      if (h != null && !st.deleted() && !sendAllowed(d.peer, st)
          && !RouteTable.ownedBy(d, st.owner())) {
        // The peer may hold this object from before the policy hid it (a change while the link
        // was down, or this newer state is hidden): queue a withdrawal (stateFrame withdraws it
        // because the peer named the owner). Not noted as held: if a refresh shows the state
        // before the withdrawal leaves, the state itself must leave.
        offer(d, new QueueKey(Lane.STATE, st.key()), st.binding.priority(), new Outbound.State(st.key()));
      } else if (policyRefreshed || full.get(st.owner()) || st.version().isNewerThan(h)
          || st.arrival > sentUpTo) {
        offer(d, new QueueKey(Lane.STATE, st.key()), st.binding.priority(), new Outbound.State(st.key()));
      }
    }
    for (Dropped x : dropped.values()) {
      StoredState st = x.state();
      if (holds.get(st.owner()) != null && !objects.containsKey(st.key()) && !st.deleted()
          && (x.gone() || !sendAllowed(d.peer, st)) && !RouteTable.ownedBy(d, st.owner())) {
        // Dropped here while the peer may hold it (it had states of that owner): withdraw it.
        noteHolds(d, st.key(), st);
        offer(d, new QueueKey(Lane.STATE, st.key()), st.binding.priority(), new Outbound.State(st.key()));
      }
    }
    for (OwnerId o : owners) {
      if (watermarkOf(o) != null) {
        // Lowest urgency: it leaves after every state queued before it.
        offer(d, new QueueKey(Lane.CONTROL, "wm:" + o), Integer.MAX_VALUE,
            new Outbound.Watermark(o, full.get(o)));
      }
    }
    drain(d);
  }

  private byte @Nullable [] watermarkFrame(Destination d, Outbound.Watermark w) {
    Version wm = watermarkOf(w.owner());
    if (wm == null || RouteTable.ownedBy(d, w.owner())) {
      return null;
    }
    Version sent = d.sentWatermarks.get(w.owner());
    if (!w.full() && sent != null && sent.compareTo(wm) >= 0) {
      return null;
    }
    d.sentWatermarks.put(w.owner(), wm);
    return codec.encode(new Message.Watermark(w.owner().value(), wm.epoch(), wm.serial(), w.full()));
  }

  /**
   * In steady state, tells a peer that caught up with everything queued for it how far it now is,
   * at most once per second, so that its next catch-up asks only for what it missed; and probes
   * it (a PING) to learn that what left has arrived, so that this node answers its next catch-up
   * from there (see {@link Destination#acknowledged}).
   */
  private void scheduleWatermarkFlush(Destination d) {
    if (d.watermarkFlush != null || !d.ready || d.closed
        || watermarksToSend(d).isEmpty() && !probeDue(d)) {
      return;
    }
    d.watermarkFlush =
        scheduler.schedule(
            () ->
                serial.execute(
                    () -> {
                      d.watermarkFlush = null;
                      if (d.closed) {
                        return;
                      }
                      for (OwnerId o : List.copyOf(watermarksToSend(d))) {
                        offer(d, new QueueKey(Lane.CONTROL, "wm:" + o), Integer.MAX_VALUE,
                            new Outbound.Watermark(o, false));
                      }
                      d.probeWanted = probeDue(d); // sent once the queue has drained
                      drain(d);
                    }),
            1,
            TimeUnit.SECONDS);
  }

  /** Whether more has left for the peer than it acknowledged, and no probe is in flight. */
  private static boolean probeDue(Destination d) {
    return d.offered != null && d.probed == null && !d.offered.equals(d.acknowledged);
  }

  private List<OwnerId> watermarksToSend(Destination d) {
    List<OwnerId> out = new ArrayList<>();
    java.util.Set<OwnerId> owners = new java.util.LinkedHashSet<>(localOwners.keySet());
    owners.addAll(watermarks.keySet());
    for (OwnerId o : owners) {
      Version wm = watermarkOf(o);
      Version sent = d.sentWatermarks.get(o);
      if (wm != null && (sent == null || wm.isNewerThan(sent)) && !RouteTable.ownedBy(d, o)) {
        out.add(o);
      }
    }
    return out;
  }

  /**
   * How far ahead of this node's clock a peer's epoch of a local owner may lie and still be taken
   * for an earlier run's, whose clock was ahead: one day. A later one is a claim no clock step
   * explains, and taking it would let one CATCH_UP push the owner's epoch anywhere.
   */
  static final long EPOCH_LEAD_TAKEN = Duration.ofDays(1).toMillis();

  /**
   * Peer {@code d} holds states of local owner {@code o} from a later epoch than this node's: an
   * earlier run with that owner ran while the clock was ahead of now (an in-memory node's epoch is
   * its start time), or had a store this node lost. Every state of this run would be older by
   * version and ignored wherever that epoch is known. Without a store, the owner moves to an epoch
   * above the peer's (at least now) and every object of it is committed again there with its
   * value, so the catch-up that follows, a full resync of the owner, and the flood to the other
   * links carry them; the peer drops what the earlier run held and this one does not. As at any
   * commit, transitions open on those objects end BROKEN, watchers see each object once more, and
   * a tombstone's retention starts again.
   *
   * <p>Not moved, only logged: with a store, whose epoch the stored versions depend on; when the
   * peer's epoch lies more than {@link #EPOCH_LEAD_TAKEN} ahead of this node's clock; and when a
   * neighbour announces a route to the owner, so that another node runs it too (a misconfiguration
   * in which each node's catch-up would otherwise drop the other's objects at every reconnect).
   */
  private void outgrowEpoch(Destination d, OwnerId o, long peerEpoch) {
    Destination twin = announcesOwner(o);
    String kept = store != null ? "this node keeps its stored epoch"
        : peerEpoch > now() + EPOCH_LEAD_TAKEN ? "more than a day ahead of this node's clock: ignored"
        : twin != null ? twin.peer + " announces a route to it: another node runs the same owner"
        : null;
    if (kept != null) {
      log.warn("node {}: {} holds {} at epoch {}, later than this node's; {}", nodeId, d.peer, o, peerEpoch, kept);
      return;
    }
    long epoch = Math.max(now(), peerEpoch + 1);
    log.warn("node {}: {} holds {} at epoch {}, later than this node's {}: moving to epoch {}",
        nodeId, d.peer, o, peerEpoch, localOwners.get(o).epoch, epoch);
    localOwners.put(o, new LocalOwner(epoch));
    for (StoredState st : List.copyOf(objects.values())) {
      if (st.owner().equals(o)) {
        Object value = st.deleted() ? null : st.snapshot.value();
        ObjectNode attributes = st.deleted() || value != null ? null : st.attributes(codec, json);
        commitLocal(st.binding, st.key(), o, attributes, value, st.deleted(), null, List.of(), x -> {}, e -> {});
      }
    }
  }

  /**
   * A neighbour that announces it can reach {@code owner} (below {@link RouteTable#MAX_HOPS}, which
   * poisoned reverse uses for an owner reached through this node), whether the policy took the
   * route or not.
   */
  private @Nullable Destination announcesOwner(OwnerId owner) {
    for (Destination x : destinations) {
      Integer hops = x.announced.get(owner);
      if (hops != null && hops < RouteTable.MAX_HOPS) {
        return x;
      }
    }
    return null;
  }

  private void onWatermark(Destination d, Message.Watermark w) {
    OwnerId owner = OwnerId.of(w.owner());
    // The peer's first watermark of an owner ends its catch-up of that owner, adopted or not: the
    // keys it sent meanwhile are recorded for that watermark only. Ended only on adoption, the
    // record would grow by every key of the owner the link brought while the peer was off the
    // owner's path. Not for an owner it neither sent a state of nor speaks for: the peer chooses
    // those names, and recording their keys, should states follow, ends at its next watermark.
    java.util.Set<ObjectKey> seen = d.catchUpSeen.remove(owner);
    if (seen != null) {
      d.catchUpSeenKeys -= seen.size();
    }
    boolean spokenFor = speaksFor(d, owner);
    if (seen != null || spokenFor) {
      d.caughtUp.add(owner);
    }
    // A state of the owner refused from the peer on route and not received since keeps the
    // watermark below it (belowRefused), whoever sends the watermark.
    if (!spokenFor) {
      return;
    }
    Version v = new Version(w.epoch(), w.serial());
    if (w.full() && !d.catchUpRecordGivenUp) {
      for (StoredState st : List.copyOf(objects.values())) {
        if (st.owner().equals(owner) && st.version().compareTo(v) <= 0
            && (seen == null || !seen.contains(st.key()))) {
          drop(st, d, st.version(), true);
        }
      }
    }
    Version capped = belowRefused(owner, v);
    Version cur = watermarks.get(owner);
    if (cur == null || capped.isNewerThan(cur)) {
      setWatermark(owner, capped);
    }
  }

  private void setWatermark(OwnerId owner, Version v) {
    watermarks.put(owner, v);
    persist(new WriteBatch.PutWatermark(new StoredData.WatermarkRecord(owner.value(), v.epoch(), v.serial())));
  }

  /**
   * A state of {@code owner} newer than the one held was refused because its sender was not on the
   * owner's path: the sender counts it as delivered, so only a catch-up can bring it again, and
   * only if no watermark here covers it. The watermark falls below it, and stays below it until a
   * state of that object at least as new arrives.
   *
   * @return whether the state was newer than the one held (else nothing is missing)
   */
  private boolean refusedOnRoute(ObjectKey key, OwnerId owner, Version v) {
    StoredState cur = objects.get(key);
    // As applyState would judge it on the path: nothing is missing if the owner's state held is not
    // older, or the key is another owner's live object; another owner's tombstone gives way.
    if (cur != null && (cur.owner().equals(owner) ? !v.isNewerThan(cur.version()) : !cur.deleted())) {
      return false;
    }
    // The newest refused version of each key: an older one arriving does not make it good.
    refusedStates
        .computeIfAbsent(owner, o -> new HashMap<>())
        .merge(key, v, (a, b) -> a.compareTo(b) >= 0 ? a : b);
    Version wm = watermarks.get(owner);
    Version capped = wm == null ? null : belowRefused(owner, wm);
    if (capped != null && !capped.equals(wm)) {
      setWatermark(owner, capped);
    }
    return true;
  }

  /**
   * Whether a state of {@code owner} at {@code v} that this node does not hold, sent by {@code
   * from} in its catch-up, may be an object deleted while the peer was away whose tombstone this
   * node dropped after the retention (see {@link Destination#behindPurge}). It may also be one that
   * was hidden from this node; that one comes back with its next version.
   */
  private boolean deletedWhileThePeerWasAway(Destination from, OwnerId owner, Version v) {
    if (from.behindPurge.isEmpty() || from.caughtUp.contains(owner)) {
      return false;
    }
    Version upTo = from.behindPurge.get(owner);
    return upTo != null && v.compareTo(upTo) <= 0;
  }

  /** A state was applied: a refusal of that object at this version or older is made good. */
  private void receivedAfterRefusal(ObjectKey key, OwnerId owner, Version v) {
    Map<ObjectKey, Version> refused = refusedStates.get(owner);
    Version r = refused == null ? null : refused.get(key);
    if (r != null && v.compareTo(r) >= 0) {
      refused.remove(key);
      if (refused.isEmpty()) {
        refusedStates.remove(owner);
      }
    }
  }

  /**
   * {@code v}, or just below the lowest of the refused states of {@code owner} in its epoch (the
   * newest refused version of each key) if that is lower: a state of that key at least that new,
   * which the next catch-up then brings, is newer than the watermark.
   */
  private Version belowRefused(OwnerId owner, Version v) {
    Map<ObjectKey, Version> refused = refusedStates.get(owner);
    if (refused == null) {
      return v;
    }
    Version result = v;
    for (Version r : refused.values()) {
      if (r.epoch() == result.epoch() && r.compareTo(result) <= 0) {
        result = new Version(r.epoch(), r.serial() - 1);
      }
    }
    return result;
  }

  /**
   * Forgets an object that its source no longer has, or no longer shares with this node, up to
   * version {@code upTo}. Neighbours that hold it get a withdrawal: all of them if it is {@code
   * gone}, else those the policy hides it from (see {@link #stateFrame}).
   */
  private void drop(StoredState st, @Nullable Destination from, Version upTo, boolean gone) {
    objects.remove(st.key());
    dropped.put(st.key(), new Dropped(st, upTo, gone));
    persist(new WriteBatch.RemoveObject(st.key().type(), st.key().key()));
    Snapshot<?> s = st.snapshot;
    if (!s.deleted()) {
      notifyWatchers(new Snapshot<>(s.key(), null, s.owner(), s.version(), true, s.committedAt()));
    }
    for (Destination other : destinations) {
      // Its record of withdrawn keys holds objects held only, or it would grow with every key
      // dropped, for the link's life.
      if (!other.withdrawn.isEmpty()) {
        other.withdrawn.remove(st.key());
      }
      if (other != from && (st.holder == other || other.held.containsKey(st.key()))) {
        offer(other, new QueueKey(Lane.STATE, st.key()), st.binding.priority(), new Outbound.State(st.key()));
        drain(other);
      }
    }
  }

  /** Drops tombstones older than the retention; peers behind them will resync those owners. */
  private void dropExpiredTombstones() {
    long horizon = now() - timeouts.tombstoneRetention().toMillis();
    for (StoredState st : List.copyOf(objects.values())) {
      if (st.deleted() && st.snapshot.committedAt() < horizon) {
        objects.remove(st.key());
        // Forgotten by every link too, or their records of deleted keys grow for the links' life;
        // a peer that still holds the tombstone refuses an older state by it.
        for (Destination d : destinations) {
          d.held.remove(st.key());
          d.withdrawn.remove(st.key());
        }
        persist(new WriteBatch.RemoveObject(st.key().type(), st.key().key()));
        Version upTo = purgedUpTo.merge(st.owner(), st.version(), (a, b) -> a.compareTo(b) >= 0 ? a : b);
        // Stored with the removal: after a restart the node still knows whom to resync fully.
        persist(new WriteBatch.PutPurge(
            new StoredData.PurgeRecord(st.owner().value(), upTo.epoch(), upTo.serial())));
      }
    }
  }

  // ------------------------------------------------------------------ owner-side decisions

  /** Builds a {@link Proposal} for a request this node owns and hands it to a decider. */
  private void offerProposal(Outbound.Request r, @Nullable Destination from) {
    TypeBinding<?> b = r.binding();
    List<Obligation> obs = r.obligations();
    ObjectKey key = r.key();
    StoredState cur = key == null ? null : current(key);
    Object proposed = null;
    Proposal.Kind kind;
    if (r.create()) {
      kind = Proposal.Kind.CREATE;
      try {
        proposed = json.treeToValue(r.attributes(), b.type().javaType());
      } catch (JacksonException | IllegalArgumentException e) {
        // The answer may travel to a peer: it names the type, never the parser's details.
        log.debug("node {}: created value does not decode into {}", nodeId, b.type().name(), e);
        rejectAll(obs, ErrorCode.BAD_ENCODING, "value does not decode into " + b.type().name());
        return;
      }
      key = keyOrNull(b, proposed);
      cur = key == null ? null : current(key);
      if (cur != null && !cur.deleted()) {
        rejectAll(obs, ErrorCode.INVALID_OPERATION, key + " already exists");
        return;
      }
    } else {
      kind = r.kind() == Message.ProposalKind.DELETE ? Proposal.Kind.DELETE : Proposal.Kind.UPDATE;
      if (cur == null || cur.deleted()) {
        rejectAll(obs, ErrorCode.NOT_FOUND, key + " does not exist; a proposal cannot create");
        return;
      }
      if (!cur.owner().equals(r.owner())) {
        rejectAll(obs, ErrorCode.BAD_OWNER, key + " is owned by " + cur.owner());
        return;
      }
      if (r.transitionId() != null && endedTransitions.containsKey(r.transitionId())) {
        rejectAll(obs, ErrorCode.BROKEN_TRANSITION,
            "transition " + r.transitionId() + " " + endedTransitions.get(r.transitionId()));
        return;
      }
      TransitionSlot open = r.transitionId() == null ? null : transitionsById.get(r.transitionId());
      if (open != null && !open.key.equals(key)) {
        rejectAll(obs, ErrorCode.INVALID_OPERATION,
            "transition " + brief(r.transitionId()) + " is of another object");
        return;
      }
      if (kind == Proposal.Kind.UPDATE) {
        proposed = proposedUpdate(b, key, r, cur);
        if (proposed == null) {
          return;
        }
      }
    }
    if (from != null && proposed != null && !proposalAllowed(b, key, r, from, cur, proposed)) {
      return;
    }
    deliverProposal(b, kind, key, r, from, cur, proposed, 0,
        scheduler.now(TimeUnit.NANOSECONDS) + timeouts.decision().toNanos());
  }

  /**
   * The value an update proposes: its attributes, merged onto {@code cur}'s if it is partial; or
   * {@code null}, its obligations rejected, if that does not decode or changes the key.
   */
  private @Nullable Object proposedUpdate(
      TypeBinding<?> b, ObjectKey key, Outbound.Request r, StoredState cur) {
    ObjectNode merged =
        r.partial() ? cur.attributesPatchedWith(r.attributes(), codec, json) : r.attributes();
    Object proposed;
    try {
      proposed = json.treeToValue(merged, b.type().javaType());
    } catch (JacksonException | IllegalArgumentException e) {
      rejectAll(r.obligations(), ErrorCode.BAD_ENCODING, "proposed value does not decode");
      return null;
    }
    if (!key.equals(keyOrNull(b, proposed))) {
      rejectAll(r.obligations(), ErrorCode.INVALID_OPERATION, "a proposal cannot change the key");
      return null;
    }
    return proposed;
  }

  /** Asks the policy about the state a peer's proposal would commit; rejects it if refused. */
  private boolean proposalAllowed(
      TypeBinding<?> b,
      @Nullable ObjectKey key,
      Outbound.Request r,
      Destination from,
      @Nullable StoredState cur,
      Object proposed) {
    Snapshot<?> candidate =
        new Snapshot<>(
            key != null ? key : new ObjectKey(b.type().name(), ""),
            proposed,
            r.owner(),
            cur != null ? cur.version() : new Version(0, 0),
            false,
            now());
    if (constructedAllowed(from.peer, operationOf(r), b, candidate)) {
      return true;
    }
    rejectAll(r.obligations(), ErrorCode.UNAUTHORIZED, operationOf(r) + " refused by policy");
    return false;
  }

  private <T> void deliverProposal(
      TypeBinding<T> b,
      Proposal.Kind kind,
      @Nullable ObjectKey key,
      Outbound.Request r,
      @Nullable Destination from,
      @Nullable StoredState cur,
      @Nullable Object proposed,
      long arrival,
      long deadline) {
    @SuppressWarnings("unchecked")
    Snapshot<T> current = cur == null || cur.deleted() ? null : (Snapshot<T>) cur.snapshot;
    Proposal<?>[] holder = new Proposal<?>[1];
    Proposal<T> p =
        new Proposal<>(
            kind,
            b.type(),
            key,
            from == null ? null : from.peer,
            current,
            b.type().javaType().cast(proposed),
            r.transitionId(),
            decision -> {
              Runnable apply = () -> {
                pendingDecisions--;
                decisionDeadlines.remove(holder[0]);
                desk.stopWaiting(holder[0]);
                applyDecision(b, kind, key, r, from, holder[0], deadline, decision);
              };
              ApplicationTask.Flagged decided = new ApplicationTask.Flagged(apply);
              desk.decided(holder[0], decided);
              if (!decided.started()) {
                if (key != null) {
                  unhookSlot(key);
                } else {
                  notToOvertake.set(decided); // a create: the owner may choose any key
                }
              }
            });
    holder[0] = p;
    p.arrival = arrival != 0 ? arrival : desk.nextArrival();
    pendingDecisions++;
    if (closed) {
      // Read before close() ran, decided after: nothing else would end it.
      p.reject(ErrorCode.NOT_CONNECTED, "the owner's node closed before deciding");
      return;
    }
    desk.offer(p);
    if (!p.isDecided()) {
      // One decided in the offer (the default decision, usually at once) needs no deadline: its
      // effect has run or is queued, and it is never in the map it would be removed from.
      decisionDeadlines.put(p, deadline);
    }
  }

  private <T> void applyDecision(
      TypeBinding<T> b,
      Proposal.Kind kind,
      @Nullable ObjectKey proposedKey,
      Outbound.Request r,
      @Nullable Destination from,
      Proposal<?> decided,
      long deadline,
      Proposal.Decision<T> decision) {
    List<Obligation> obs = r.obligations();
    String tid = r.transitionId();
    if (decision instanceof Proposal.Decision.Reject<T> rej) {
      rejectAll(obs, rej.code(), rej.message());
      if (tid != null && proposedKey != null) {
        endTransition(proposedKey, tid, TransitionState.REJECTED, true, null);
      }
      return;
    }
    Proposal.Decision.Commit<T> commit = (Proposal.Decision.Commit<T>) decision;
    T value = commit.value();
    if (!localOwners.containsKey(r.owner())) {
      rejectAll(obs, ErrorCode.BAD_OWNER, r.owner() + " is no longer local");
      return;
    }
    ObjectKey key = kind == Proposal.Kind.DELETE ? proposedKey : keyOrNull(b, value);
    if (key == null) {
      rejectAll(obs, ErrorCode.INVALID_OPERATION, "the committed value has no key");
      return;
    }
    StoredState cur = current(key);
    if (kind == Proposal.Kind.CREATE) {
      if (cur != null && !cur.deleted()) {
        rejectAll(obs, ErrorCode.INVALID_OPERATION, key + " already exists");
        return;
      }
    } else {
      if (!key.equals(proposedKey)) {
        rejectAll(obs, ErrorCode.INVALID_OPERATION, "a commit cannot change the key");
        return;
      }
      if (cur == null || cur.deleted() || !cur.owner().equals(r.owner())) {
        rejectAll(obs, ErrorCode.NOT_FOUND, key + " no longer exists");
        return;
      }
      if (tid != null && endedTransitions.containsKey(tid)) {
        rejectAll(obs, ErrorCode.BROKEN_TRANSITION, "transition " + tid + " " + endedTransitions.get(tid));
        return;
      }
      if (kind == Proposal.Kind.UPDATE && r.partial() && commit.asProposed()
          && !cur.version().equals(Objects.requireNonNull(decided.current()).version())) {
        // Decided as merged onto a state committed over since: committing it would undo the
        // attributes it does not name, and merged onto this one it is a value no decider saw. So it
        // is offered again, merged onto this one, in its place among the waiting proposals, by the
        // deadline it had.
        Object rebased = proposedUpdate(b, key, r, cur);
        if (rebased != null && (from == null || proposalAllowed(b, key, r, from, cur, rebased))) {
          deliverProposal(b, kind, key, r, from, cur, rebased, decided.arrival, deadline);
        }
        return;
      }
    }
    java.util.function.Consumer<StoredState> answer = st -> obs.forEach(o -> o.committed(st));
    if (kind == Proposal.Kind.DELETE) {
      commitLocal(b, key, r.owner(), null, null, true, tid, obs, answer, e -> {});
    } else {
      commitLocal(b, key, r.owner(), null, value, false, tid, obs, answer, e -> {});
    }
  }

  private @Nullable ObjectKey keyOrNull(TypeBinding<?> b, @Nullable Object value) {
    if (value == null) {
      return null;
    }
    try {
      @SuppressWarnings("unchecked")
      SyncType<Object> t = (SyncType<Object>) b.type();
      return t.keyOf(value);
    } catch (RuntimeException e) {
      return null;
    }
  }

  private static void rejectAll(List<Obligation> obs, ErrorCode code, String message) {
    obs.forEach(o -> o.rejected(code, message));
  }

  // ------------------------------------------------------------------ transitions (receive side)

  private void onTransition(Destination d, Message.Transition t) {
    TypeBinding<?> b = types.get(t.objectType());
    if (b == null) {
      sendError(d, 0, ErrorCode.UNKNOWN_TYPE, "unknown type " + brief(t.objectType()));
      return;
    }
    if (endedTransitions.containsKey(t.transitionId())) {
      return;
    }
    ObjectKey key = new ObjectKey(t.objectType(), t.key());
    OwnerId owner = OwnerId.of(t.owner());
    TransitionSlot open = transitionsById.get(t.transitionId());
    StoredState base = objects.get(key);
    if (open != null
            && (open.local || !open.key.equals(key) || !open.origin.equals(t.origin())
                || !open.owner.equals(owner))
        || base != null && !base.owner().equals(owner)) {
      // This node's own transition (a neighbour's copy is an echo or a forgery), an id open on
      // another object or by another originator, or an owner that is not the object's: taken, it
      // would let the sender end or steer a transition that is not its own.
      log.debug("node {}: transition {} from {} does not match the one held", nodeId,
          brief(t.transitionId()), d.peer);
      return;
    }
    if (!listenAllowed(d.peer, Operation.TRANSITION, b, key, owner)
        || !(t.attributes() instanceof ObjectNode attrs)) {
      sendError(d, 0, ErrorCode.UNAUTHORIZED, "transition refused");
      return;
    }
    if (!d.transitionsReceived.contains(t.transitionId())
        && d.transitionsReceived.size() >= limits.transitionsPerPeer()) {
      sendError(d, 0, ErrorCode.LIMIT_EXCEEDED, "more than " + limits.transitionsPerPeer() + " transitions active");
      return;
    }
    if (open != null && open.seq >= t.seq()) {
      // Sent again (a reconnected or second path toward the originator): the sender is on the
      // originator's side all the same, which is what an ABORTED from it is judged by.
      d.transitionsReceived.add(t.transitionId());
      return;
    }
    if (base != null
        && (base.version().epoch() != t.baseEpoch() || base.version().serial() != t.baseSerial())) {
      // The sender judged the tentative value (its committed state merged with the attributes) on
      // another version than the one held here: merged into this one, the value could be one the
      // sender's policy hides from this node. A later update sent on this version applies.
      log.debug("node {}: transition {} from {} judged on {}:{}, held {}", nodeId, t.transitionId(),
          d.peer, t.baseEpoch(), t.baseSerial(), base.version());
      return;
    }
    d.transitionsReceived.add(t.transitionId());
    TransitionSlot slot = transitionSlot(b, key, owner, t.transitionId(), t.origin());
    slot.seq = t.seq();
    slot.partial = t.partial();
    slot.attributes = attrs;
    d.tentativeSeen.put(slot.id, slot.seq);
    touch(slot);
    emitTentative(slot, TransitionState.ACTIVE);
    floodTentative(slot, d);
  }

  private void onTransitionEnd(Destination d, Message.TransitionEnd e) {
    TransitionState state;
    try {
      state = TransitionState.valueOf(e.state());
    } catch (IllegalArgumentException ex) {
      protocolError(d, ErrorCode.BAD_ENCODING, "unknown transition state " + brief(e.state()));
      return;
    }
    if (!state.isTerminal()) {
      protocolError(d, ErrorCode.BAD_ENCODING, "transition end with state ACTIVE");
      return;
    }
    String tid = e.transitionId();
    if (endedTransitions.containsKey(tid)) {
      return;
    }
    ObjectKey key = new ObjectKey(e.objectType(), e.key());
    TransitionSlot slot = transitionsById.get(tid);
    if (slot != null && !slot.key.equals(key)) {
      return; // it names another object than the transition's: it ends nothing
    }
    StoredState held = objects.get(key);
    if (slot == null && held == null) {
      return; // nothing here to end, and nothing to judge the sender by
    }
    // The owner's decisions come from the owner's side, an abandonment also from the side the
    // transition's updates came from. The object's owner, where it is held, is the owner.
    OwnerId owner = held != null ? held.owner() : slot.owner;
    boolean ownersDecision =
        state == TransitionState.CONFIRMED || state == TransitionState.BROKEN
            || state == TransitionState.REJECTED;
    if (!speaksFor(d, owner) && (ownersDecision || !d.transitionsReceived.contains(tid))) {
      log.debug("node {}: {} may not end transition {} as {}", nodeId, d.peer, brief(tid), state);
      return;
    }
    endTransition(key, tid, state, true, d);
  }

  /** The slot of a transition, created on first sight; the owner lets the newest one win. */
  private TransitionSlot transitionSlot(
      TypeBinding<?> b, ObjectKey key, OwnerId owner, String tid, String origin) {
    Map<String, TransitionSlot> slots = transitions.computeIfAbsent(key, k -> new LinkedHashMap<>());
    TransitionSlot slot = slots.get(tid);
    if (slot == null) {
      if (localOwners.containsKey(owner)) {
        for (String other : List.copyOf(slots.keySet())) {
          endTransition(key, other, TransitionState.BROKEN, true, null);
        }
        slots = transitions.computeIfAbsent(key, k -> new LinkedHashMap<>());
      }
      slot = new TransitionSlot(b, key, owner, tid, origin, emptyObject());
      slots.put(tid, slot);
      transitionsById.put(tid, slot);
      activeTransitions++;
      transitionsByOrigin.merge(origin, 1, Integer::sum);
    }
    return slot;
  }

  private void touch(TransitionSlot slot) {
    slot.lastUpdateNanos = scheduler.now(TimeUnit.NANOSECONDS);
    if (slot.expiry == null) {
      scheduleExpiry(slot, timeouts.transitionTtl().toNanos());
    }
  }

  private void scheduleExpiry(TransitionSlot slot, long delayNanos) {
    slot.expiry =
        scheduler.schedule(
            () ->
                serial.execute(
                    () -> {
                      slot.expiry = null;
                      Map<String, TransitionSlot> slots = transitions.get(slot.key);
                      if (slots == null || slots.get(slot.id) != slot) {
                        return;
                      }
                      long idle = scheduler.now(TimeUnit.NANOSECONDS) - slot.lastUpdateNanos;
                      long ttl = timeouts.transitionTtl().toNanos();
                      if (idle >= ttl) {
                        endTransition(slot.key, slot.id, TransitionState.EXPIRED, false, null);
                      } else {
                        scheduleExpiry(slot, ttl - idle);
                      }
                    }),
            delayNanos,
            TimeUnit.NANOSECONDS);
  }

  private static void cancelExpiry(TransitionSlot slot) {
    if (slot.expiry != null) {
      slot.expiry.dispose();
      slot.expiry = null;
    }
  }

  private void floodTentative(TransitionSlot slot, @Nullable Destination except) {
    for (Destination d : destinations) {
      if (d != except) {
        offer(d, new QueueKey(Lane.TENTATIVE, slot.id), slot.binding.priority(),
            new Outbound.Tentative(slot.key, slot.id));
        drain(d);
      }
    }
  }

  /** Ends a transition once; terminal states other than EXPIRED flood to the neighbours. */
  private void endTransition(
      ObjectKey key, String tid, TransitionState state, boolean flood, @Nullable Destination from) {
    if (endedTransitions.containsKey(tid)) {
      return;
    }
    TransitionSlot open = transitionsById.get(tid);
    if (open != null && !open.key.equals(key)) {
      return; // the id is open on another object: this one has no such transition to end
    }
    endedTransitions.put(tid, state);
    Map<String, TransitionSlot> slots = transitions.get(key);
    TransitionSlot slot = slots == null ? null : slots.remove(tid);
    if (slot != null) {
      transitionsById.remove(tid);
    }
    if (slots != null && slots.isEmpty()) {
      transitions.remove(key);
    }
    if (slot != null) {
      activeTransitions--;
      transitionsByOrigin.computeIfPresent(slot.origin, (o, n) -> n == 1 ? null : n - 1);
      cancelExpiry(slot);
      emitTentative(slot, state);
    }
    for (Destination d : destinations) {
      d.tentativeSeen.remove(tid);
      d.transitionsReceived.remove(tid);
    }
    if (flood) {
      TypeBinding<?> b = types.get(key.type());
      int priority = b == null ? SyncType.DEFAULT_PRIORITY : b.priority();
      for (Destination d : destinations) {
        if (d != from) {
          sendControl(d, new Message.TransitionEnd(key.type(), key.key(), tid, state.name()), priority);
        }
      }
    }
  }

  /**
   * The open transitions of {@code key}, or null; without hashing the key when there are none, as
   * on every commit and send of a node without transitions (the hash reads the key's string, a
   * cache miss on a node of many objects).
   */
  private @Nullable Map<String, TransitionSlot> transitionsOf(ObjectKey key) {
    return transitions.isEmpty() ? null : transitions.get(key);
  }

  /** At the owner: a commit confirms the transition it names and breaks every other one. */
  private void settleTransitions(ObjectKey key, @Nullable String confirms) {
    Map<String, TransitionSlot> slots = transitionsOf(key);
    if (slots != null) {
      for (String tid : List.copyOf(slots.keySet())) {
        endTransition(key, tid,
            tid.equals(confirms) ? TransitionState.CONFIRMED : TransitionState.BROKEN, true, null);
      }
    }
    if (confirms != null && !endedTransitions.containsKey(confirms)) {
      endTransition(key, confirms, TransitionState.CONFIRMED, true, null);
    }
  }

  private void emitTentative(TransitionSlot slot, TransitionState state) {
    List<TentativeWatcher> ws = tentativeWatchers.get(slot.key.type());
    if (ws == null || ws.isEmpty()) {
      return;
    }
    Object value = state == TransitionState.ACTIVE ? tentativeValue(slot) : null;
    Tentative<?> t = new Tentative<>(slot.key, slot.id, slot.origin, state, value);
    TentativeKey tk = new TentativeKey(slot.key, slot.id);
    for (TentativeWatcher w : ws) {
      if (w.key() == null || w.key().equals(slot.key)) {
        w.subscription().offer(tk, t);
      }
    }
  }

  private @Nullable Object tentativeValue(TransitionSlot slot) {
    StoredState cur = objects.get(slot.key);
    ObjectNode tree =
        slot.partial && cur != null && !cur.deleted()
            ? cur.attributesPatchedWith(slot.attributes, codec, json)
            : slot.attributes;
    try {
      return json.treeToValue(tree, slot.binding.type().javaType());
    } catch (JacksonException | IllegalArgumentException e) {
      return null;
    }
  }

  // ------------------------------------------------------------------ routes

  private void routesChanged() {
    routes.invalidate();
    for (Destination d : destinations) {
      offer(d, new QueueKey(Lane.CONTROL, "routes"), 0, new Outbound.Routes());
      drain(d);
    }
    for (Destination d : destinations) {
      applyRefusedNowOnPath(d);
    }
  }

  /**
   * Applies again the states refused from {@code d} (in a route race, or by the route policy) whose
   * owner it now speaks for, as received (the listen policy is asked again for a value bound then).
   */
  private void applyRefusedNowOnPath(Destination d) {
    if (d.refusedOnRoute.isEmpty() || d.closed) {
      return;
    }
    List<Map.Entry<ObjectKey, Destination.RefusedState>> ready = new ArrayList<>();
    for (var e : d.refusedOnRoute.entrySet()) {
      if (speaksFor(d, ownerId(e.getValue().sync().owner()))) {
        ready.add(e);
      }
    }
    for (var e : ready) {
      d.refusedOnRoute.remove(e.getKey());
      Destination.RefusedState r = e.getValue();
      if (r.bound() == null
          || listenAllowed(d.peer, Operation.SYNC, r.binding(), e.getKey(), ownerId(r.sync().owner()))) {
        applyState(d, r.binding(), r.sync(), r.frame(), r.bound(), List.of());
      }
    }
  }

  // ------------------------------------------------------------------ policy

  private boolean sendAllowed(PeerId to, StoredState st) {
    return sendAllowed(to, st.binding, st.snapshot);
  }

  private boolean sendAllowed(PeerId to, TypeBinding<?> b, Snapshot<?> s) {
    return peerPolicy.shouldSend(to, s)
        && b.registry().policy().shouldSend(to, s)
        && b.type().policy().shouldSend(to, s);
  }

  /**
   * A tentative state obeys the send policy twice: the committed state it changes, and the value
   * the peer would see (the tentative attributes merged into it). A node that holds no committed
   * state, or cannot decode the tentative value, cannot judge it and does not pass it on. A peer
   * that is behind this node's committed state (other than the owner) gets the tentative state
   * after that state ({@link #stateFrame}), so that it merges it into the base judged here.
   */
  private boolean tentativeAllowed(Destination d, TransitionSlot slot) {
    StoredState st = objects.get(slot.key);
    if (st == null || st.deleted() || !sendAllowed(d.peer, st)) {
      return false;
    }
    if (!RouteTable.ownedBy(d, slot.owner) && !holdsAtLeast(d, slot.key, st, st.version())) {
      return false;
    }
    Object value = tentativeValue(slot);
    return value != null
        && sendAllowed(d.peer, slot.binding,
            new Snapshot<>(slot.key, value, slot.owner, st.version(), false, st.snapshot.committedAt()));
  }

  private boolean listenAllowed(
      PeerId from, Operation op, TypeBinding<?> b, ObjectKey key, OwnerId owner) {
    return peerPolicy.shouldListen(from, op, b.type(), key, owner)
        && b.registry().policy().shouldListen(from, op, b.type(), key, owner)
        && b.type().policy().shouldListen(from, op, b.type(), key, owner);
  }

  private boolean constructedAllowed(
      PeerId from, Operation op, TypeBinding<?> b, Snapshot<?> s) {
    return peerPolicy.shouldListenConstructed(from, op, s)
        && b.registry().policy().shouldListenConstructed(from, op, s)
        && b.type().policy().shouldListenConstructed(from, op, s);
  }

  // ------------------------------------------------------------------ watchers

  private void addWatcher(String type, Watcher w) {
    if (w.subscription().isCancelled()) {
      return;
    }
    if (closed) {
      w.subscription().complete();
      return;
    }
    watchers.computeIfAbsent(type, k -> new ArrayList<>()).add(w);
    if (w.key() != null) {
      StoredState st = objects.get(w.key());
      if (st != null && matches(w, st.snapshot)) {
        w.subscription().offer(w.key(), st.snapshot);
      }
    } else {
      for (StoredState st : objects.values()) {
        if (st.key().type().equals(type) && !st.deleted() && matches(w, st.snapshot)) {
          w.subscription().offer(st.key(), st.snapshot);
        }
      }
    }
  }

  /**
   * The watcher's filter on {@code s}. A filter that throws (say, on a deletion's null value) ends
   * its own stream with that error; the engine's work goes on.
   */
  private static boolean matches(Watcher w, Snapshot<?> s) {
    try {
      return w.filter().test(s);
    } catch (RuntimeException e) {
      w.subscription().error(e);
      return false;
    }
  }

  private void removeWatcher(String type, Watcher w) {
    removeFrom(watchers, type, w);
  }

  private void addTentativeWatcher(String type, TentativeWatcher w) {
    if (w.subscription().isCancelled()) {
      return;
    }
    if (closed) {
      w.subscription().complete();
      return;
    }
    tentativeWatchers.computeIfAbsent(type, k -> new ArrayList<>()).add(w);
    for (Map<String, TransitionSlot> slots : transitions.values()) {
      for (TransitionSlot s : slots.values()) {
        if (s.key.type().equals(type) && (w.key() == null || w.key().equals(s.key))) {
          w.subscription()
              .offer(new TentativeKey(s.key, s.id),
                  new Tentative<>(s.key, s.id, s.origin, TransitionState.ACTIVE, tentativeValue(s)));
        }
      }
    }
  }

  private static <V> void removeFrom(Map<String, List<V>> map, String type, @Nullable V v) {
    List<V> l = map.get(type);
    if (l != null) {
      l.remove(v);
    }
  }

  private void notifyWatchers(Snapshot<?> s) {
    List<Watcher> ws = watchers.get(s.key().type());
    if (ws == null) {
      return;
    }
    for (Watcher w : ws) {
      if ((w.key() == null || w.key().equals(s.key())) && matches(w, s)) {
        w.subscription().offer(s.key(), s);
      }
    }
  }

  // ------------------------------------------------------------------ obligations

  /**
   * @param key the object the request is about, or null for a create (whose key the owner may
   *     choose): see {@link #queueOn}
   */
  private Mono<Outcome<?>> request(
      @Nullable ObjectKey key, java.util.function.Consumer<MonoSink<Outcome<?>>> body) {
    return Mono.create(
        sink ->
            queueOn(
                key,
                () -> {
                  if (closed) {
                    sink.error(new EntanglementException(ErrorCode.NOT_CONNECTED, "node is closed"));
                    return;
                  }
                  try {
                    body.accept(sink);
                  } catch (RuntimeException e) {
                    sink.error(e);
                  }
                }));
  }

  private LocalWaiter localWaiter(MonoSink<Outcome<?>> sink) {
    LocalWaiter w = new LocalWaiter(sink);
    start(w);
    sink.onCancel(() -> serial.execute(() -> {
      if (w.finish()) {
        released(w);
      }
    }));
    return w;
  }

  private RelayObligation relayObligation(Destination from, long requestId) {
    RelayObligation o = new RelayObligation(from, requestId);
    from.requestsPending++;
    start(o);
    return o;
  }

  private void start(Obligation o) {
    pendingRequests++;
    o.deadline = scheduler.now(TimeUnit.NANOSECONDS) + timeouts.request().toNanos();
    requestDeadlines.addLast(o);
  }

  /** An obligation ended: it no longer counts and no longer has a deadline. */
  private void released(Obligation o) {
    int open = --pendingRequests;
    if (o instanceof RelayObligation r) {
      r.from.requestsPending--;
    }
    Obligation head;
    while ((head = requestDeadlines.peekFirst()) != null && head.isDone()) {
      requestDeadlines.pollFirst();
    }
    if (requestDeadlines.size() > 2 * open + ENDED_REQUESTS_KEPT) {
      requestDeadlines.removeIf(Obligation::isDone);
    }
  }

  /** Entries {@link #requestDeadlines} may hold beyond twice the open requests: 64. */
  static final int ENDED_REQUESTS_KEPT = 64;

  /**
   * Entries in {@link #requestDeadlines}, open and ended. For tests, which read it while the engine
   * is idle.
   */
  int requestDeadlinesHeld() {
    return requestDeadlines.size();
  }

  /**
   * Proposals with a decision deadline: the undecided ones. For tests, which read it while the
   * engine is idle.
   */
  int decisionDeadlinesHeld() {
    return decisionDeadlines.size();
  }

  /** Gives back the memory of the links' queues once a backlog has drained (CoalescingQueue#trim). */
  private void trimQueues() {
    for (Destination d : destinations) {
      d.queue.trim();
    }
  }

  /** Ends every request and proposal whose deadline has passed, oldest first. */
  private void sweepDeadlines() {
    long now = scheduler.now(TimeUnit.NANOSECONDS);
    List<Obligation> expired = new ArrayList<>();
    Obligation head;
    while ((head = requestDeadlines.peekFirst()) != null && (head.isDone() || head.deadline <= now)) {
      requestDeadlines.pollFirst();
      if (!head.isDone()) {
        expired.add(head);
      }
    }
    for (Obligation o : expired) {
      fail(o, ErrorCode.TIMEOUT, "no answer in " + timeouts.request());
    }
    if (!expired.isEmpty()) {
      // Requests no one waits for any more: a late RESPONSE is taken as a SYNC (onResponse), so
      // a peer that never answers does not grow the record for the link's life.
      for (Destination d : destinations) {
        d.outstanding.values().removeIf(Engine::allDone);
      }
    }
    // Not in deadline order: a proposal offered again keeps the deadline of its first offer.
    List<Proposal<?>> late = new ArrayList<>();
    decisionDeadlines.forEach((p, deadline) -> {
      if (deadline <= now) {
        late.add(p);
      }
    });
    for (Proposal<?> p : late) {
      decisionDeadlines.remove(p);
      p.reject(ErrorCode.TIMEOUT, "the owner did not decide in time");
    }
  }

  private static boolean allDone(List<Obligation> obligations) {
    for (Obligation o : obligations) {
      if (!o.isDone()) {
        return false;
      }
    }
    return true;
  }

  private void fail(Obligation o, ErrorCode code, String message) {
    o.failed(code, message);
  }

  private final class LocalWaiter extends Obligation {
    private final MonoSink<Outcome<?>> sink;

    LocalWaiter(MonoSink<Outcome<?>> sink) {
      this.sink = sink;
    }

    @Override
    void committed(StoredState state) {
      if (finish()) {
        released(this);
        sink.success(new Outcome.Committed<>(state.snapshot));
      }
    }

    @Override
    void rejected(ErrorCode code, String message) {
      if (finish()) {
        released(this);
        sink.success(new Outcome.Rejected<>(code, message));
      }
    }

    @Override
    void failed(ErrorCode code, String message) {
      if (finish()) {
        released(this);
        sink.error(new EntanglementException(code, message));
      }
    }
  }

  private final class RelayObligation extends Obligation {
    private final Destination from;
    private final long inReplyTo;

    RelayObligation(Destination from, long inReplyTo) {
      this.from = from;
      this.inReplyTo = inReplyTo;
    }

    /**
     * A RESPONSE carries the committed state, and every node applies it: no SYNC is needed. A state
     * the send policy hides from the requester is not noted: the flood then withdraws it there.
     */
    @Override
    void willAnswer(StoredState state) {
      if (!isDone() && !from.closed && sendAllowed(from.peer, state)) {
        noteHolds(from, state.key(), state);
      }
    }

    @Override
    void committed(StoredState state) {
      if (finish()) {
        released(this);
        if (from.closed) {
          // The requester's link is gone (detached while the request was decided): nothing to
          // answer, and a detached link must not become the holder of a state (see detach).
          return;
        }
        if (!sendAllowed(from.peer, state)) {
          // Committed, but the requester may not see the state: an answer that reveals none of it.
          sendError(from, inReplyTo, ErrorCode.WITHHELD, WITHHELD_TEXT);
          return;
        }
        // A state this node held already was not applied, nor noted by willAnswer.
        noteHolds(from, state.key(), state);
        // Around the version's SYNC frame, encoded once for the flood and for this answer.
        byte[] response = codec.encodeResponse(inReplyTo, state.frame(codec, json, statesEncoded));
        answer(from, 0, new Outbound.Answer(null, response));
      }
    }

    @Override
    void rejected(ErrorCode code, String message) {
      if (finish()) {
        released(this);
        // The text may quote the request (keys, transition ids) or come from another node.
        sendError(from, inReplyTo, code, oneLine(message, ERROR_TEXT_CHARS));
      }
    }

    @Override
    void failed(ErrorCode code, String message) {
      if (finish()) {
        released(this);
        answer(from, 0, new Message.NoResponse(inReplyTo));
      }
    }
  }

  // ------------------------------------------------------------------ helpers

  long now() {
    return scheduler.now(TimeUnit.MILLISECONDS);
  }

  private ObjectNode emptyObject() {
    return json.createObjectNode();
  }

  private ObjectNode asObject(JsonNode n) {
    if (n instanceof ObjectNode o) {
      return o;
    }
    throw new IllegalArgumentException("attributes must be an object, not " + n.getNodeType());
  }

  /** A new tree: {@code base} with {@code patch}'s top-level attributes replacing its own. */
  static ObjectNode merge(ObjectNode base, ObjectNode patch) {
    ObjectNode out = base.deepCopy();
    out.setAll(patch);
    return out;
  }

  /** The canonical id of a received owner name (see {@link #ownerIds}). */
  private OwnerId ownerId(String name) {
    OwnerId last = lastOwnerId;
    if (last != null && last.value().equals(name)) {
      return last; // states come in runs of one owner: no hash of the decoded name, no table miss
    }
    OwnerId id = ownerIds.get(name);
    if (id == null) {
      id = OwnerId.of(name);
      ownerIds.put(name, id);
    }
    lastOwnerId = id;
    return id;
  }

  private static <K, V> Map<K, V> lru(int max) {
    return new LinkedHashMap<>(16, 0.75f, false) {
      @Override
      protected boolean removeEldestEntry(Map.Entry<K, V> eldest) {
        return size() > max;
      }
    };
  }
}
