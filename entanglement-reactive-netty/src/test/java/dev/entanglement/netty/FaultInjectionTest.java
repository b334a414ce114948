package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.PeerStats;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.netty.FaultProxy.Direction;
import dev.entanglement.netty.FaultProxy.Faults;
import io.netty.channel.ChannelOption;
import io.netty.channel.WriteBufferWaterMark;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;

/**
 * Nodes on real sockets (127.0.0.1, plain TCP and mutual TLS) with a {@link FaultProxy} on every
 * link: convergence after each kind of fault, dead-peer detection through keepalive, no duplicate
 * connections after reconnect storms, and a bounded outbound queue under a throttled link. Paranoid
 * leak detection covers the connections cut in the middle of a frame.
 *
 * <p>Seeded: {@code -Dfaults.seed=N} (default 20261130) drives the proxies and the workload;
 * {@code -Dfaults.rounds=N} (default 1) repeats each fault N times with seeds N, N+1, … for a
 * longer campaign. Every case prints one {@code FAULTS} line with what it measured.
 */
@ExtendWith(LeakDetection.class)
class FaultInjectionTest {
  record Item(String id, int n) {}

  static final SyncType<Item> ITEM = SyncType.of("Item", Item.class, Item::id);
  static final Duration WAIT = Duration.ofSeconds(30);
  static final Duration KEEPALIVE = Duration.ofMillis(200);
  static final Duration HANDSHAKE = Duration.ofSeconds(1);
  static final long SEED = Long.getLong("faults.seed", 20261130L);
  static final int ROUNDS = Integer.getInteger("faults.rounds", 1);
  static final int KEYS = 40;
  /** Operations of the workload run during a fault, one every 10 ms. */
  static final int OPS = 100;
  /**
   * Small socket send buffers and channel water marks on the nodes, so that a throttled or
   * black-holed link reaches the engine's queue after a few kilobytes, not megabytes of buffers.
   */
  static final int SEND_BUFFER = 8 * 1024;
  static final WriteBufferWaterMark WATER_MARK = new WriteBufferWaterMark(2 * 1024, 8 * 1024);

  enum Kind { LATENCY, THROTTLE, CUTS, BLACK_HOLE }

  private final Deque<Disposable> cleanup = new ArrayDeque<>();
  private final List<EntanglementNode> nodes = new ArrayList<>();
  private final List<Throwable> dropped = new java.util.concurrent.CopyOnWriteArrayList<>();

  @org.junit.jupiter.api.BeforeEach
  void hooks() {
    reactor.core.publisher.Hooks.onErrorDropped(dropped::add);
  }

  /** Nothing failed inside an engine, and no error was dropped by Reactor; then everything closes. */
  private void checkAndClose() {
    for (EntanglementNode n : nodes) {
      assertEquals(0, n.stats().tasksFailed(), "engine tasks failed on " + n.id());
    }
    assertEquals(List.of(), dropped, "errors dropped by Reactor");
    close();
  }

  private final TestPki pki = new TestPki("faults-ca");
  private final AtomicInteger counter = new AtomicInteger();

  @AfterEach
  void close() {
    while (!cleanup.isEmpty()) {
      cleanup.pop().dispose(); // last registered first: dialers, proxies, servers, then nodes
    }
    nodes.clear();
  }

  @AfterEach
  void resetHooks() {
    reactor.core.publisher.Hooks.resetOnErrorDropped();
  }

  private EntanglementNode node(String id, Duration keepAlive) {
    EntanglementNode n =
        EntanglementNode.builder()
            .id(id)
            .owner(OwnerId.of("owner-" + id))
            .registry(Registry.builder("faults").type(ITEM).build())
            .keepAlive(keepAlive)
            .handshakeTimeout(HANDSHAKE)
            .build();
    cleanup.push(() -> n.close().block(WAIT));
    nodes.add(n);
    return n;
  }

  private FaultProxy proxy(int targetPort, long seed) {
    FaultProxy p = FaultProxy.start(targetPort, seed);
    cleanup.push(p::close);
    return p;
  }

  /** A node that serves on TCP, admitting {@code peers} (TLS) or anyone (plain). */
  private DisposableServer serve(EntanglementNode n, TestPki.Identity id, List<PeerId> peers) {
    TcpServerTransport.Builder b = TcpServerTransport.builder(n)
        .tcpServer(t -> t.childOption(ChannelOption.SO_SNDBUF, SEND_BUFFER)
            .childOption(ChannelOption.WRITE_BUFFER_WATER_MARK, WATER_MARK));
    if (id != null) {
      b.tls(id.tls()).destinations(peers);
    } else {
      b.unknownDestination(p -> Mono.just(true));
    }
    DisposableServer s = b.build().bind().block(WAIT);
    cleanup.push(s);
    return s;
  }

  /** Keeps {@code n} dialing {@code port} (a proxy), expecting {@code peer}. */
  private void dial(EntanglementNode n, TestPki.Identity id, int port, PeerId peer) {
    TcpClientTransport.Builder b =
        TcpClientTransport.builder(n).remote(id != null ? "localhost" : "127.0.0.1", port).expect(peer)
            .backoff(Duration.ofMillis(20), Duration.ofMillis(200))
            .tcpClient(t -> t.option(ChannelOption.SO_SNDBUF, SEND_BUFFER)
                .option(ChannelOption.WRITE_BUFFER_WATER_MARK, WATER_MARK));
    if (id != null) {
      b.tls(id.tls());
    }
    cleanup.push(b.build().maintain());
  }

  /** An owner serving, a receiver dialing it through a proxy. */
  private record Pair(EntanglementNode owner, EntanglementNode receiver, FaultProxy proxy, PeerId ownerPeer) {}

  private Pair pair(boolean tls, long seed, Duration keepAlive) {
    EntanglementNode owner = node("owner", keepAlive);
    EntanglementNode receiver = node("receiver", keepAlive);
    TestPki.Identity oid = tls ? pki.issue("owner") : null;
    TestPki.Identity rid = tls ? pki.issue("receiver") : null;
    DisposableServer s = serve(owner, oid, tls ? List.of(rid.fingerprint()) : List.of());
    FaultProxy p = proxy(s.port(), seed);
    PeerId ownerPeer = tls ? oid.fingerprint() : PeerId.of("owner");
    dial(receiver, rid, p.port(), ownerPeer);
    return new Pair(owner, receiver, p, ownerPeer);
  }

  /** Publishes every key of {@code prefix} once. */
  private void publishAll(EntanglementNode owner, String prefix) {
    Flux.range(0, KEYS).concatMap(i -> owner.publish(ITEM, new Item(prefix + i, counter.incrementAndGet())))
        .blockLast(WAIT);
  }

  /**
   * The workload during a fault: {@link #OPS} operations one every 10 ms, each an update of a
   * random key of {@code prefix} (seeded), except the middle one, which deletes key 0 (never
   * published again). Emits the last update.
   */
  private Mono<Snapshot<Item>> churn(EntanglementNode owner, String prefix, Random random) {
    return Flux.range(0, OPS)
        .concatMap(i -> Mono.delay(Duration.ofMillis(10)).then(i == OPS / 2
            ? owner.delete(ITEM, prefix + 0).then(Mono.<Snapshot<Item>>empty())
            : Mono.defer(() -> owner.publish(
                ITEM, new Item(prefix + (1 + random.nextInt(KEYS - 1)), counter.incrementAndGet())))))
        .last();
  }

  /** True if {@code r} holds exactly {@code owner}'s latest state (version, value, tombstone) of each key. */
  private static boolean converged(EntanglementNode owner, EntanglementNode r, String prefix) {
    for (int i = 0; i < KEYS; i++) {
      Optional<Snapshot<Item>> o = owner.get(ITEM, prefix + i);
      Optional<Snapshot<Item>> x = r.get(ITEM, prefix + i);
      if (o.isEmpty() != x.isEmpty()) {
        return false;
      }
      if (o.isPresent()
          && !(o.get().version().equals(x.get().version())
              && o.get().deleted() == x.get().deleted()
              && Objects.equals(o.get().value(), x.get().value()))) {
        return false;
      }
    }
    return true;
  }

  private static List<PeerId> peers(EntanglementNode n) {
    return n.statsConsistent().block(WAIT).peers().stream().map(PeerStats::peer).toList();
  }

  /** True if {@code n} has a link to {@code peer} on which it received frames. */
  private static boolean carriedFrames(EntanglementNode n, PeerId peer) {
    return n.statsConsistent().block(WAIT).peers().stream()
        .anyMatch(p -> p.peer().equals(peer) && p.framesReceived() > 0);
  }

  static Stream<Arguments> faults() {
    return Stream.of(Kind.values()).flatMap(k -> Stream.of(Arguments.of(k, false), Arguments.of(k, true)));
  }

  @ParameterizedTest(name = "{0}, tls={1}")
  @MethodSource("faults")
  @DisplayName("after each fault clears, the receiver holds exactly the owner's latest state, over one connection")
  void convergesAfterFault(Kind kind, boolean tls) {
    for (int round = 0; round < ROUNDS; round++) {
      long seed = SEED + round;
      Random random = new Random(seed);
      Pair net = pair(tls, seed, KEEPALIVE);
      String prefix = "k" + round + "-";
      publishAll(net.owner(), prefix);
      Eventually.until("initial sync", WAIT, () -> converged(net.owner(), net.receiver(), prefix));
      PeerId receiverPeer = peers(net.owner()).get(0);

      switch (kind) {
        case LATENCY -> net.proxy().setBoth(Faults.latency(Duration.ofMillis(40), Duration.ofMillis(40)));
        case THROTTLE -> net.proxy().setBoth(Faults.bandwidth(1_000));
        case CUTS -> {
          net.proxy().cutWithin(Direction.UPSTREAM, 400);
          net.proxy().cutWithin(Direction.DOWNSTREAM, 1_500);
        }
        case BLACK_HOLE -> net.proxy().setBoth(Faults.blackHoled());
      }
      // When each state reached the receiver (wall clock, as the owner's commit time).
      java.util.Map<String, Long> arrivals = new java.util.concurrent.ConcurrentHashMap<>();
      cleanup.push(net.receiver().watchAll(ITEM)
          .subscribe(x -> arrivals.putIfAbsent(x.key().key() + "@" + x.version(), System.currentTimeMillis())));
      Mono<Snapshot<Item>> load = churn(net.owner(), prefix, random).cache();
      load.subscribe();
      String detected = "";
      if (kind == Kind.BLACK_HOLE) {
        // The proxy closes nothing: only keepalive (silence for 3 intervals) can end the links.
        // A link that carried frames: the receiver redials at once, and over plain TCP that new
        // link attaches (and waits for a HELLO that the black hole holds back).
        Duration atReceiver = Eventually.until("the receiver drops the silent owner", WAIT,
            () -> !carriedFrames(net.receiver(), net.ownerPeer()));
        Duration atOwner = Eventually.until("the owner drops the silent receiver", WAIT,
            () -> !carriedFrames(net.owner(), receiverPeer)).plus(atReceiver);
        for (Duration d : List.of(atReceiver, atOwner)) {
          assertTrue(d.compareTo(KEEPALIVE.multipliedBy(2)) >= 0, "not before silence: " + d);
          assertTrue(d.compareTo(KEEPALIVE.multipliedBy(4).plusSeconds(2)) <= 0, "detected late: " + d);
        }
        detected = " detect=" + atReceiver.toMillis() + "/" + atOwner.toMillis() + "ms";
      }
      Snapshot<Item> last = load.block(WAIT);
      long cleared = System.currentTimeMillis();
      net.proxy().clear();
      Duration convergence = Eventually.until(kind + ": the receiver converges", WAIT,
          () -> converged(net.owner(), net.receiver(), prefix));
      // The fault was in effect: the last update of the workload arrived late.
      String lastSeen = last.key().key() + "@" + last.version();
      Eventually.until("the receiver's watch sees the last update", WAIT, () -> arrivals.containsKey(lastSeen));
      long arrived = arrivals.get(lastSeen);
      switch (kind) {
        case LATENCY -> assertTrue(arrived - last.committedAt() >= 40, "delayed by the latency");
        case THROTTLE, BLACK_HOLE -> assertTrue(arrived >= cleared, "held back until the fault cleared");
        case CUTS -> { }
      }
      if (kind == Kind.CUTS) {
        assertTrue(net.proxy().cuts() > 0, "connections were cut");
      }
      if (kind == Kind.BLACK_HOLE || kind == Kind.CUTS) {
        assertTrue(net.proxy().accepted() > 1, "the receiver reconnected");
      }
      Eventually.until("one link each side, one proxied connection", WAIT,
          () -> peers(net.owner()).size() == 1 && peers(net.receiver()).size() == 1 && net.proxy().open() == 1);
      assertEquals(List.of(net.ownerPeer()), peers(net.receiver()));
      System.out.printf("FAULTS %s tls=%s seed=%d cuts=%d connections=%d%s converge=%dms%n",
          kind, tls, seed, net.proxy().cuts(), net.proxy().accepted(), detected, convergence.toMillis());
      checkAndClose();
    }
  }

  @Test
  @DisplayName("reconnect storm: three nodes dialing each other through proxies keep one connection per pair")
  void noDuplicateConnectionsAfterStorms() {
    for (int round = 0; round < ROUNDS; round++) {
      long seed = SEED + round;
      Random random = new Random(seed);
      List<String> names = List.of("o", "a", "b");
      List<EntanglementNode> nodes = new ArrayList<>();
      List<TestPki.Identity> ids = new ArrayList<>();
      for (String name : names) {
        nodes.add(node(name, KEEPALIVE));
        ids.add(pki.issue(name));
      }
      List<DisposableServer> servers = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        int self = i;
        servers.add(serve(nodes.get(i), ids.get(i),
            Stream.of(0, 1, 2).filter(j -> j != self).map(j -> ids.get(j).fingerprint()).toList()));
      }
      // o <-> a and o <-> b, each dialed by both sides through its own proxy; a and b meet through o.
      int[][] links = {{0, 1}, {1, 0}, {0, 2}, {2, 0}};
      List<FaultProxy> proxies = new ArrayList<>();
      for (int[] l : links) {
        FaultProxy p = proxy(servers.get(l[1]).port(), seed * 31 + proxies.size());
        proxies.add(p);
        dial(nodes.get(l[0]), ids.get(l[0]), p.port(), ids.get(l[1]).fingerprint());
      }
      String[] prefixes = {"o" + round + "-", "a" + round + "-", "b" + round + "-"};
      for (int i = 0; i < 3; i++) {
        publishAll(nodes.get(i), prefixes[i]);
      }
      Mono<Void> load =
          Mono.when(churn(nodes.get(0), prefixes[0], new Random(seed + 1)),
              churn(nodes.get(1), prefixes[1], new Random(seed + 2)),
              churn(nodes.get(2), prefixes[2], new Random(seed + 3))).cache();
      load.subscribe();
      // The storm: 20 steps 50 ms apart, each dropping every connection of a random proxy or arming
      // cuts on one.
      int drops = 0;
      for (int step = 0; step < 20; step++) {
        FaultProxy p = proxies.get(random.nextInt(proxies.size()));
        if (random.nextBoolean()) {
          p.dropAll();
          drops++;
        } else {
          p.cutWithin(Direction.values()[random.nextInt(2)], 200 + random.nextInt(2_000));
        }
        Mono.delay(Duration.ofMillis(50)).block();
      }
      load.block(WAIT);
      proxies.forEach(FaultProxy::clear);
      Duration convergence = Eventually.until("every node holds every owner's latest state", WAIT, () -> {
        for (int owner = 0; owner < 3; owner++) {
          for (int other = 0; other < 3; other++) {
            if (!converged(nodes.get(owner), nodes.get(other), prefixes[owner])) {
              return false;
            }
          }
        }
        return true;
      });
      // Of the two dials of a pair, the one by the lower fingerprint is kept (PeerOrder): the other
      // may hold the link for a while, until the winner's dialer, in backoff after the storm, dials.
      List<Integer> kept = new ArrayList<>();
      for (int i = 0; i < links.length; i += 2) {
        boolean firstWins = PeerOrder.localDialWins(ids.get(links[i][0]).fingerprint(), ids.get(links[i][1]).fingerprint());
        kept.add(firstWins ? i : i + 1);
      }
      Eventually.until("one link per neighbour, one connection per pair of nodes: the winner's dial", WAIT,
          () -> peers(nodes.get(0)).size() == 2 && peers(nodes.get(1)).size() == 1
              && peers(nodes.get(2)).size() == 1
              && proxies.stream().mapToInt(FaultProxy::open).sum() == 2
              && kept.stream().allMatch(k -> proxies.get(k).open() == 1));
      int accepted = proxies.stream().mapToInt(FaultProxy::accepted).sum();
      List<Integer> keptAccepted = kept.stream().map(k -> proxies.get(k).accepted()).toList();
      // Stable over ten keepalive intervals: the kept connections are never replaced (their
      // proxies accept nothing new) and stay the only ones. A loser's dial that was already on its
      // way may still arrive, and is refused as a duplicate.
      Mono.delay(KEEPALIVE.multipliedBy(10)).block();
      assertEquals(keptAccepted, kept.stream().map(k -> proxies.get(k).accepted()).toList(),
          "the kept connections were not replaced");
      Eventually.until("one connection per pair of nodes (a refused dial closes)", WAIT,
          () -> proxies.stream().mapToInt(FaultProxy::open).sum() == 2);
      assertEquals(List.of(ids.get(0).fingerprint()), peers(nodes.get(1)));
      assertEquals(List.of(ids.get(0).fingerprint()), peers(nodes.get(2)));
      assertEquals(
          java.util.Set.of(ids.get(1).fingerprint(), ids.get(2).fingerprint()),
          java.util.Set.copyOf(peers(nodes.get(0))));
      System.out.printf("FAULTS STORM seed=%d drops=%d cuts=%d connections=%d converge=%dms%n", seed, drops,
          proxies.stream().mapToInt(FaultProxy::cuts).sum(), accepted, convergence.toMillis());
      checkAndClose();
    }
  }

  @Test
  @DisplayName("a fast producer over a throttled link: the sender queues at most one entry per object (and a watermark)")
  void boundedQueueUnderThrottle() {
    // Keepalive at its default (15 s): no PING or PONG shares the queue during the test.
    Pair net = pair(false, SEED, Duration.ofSeconds(15));
    String prefix = "m-";
    publishAll(net.owner(), prefix);
    Eventually.until("initial sync", WAIT, () -> converged(net.owner(), net.receiver(), prefix));
    net.proxy().set(Direction.DOWNSTREAM, Faults.bandwidth(2_000));
    List<Integer> depths = new ArrayList<>();
    Random random = new Random(SEED);
    int updates = 5_000;
    // Sampled by the producer every 25 updates (stats() reads without waiting for the engine).
    Flux.range(0, updates)
        .concatMap(i -> net.owner().publish(ITEM, new Item(prefix + random.nextInt(KEYS), counter.incrementAndGet())))
        .index()
        .filter(t -> t.getT1() % 25 == 0)
        .doOnNext(t -> net.owner().stats().peers().forEach(p -> depths.add(p.queueDepth())))
        .blockLast(WAIT);
    NodeStats after = net.owner().statsConsistent().block(WAIT);
    int max = depths.stream().mapToInt(Integer::intValue).max().orElse(0);
    PeerStats toReceiver = after.peers().get(0);
    // One entry per object, and one per owner for the watermark that follows the states (lowest
    // urgency: it waits behind them); with keepalive at 15 s no PING or PONG is queued.
    assertTrue(max <= KEYS + 1, "queue depth " + max + " exceeds " + KEYS + " objects and a watermark");
    assertTrue(max >= KEYS / 2, "the throttle backed the queue up (max depth " + max + ")");
    assertTrue(toReceiver.updatesCoalesced() > updates / 2, "most updates coalesced: " + toReceiver);
    net.proxy().clear();
    Duration convergence = Eventually.until("the receiver converges", WAIT,
        () -> converged(net.owner(), net.receiver(), prefix));
    System.out.printf("FAULTS MEMORY updates=%d keys=%d samples=%d maxQueueDepth=%d coalesced=%d converge=%dms%n",
        updates, KEYS, depths.size(), max, toReceiver.updatesCoalesced(), convergence.toMillis());
    checkAndClose();
  }
}
