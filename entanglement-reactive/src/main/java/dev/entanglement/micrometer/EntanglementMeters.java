package dev.entanglement.micrometer;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.PeerId;
import dev.entanglement.PeerStats;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.binder.MeterBinder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.ToDoubleFunction;
import org.jspecify.annotations.Nullable;
import reactor.core.Disposable;

/**
 * A node's statistics as Micrometer meters (Micrometer is an optional dependency: only this package
 * needs it).
 *
 * <p>Meters, all named {@code entanglement.*} and tagged with {@code node} plus the tags given:
 *
 * <ul>
 *   <li>node-wide function counters {@code frames.sent}, {@code bytes.sent}, {@code
 *       frames.received}, {@code states.encoded}, {@code updates.offered}, {@code
 *       updates.coalesced}, {@code publishes.merged}, {@code events.dropped}, and gauges {@code
 *       queue.depth}, {@code requests.pending}, {@code decisions.pending}, {@code
 *       transitions.active};
 *   <li>per neighbour (tag {@code peer}): gauges {@code peer.staleness.p50} and {@code
 *       peer.staleness.p99} (seconds), {@code peer.conflation.ratio}, {@code peer.queue.depth},
 *       {@code peer.requests.pending}, {@code peer.transitions.active}, and function counters
 *       {@code peer.frames.sent}, {@code peer.bytes.sent}, {@code peer.frames.received}, {@code
 *       peer.bytes.received}, {@code peer.updates.produced}, {@code peer.updates.coalesced},
 *       {@code peer.inbound.pauses}, {@code peer.inbound.throttled} (seconds the link was paused
 *       by the inbound rate limit) and {@code peer.events.dropped}.
 * </ul>
 *
 * <p>Values come from the latest of {@link EntanglementNode#statsEvery} (every 10 s by default), so
 * a scrape never runs on the node's engine. A neighbour's meters appear at the first refresh after
 * its link opens and are removed from the registry at the first refresh after it closes (counters
 * restart with a new link, as its statistics do).
 *
 * <p>State machine: {@code NEW} → {@code BOUND} ({@link #bindTo}: subscribed to the statistics;
 * one registry per instance) → {@code CLOSED} ({@link #close}, or the node closing: unsubscribed,
 * per-neighbour meters removed). Transitions are guarded by this object's monitor; meters are read
 * from any thread through an atomic reference.
 */
public final class EntanglementMeters implements MeterBinder, AutoCloseable {
  /** The default refresh period: 10 seconds. */
  public static final Duration DEFAULT_REFRESH = Duration.ofSeconds(10);

  private final EntanglementNode node;
  private final Duration refresh;
  private final Tags tags;
  private final AtomicReference<NodeStats> latest;
  private final Map<PeerId, List<Meter.Id>> peerMeters = new HashMap<>();
  private @Nullable MeterRegistry registry;
  private @Nullable Disposable subscription;
  private boolean closed;

  private EntanglementMeters(EntanglementNode node, Duration refresh, Iterable<Tag> tags) {
    this.node = Objects.requireNonNull(node, "node");
    this.refresh = Objects.requireNonNull(refresh, "refresh");
    if (refresh.isNegative() || refresh.isZero()) {
      throw new IllegalArgumentException("refresh must be positive: " + refresh);
    }
    this.tags = Tags.of(tags).and("node", node.id());
    this.latest = new AtomicReference<>(node.stats());
  }

  /** Meters refreshed every {@link #DEFAULT_REFRESH}, tagged with the node id only. */
  public static EntanglementMeters of(EntanglementNode node) {
    return new EntanglementMeters(node, DEFAULT_REFRESH, Tags.empty());
  }

  /** Meters refreshed every {@code refresh}, with {@code tags} added to every meter. */
  public static EntanglementMeters of(EntanglementNode node, Duration refresh, Iterable<Tag> tags) {
    return new EntanglementMeters(node, refresh, tags);
  }

  @Override
  public synchronized void bindTo(MeterRegistry registry) {
    if (closed) {
      throw new IllegalStateException("closed");
    }
    if (this.registry != null) {
      throw new IllegalStateException("already bound to a registry");
    }
    this.registry = registry;
    counter(registry, "frames.sent", NodeStats::framesSent);
    counter(registry, "bytes.sent", NodeStats::bytesSent);
    counter(registry, "frames.received", NodeStats::framesReceived);
    counter(registry, "states.encoded", NodeStats::statesEncoded);
    counter(registry, "updates.offered", NodeStats::updatesOffered);
    counter(registry, "updates.coalesced", NodeStats::updatesCoalesced);
    counter(registry, "publishes.merged", NodeStats::publishesMerged);
    counter(registry, "events.dropped", NodeStats::eventsDropped);
    gauge(registry, "queue.depth", NodeStats::queuedEntries);
    gauge(registry, "requests.pending", NodeStats::pendingRequests);
    gauge(registry, "decisions.pending", NodeStats::pendingDecisions);
    gauge(registry, "transitions.active", NodeStats::activeTransitions);
    refreshPeers(latest.get());
    subscription = node.statsEvery(refresh).subscribe(this::update, e -> close(), this::close);
  }

  private void update(NodeStats stats) {
    latest.set(stats);
    refreshPeers(stats);
  }

  /** Adds meters for new neighbours and removes those of neighbours no longer connected. */
  private synchronized void refreshPeers(NodeStats stats) {
    MeterRegistry r = registry;
    if (r == null || closed) {
      return;
    }
    Set<PeerId> now = new HashSet<>();
    for (PeerStats p : stats.peers()) {
      now.add(p.peer());
      peerMeters.computeIfAbsent(p.peer(), peer -> registerPeer(r, peer));
    }
    for (PeerId gone : new ArrayList<>(peerMeters.keySet())) {
      if (!now.contains(gone)) {
        peerMeters.remove(gone).forEach(r::remove);
      }
    }
  }

  private List<Meter.Id> registerPeer(MeterRegistry r, PeerId peer) {
    Tags t = tags.and("peer", peer.value());
    List<Meter.Id> ids = new ArrayList<>();
    ids.add(peerGauge(r, t, peer, "peer.staleness.p50", p -> p.stalenessP50().toNanos() / 1e9));
    ids.add(peerGauge(r, t, peer, "peer.staleness.p99", p -> p.stalenessP99().toNanos() / 1e9));
    ids.add(peerGauge(r, t, peer, "peer.conflation.ratio", PeerStats::conflationRatio));
    ids.add(peerGauge(r, t, peer, "peer.queue.depth", PeerStats::queueDepth));
    ids.add(peerGauge(r, t, peer, "peer.requests.pending", PeerStats::pendingRequests));
    ids.add(peerGauge(r, t, peer, "peer.transitions.active", PeerStats::activeTransitions));
    ids.add(peerCounter(r, t, peer, "peer.frames.sent", PeerStats::framesSent));
    ids.add(peerCounter(r, t, peer, "peer.bytes.sent", PeerStats::bytesSent));
    ids.add(peerCounter(r, t, peer, "peer.frames.received", PeerStats::framesReceived));
    ids.add(peerCounter(r, t, peer, "peer.bytes.received", PeerStats::bytesReceived));
    ids.add(peerCounter(r, t, peer, "peer.updates.produced", PeerStats::updatesProduced));
    ids.add(peerCounter(r, t, peer, "peer.updates.coalesced", PeerStats::updatesCoalesced));
    ids.add(peerCounter(r, t, peer, "peer.inbound.pauses", PeerStats::inboundPauses));
    ids.add(peerCounter(r, t, peer, "peer.inbound.throttled",
        p -> p.inboundThrottled().toNanos() / 1e9));
    ids.add(peerCounter(r, t, peer, "peer.events.dropped", PeerStats::eventsDropped));
    return ids;
  }

  /** The latest statistics of {@code peer}, or null once its link is gone. */
  private @Nullable PeerStats peer(PeerId peer) {
    for (PeerStats p : latest.get().peers()) {
      if (p.peer().equals(peer)) {
        return p;
      }
    }
    return null;
  }

  private void counter(MeterRegistry r, String name, ToDoubleFunction<NodeStats> value) {
    FunctionCounter.builder("entanglement." + name, latest, ref -> value.applyAsDouble(ref.get()))
        .tags(tags)
        .register(r);
  }

  private void gauge(MeterRegistry r, String name, ToDoubleFunction<NodeStats> value) {
    Gauge.builder("entanglement." + name, latest, ref -> value.applyAsDouble(ref.get()))
        .tags(tags)
        .register(r);
  }

  private Meter.Id peerGauge(
      MeterRegistry r, Tags t, PeerId peer, String name, ToDoubleFunction<PeerStats> value) {
    return Gauge.builder("entanglement." + name, this, m -> m.peerValue(peer, value))
        .tags(t)
        .register(r)
        .getId();
  }

  private Meter.Id peerCounter(
      MeterRegistry r, Tags t, PeerId peer, String name, ToDoubleFunction<PeerStats> value) {
    return FunctionCounter.builder("entanglement." + name, this, m -> m.peerValue(peer, value))
        .tags(t)
        .register(r)
        .getId();
  }

  private double peerValue(PeerId peer, ToDoubleFunction<PeerStats> value) {
    PeerStats p = peer(peer);
    return p == null ? Double.NaN : value.applyAsDouble(p);
  }

  /** Stops refreshing and removes the per-neighbour meters; node-wide meters keep their last values. */
  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (subscription != null) {
      subscription.dispose();
    }
    MeterRegistry r = registry;
    if (r != null) {
      peerMeters.values().forEach(ids -> ids.forEach(r::remove));
    }
    peerMeters.clear();
  }
}
