package dev.entanglement;

import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiPredicate;
import java.util.function.Consumer;
import reactor.core.Disposable;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * Nodes wired by the in-JVM transport, all on one virtual clock. Links without bandwidth or
 * latency deliver synchronously, so most assertions need no time to pass; {@link #advance} moves
 * the clock for timers, latency and bandwidth.
 */
final class TestMesh implements AutoCloseable {
  /** A peer policy that sends what {@code allowed} accepts and listens to everything. */
  static Policy sendingOnly(BiPredicate<PeerId, Snapshot<?>> allowed) {
    return new Policy() {
      @Override
      public boolean shouldSend(PeerId destination, Snapshot<?> snapshot) {
        return allowed.test(destination, snapshot);
      }
    };
  }

  /** Hides from every peer the objects whose key is in {@code keys}, read at each decision. */
  static Policy hidingKeys(java.util.Set<String> keys) {
    return sendingOnly((destination, s) -> !keys.contains(s.key().key()));
  }

  /** Hides cursors at x ≥ 100 from the node named {@code peer}. */
  static Policy bigCursorsHiddenFrom(String peer) {
    return sendingOnly(
        (destination, s) ->
            !(destination.value().equals(peer) && s.value() instanceof Cursor c && c.x() >= 100));
  }

  record Cursor(String id, double x, double y) {}

  record Shape(String id, String team, double x, double y, boolean locked) {}

  static final SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);
  static final SyncType<Shape> SHAPE = SyncType.of("Shape", Shape.class, Shape::id);

  static Registry registry() {
    return Registry.builder("test").type(CURSOR).type(SHAPE).build();
  }

  final VirtualTimeScheduler clock = VirtualTimeScheduler.create();
  final Map<String, EntanglementNode> nodes = new LinkedHashMap<>();
  final Map<String, LocalTransport.Connection> links = new LinkedHashMap<>();
  private final List<Disposable> attachments = new ArrayList<>();

  EntanglementNode node(String id) {
    return node(id, b -> {});
  }

  EntanglementNode node(String id, Consumer<EntanglementNode.Builder> config) {
    return node(id, registry(), config);
  }

  EntanglementNode node(String id, Registry registry, Consumer<EntanglementNode.Builder> config) {
    EntanglementNode.Builder b =
        EntanglementNode.builder()
            .id(id)
            .owner(OwnerId.of("owner-" + id))
            .epoch(1)
            .registry(registry)
            .scheduler(clock);
    config.accept(b);
    EntanglementNode n = b.build();
    nodes.put(id, n);
    return n;
  }

  EntanglementNode get(String id) {
    return nodes.get(id);
  }

  LocalTransport.Connection connect(String a, String b) {
    return connect(a, b, LocalTransport.builder().scheduler(clock).build());
  }

  LocalTransport.Connection connect(String a, String b, LocalTransport transport) {
    LocalTransport.Connection c = transport.connect(PeerId.of(a), PeerId.of(b));
    attachments.add(nodes.get(a).attach(c.a()).subscribe());
    attachments.add(nodes.get(b).attach(c.b()).subscribe());
    links.put(a + "-" + b, c);
    return c;
  }

  void disconnect(String a, String b) {
    links.remove(a + "-" + b).close();
  }

  void advance(Duration d) {
    clock.advanceTimeBy(d);
  }

  /** Runs every task that is due now. */
  void settle() {
    clock.advanceTime();
  }

  @Override
  public void close() {
    attachments.forEach(Disposable::dispose);
    nodes.values().forEach(n -> n.close().subscribe());
    clock.dispose();
  }
}
