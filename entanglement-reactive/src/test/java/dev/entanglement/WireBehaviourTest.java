package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.internal.CoalescingQueue;
import dev.entanglement.internal.SerialExecutor;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.Link;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * The engine as a hostile or buggy peer sees it: frames written by hand on one end of a link, and
 * what the node answers on the other.
 */
class WireBehaviourTest {
  private static final FrameCodec CODEC = new FrameCodec();
  private static final JsonMapper JSON = JsonMapper.builder().build();

  /** A hand-driven peer: sends frames through a sink and records what it receives. */
  static final class RawPeer {
    final Sinks.Many<byte[]> out = Sinks.many().unicast().onBackpressureBuffer();
    final List<Message> received = new CopyOnWriteArrayList<>();
    final LocalTransport.Connection connection;
    boolean closed;

    RawPeer(TestMesh mesh, String node, String peerName) {
      this(mesh, node, peerName, LocalTransport.builder().scheduler(mesh.clock).build());
    }

    RawPeer(TestMesh mesh, String node, String peerName, LocalTransport transport) {
      connection = transport.connect(PeerId.of(node), PeerId.of(peerName));
      mesh.get(node).attach(connection.a()).subscribe();
      connection.b().receive().subscribe(f -> received.add(CODEC.decode(f)));
      connection.b().send(out.asFlux()).subscribe();
      connection.b().onClose().subscribe(v -> {}, e -> {}, () -> closed = true);
    }

    void send(Message m) {
      out.tryEmitNext(CODEC.encode(m));
    }

    void sendRaw(byte[] frame) {
      out.tryEmitNext(frame);
    }

    <T extends Message> List<T> of(Class<T> type) {
      return received.stream().filter(type::isInstance).map(type::cast).toList();
    }
  }

  /**
   * A link whose transport marks the end of each read, as the stream transports do: the test emits
   * frames and {@link Link#END_OF_BURST} markers; what the node sends is decoded and recorded.
   */
  static final class BurstLink implements Link {
    final Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
    final List<Message> received = new CopyOnWriteArrayList<>();
    private final Sinks.Empty<Void> closed = Sinks.empty();
    private volatile boolean disposed;

    BurstLink(TestMesh mesh, String node) {
      mesh.get(node).attach(this).subscribe();
    }

    void send(Message m) {
      in.tryEmitNext(CODEC.encode(m));
    }

    void endBurst() {
      in.tryEmitNext(Link.END_OF_BURST);
    }

    @Override
    public PeerId remote() {
      return PeerId.of("x");
    }

    @Override
    public Flux<byte[]> receive() {
      return in.asFlux();
    }

    @Override
    public Mono<Void> send(Publisher<byte[]> frames) {
      return Flux.from(frames)
          .filter(f -> f.length > 0)
          .doOnNext(f -> received.add(CODEC.decode(f)))
          .takeUntilOther(closed.asMono())
          .then();
    }

    @Override
    public Mono<Void> onClose() {
      return closed.asMono();
    }

    @Override
    public void dispose() {
      disposed = true;
      closed.tryEmitEmpty();
    }

    @Override
    public boolean isDisposed() {
      return disposed;
    }
  }

  static Message.Sync sync(String key, String owner, long serial, double x) {
    ObjectNode attrs = JSON.valueToTree(new Cursor(key, x, 0));
    return new Message.Sync("Cursor", key, owner, 1, serial, 0, false, attrs);
  }

  static Message.Hello hello(String node, String... owners) {
    return new Message.Hello(
        FrameCodec.PROTOCOL_VERSION,
        node,
        java.util.Arrays.stream(owners).map(o -> new Message.OwnerAd(o, 1)).toList(),
        0);
  }

  private static Double x(TestMesh mesh, String key) {
    return mesh.get("a").get(CURSOR, key).map(st -> st.value().x()).orElse(null);
  }

  @Test
  @DisplayName("once a link marks the end of a burst, each later burst is handled at its marker, in the order received")
  void burstsAreHandledAtTheirMarkers() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      List<Double> seen = new CopyOnWriteArrayList<>();
      mesh.get("a").watchAll(CURSOR).subscribe(st -> seen.add(st.value().x()));
      BurstLink x = new BurstLink(mesh, "a");
      x.send(hello("x", "owner-x"));
      x.send(sync("c", "owner-x", 1, 1));
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"), "no marker yet: handled on arrival");
      x.endBurst();
      x.send(sync("c", "owner-x", 2, 2));
      x.send(sync("c", "owner-x", 3, 3));
      x.send(sync("d", "owner-x", 1, 4));
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"), "held until the burst's marker");
      assertEquals(null, x(mesh, "d"));
      x.endBurst();
      mesh.settle();
      assertEquals(3.0, x(mesh, "c"));
      assertEquals(4.0, x(mesh, "d"));
      assertEquals(List.of(1.0, 2.0, 3.0, 4.0), seen);
      x.endBurst(); // an empty burst: nothing to handle, and no error
      mesh.settle();
      assertEquals(List.of(), x.received.stream().filter(Message.Error.class::isInstance).toList());
    }
  }

  @Test
  @DisplayName("a burst is handled without its marker once it holds MAX_BURST frames")
  void aFullBurstIsHandledWithoutItsMarker() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      BurstLink x = new BurstLink(mesh, "a");
      x.send(hello("x", "owner-x"));
      x.endBurst();
      for (int i = 0; i < Engine.MAX_BURST - 1; i++) {
        x.send(sync("k" + i, "owner-x", 1, i));
      }
      mesh.settle();
      assertEquals(null, x(mesh, "k0"));
      x.send(sync("last", "owner-x", 1, -1));
      mesh.settle();
      assertEquals(0.0, x(mesh, "k0"));
      assertEquals(-1.0, x(mesh, "last"));
    }
  }

  @Test
  @DisplayName("a burst is handled without its marker when nothing more is requested of the link (its inbound rate paused it)")
  void aBurstIsHandledWhenTheLinkIsPaused() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.maxInboundRate(1, 2)); // two frames (the marker is not counted), then a pause
      BurstLink x = new BurstLink(mesh, "a");
      x.send(hello("x", "owner-x"));
      x.endBurst();
      x.send(sync("c", "owner-x", 1, 1));
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"));
    }
  }

  @Test
  @DisplayName("markers do not count against the inbound rate: a frame per read still gets the whole rate")
  void markersAreNotCountedByTheRate() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.maxInboundRate(1, 3)); // three frames, then one a second
      BurstLink x = new BurstLink(mesh, "a");
      x.send(hello("x", "owner-x"));
      x.endBurst();
      for (String key : List.of("c", "d", "e")) {
        x.send(sync(key, "owner-x", 1, 1));
        x.endBurst();
      }
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"));
      assertEquals(1.0, x(mesh, "d"), "the burst of three counts frames only: HELLO, c and d");
      assertEquals(null, x(mesh, "e"), "the fourth frame waits for the rate");
      mesh.advance(java.time.Duration.ofSeconds(1));
      assertEquals(1.0, x(mesh, "e"));
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"complete", "error", "close"})
  @DisplayName("a burst is handled when its link ends before the marker: its frames end normally or with an error, or the link is closed first")
  void aBurstIsHandledWhenTheLinkEnds(String end) {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      BurstLink x = new BurstLink(mesh, "a");
      x.send(hello("x", "owner-x"));
      x.endBurst();
      x.send(sync("c", "owner-x", 1, 1));
      mesh.settle();
      assertEquals(null, x(mesh, "c"));
      switch (end) {
        case "complete" -> x.in.tryEmitComplete();
        case "error" -> x.in.tryEmitError(new java.io.IOException("connection reset"));
        default -> x.dispose(); // as Netty: the close is reported before the frames end
      }
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"));
      assertTrue(x.isDisposed());
    }
  }

  @Test
  @DisplayName("the first frames a node sends are HELLO with its owners, then its routes")
  void helloFirst() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer peer = new RawPeer(mesh, "a", "x");
      Message.Hello h = assertInstanceOf(Message.Hello.class, peer.received.get(0));
      assertEquals("a", h.nodeId());
      assertEquals(List.of(new Message.OwnerAd("owner-a", 1)), h.owners());
      assertInstanceOf(Message.Routes.class, peer.received.get(1));
    }
  }

  @Test
  @DisplayName("a state claiming one of the node's own owners is refused with BAD_OWNER")
  void impersonationRefused() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.get("a").publish(new Cursor("mine", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(sync("mine", "owner-a", 99, 666));
      assertEquals("BAD_OWNER", peer.of(Message.Error.class).get(0).code());
      assertEquals(1.0, mesh.get("a").get(CURSOR, "mine").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a state from a neighbour that is not on its owner's path is refused with BAD_OWNER")
  void offPathRefused() {
    try (TestMesh mesh = ReplicationTest.line("owner", "a")) {
      mesh.get("owner").publish(new Cursor("c", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x")); // x does not announce owner-owner
      peer.send(sync("c", "owner-owner", 50, 666));
      assertEquals("BAD_OWNER", peer.of(Message.Error.class).get(0).code());
      assertEquals(1.0, mesh.get("a").get(CURSOR, "c").orElseThrow().value().x());
    }
  }

  @Test
  @DisplayName("a stale WITHDRAW (an older version than held) leaves the newer state; one at the held version drops it, and older states stay out")
  void staleWithdrawalIgnored() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(sync("c", "owner-x", 5, 5));
      peer.send(new Message.Withdraw("Cursor", "c", "owner-x", 1, 3)); // crossed the newer SYNC
      assertEquals(5.0, mesh.get("a").get(CURSOR, "c").orElseThrow().value().x());
      peer.send(new Message.Withdraw("Cursor", "c", "owner-x", 1, 5));
      assertTrue(mesh.get("a").get(CURSOR, "c").isEmpty());
      peer.send(sync("c", "owner-x", 4, 4)); // behind the withdrawal
      assertTrue(mesh.get("a").get(CURSOR, "c").isEmpty());
      peer.send(sync("c", "owner-x", 6, 6));
      assertEquals(6.0, mesh.get("a").get(CURSOR, "c").orElseThrow().value().x());
    }
  }

  private static final ObjectKey KEY_C = new ObjectKey("Cursor", "c");

  @Test
  @DisplayName("a peer still holds the state it sent once another peer sends a newer one")
  void aReplacedSourceKeepsItsHolding() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer owner = new RawPeer(mesh, "a", "x");
      owner.send(hello("x", "owner-x"));
      owner.send(sync("c", "owner-x", 1, 1));
      owner.send(sync("c", "owner-x", 2, 2));
      RawPeer relay = new RawPeer(mesh, "a", "u");
      relay.send(hello("u"));
      relay.send(new Message.Routes(Map.of("owner-x", 1)));
      relay.send(sync("c", "owner-x", 3, 3)); // not sent on to x: x is its owner
      Engine engine = mesh.get("a").engine;
      assertEquals(3.0, mesh.get("a").get(CURSOR, "c").orElseThrow().value().x());
      assertTrue(engine.peerHolds(PeerId.of("x"), KEY_C, new Version(1, 2)), "x's holding, now in its table");
      assertFalse(engine.peerHolds(PeerId.of("x"), KEY_C, new Version(1, 3)));
      assertTrue(engine.peerHolds(PeerId.of("u"), KEY_C, new Version(1, 3)));
    }
  }

  @Test
  @DisplayName("a peer holds the newest state it sent, until it withdraws the key; its new link holds nothing")
  void aSourceHoldsWhatItSent() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      for (int serial = 1; serial <= 3; serial++) {
        x.send(sync("c", "owner-x", serial, serial));
        x.send(sync("d", "owner-x", serial, serial));
      }
      Engine engine = mesh.get("a").engine;
      assertTrue(engine.peerHolds(PeerId.of("x"), KEY_C, new Version(1, 3)));
      assertFalse(engine.peerHolds(PeerId.of("x"), KEY_C, new Version(1, 4)));
      assertFalse(engine.peerHolds(PeerId.of("y"), KEY_C, new Version(1, 1)), "no such link");
      x.send(new Message.Withdraw("Cursor", "c", "owner-x", 1, 1)); // stale: the state stays
      assertTrue(mesh.get("a").get(CURSOR, "c").isPresent());
      assertFalse(engine.peerHolds(PeerId.of("x"), KEY_C, new Version(1, 1)), "withdrawn by x");
      ObjectKey d = new ObjectKey("Cursor", "d");
      assertTrue(engine.peerHolds(PeerId.of("x"), d, new Version(1, 3)));
      x.connection.close();
      RawPeer again = new RawPeer(mesh, "a", "x");
      again.send(hello("x", "owner-x"));
      assertFalse(engine.peerHolds(PeerId.of("x"), d, new Version(1, 1)), "a new link holds nothing yet");
    }
  }

  @Test
  @DisplayName("a peer holds the newest state it was sent: a policy refresh sends it nothing again, and after its withdrawal the next version goes to it")
  void aPeerHoldsWhatItWasSent() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer x = new RawPeer(mesh, "a", "x");
      RawPeer y = new RawPeer(mesh, "a", "y");
      for (RawPeer p : List.of(x, y)) {
        p.send(hello(p == x ? "x" : "y"));
        p.send(new Message.CatchUp(List.of()));
      }
      mesh.settle();
      for (int i = 1; i <= 3; i++) {
        mesh.get("a").publish(new Cursor("c", i, i)).block();
        mesh.settle();
      }
      Engine engine = mesh.get("a").engine;
      Version third = mesh.get("a").get(CURSOR, "c").orElseThrow().version();
      Version fourth = new Version(third.epoch(), third.serial() + 1);
      for (String p : List.of("x", "y")) { // one link held in the state, the other in its table
        assertTrue(engine.peerHolds(PeerId.of(p), KEY_C, third), p);
        assertFalse(engine.peerHolds(PeerId.of(p), KEY_C, fourth), p);
      }
      mesh.get("a").refreshPolicy().block();
      mesh.settle();
      assertEquals(List.of(1L, 2L, 3L), syncSerials(x, "c"), "x holds them all: nothing sent again");
      assertEquals(List.of(1L, 2L, 3L), syncSerials(y, "c"));

      x.send(new Message.Withdraw("Cursor", "c", mesh.get("a").owner().value(), third.epoch(), third.serial()));
      mesh.settle();
      assertFalse(engine.peerHolds(PeerId.of("x"), KEY_C, third), "x dropped it");
      assertTrue(engine.peerHolds(PeerId.of("y"), KEY_C, third));
      mesh.get("a").refreshPolicy().block();
      mesh.settle();
      assertEquals(List.of(1L, 2L, 3L, 3L), syncSerials(x, "c"), "sent again: x no longer holds it");
      assertEquals(List.of(1L, 2L, 3L), syncSerials(y, "c"));
    }
  }

  @Test
  @DisplayName("a state refused while its sender was off the owner's path, then withdrawn by it, is not applied when the routes put the sender on the path")
  void aWithdrawnRefusedStateIsNotAppliedLater() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("z");
      mesh.connect("a", "z");
      mesh.get("z").publish(new Cursor("c", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(sync("c", "owner-z", 9, 9)); // before x's ROUTES names owner-z: refused, and kept
      peer.send(new Message.Withdraw("Cursor", "c", "owner-z", 1, 9));
      peer.send(new Message.Routes(Map.of("owner-z", 1)));
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"), "the withdrawn state is not applied");
    }
  }

  /**
   * Node a holds c of owner-z (serial 1) from z; raw peer x, not on owner-z's path yet, sends c at
   * serial 9, which a refuses, then as many refused states of other keys as a link keeps, so that
   * a does not apply c again when x's routes name owner-z. Returns x.
   */
  private static RawPeer peerWhoseStateWasRefusedOnRoute(TestMesh mesh) {
    mesh.node("a");
    mesh.node("z");
    mesh.connect("a", "z"); // z announces owner-z to a
    mesh.get("z").publish(new Cursor("c", 1, 1)).block();
    RawPeer x = new RawPeer(mesh, "a", "x");
    x.send(hello("x", "owner-x"));
    x.send(sync("c", "owner-z", 9, 9));
    for (int i = 0; i < Destination.REFUSED_ON_ROUTE_KEPT; i++) {
      x.send(sync("filler-" + i, "owner-z", 1, 0));
    }
    assertEquals("BAD_OWNER", x.of(Message.Error.class).get(0).code());
    return x;
  }

  /** The serial of owner-z that a claims to hold in the catch-up it sends a new peer. */
  private static long claimedSerialOfOwnerZ(TestMesh mesh) {
    RawPeer later = new RawPeer(mesh, "a", "y");
    return later.of(Message.CatchUp.class).get(0).holds().stream()
        .filter(m -> m.owner().equals("owner-z")).findFirst().orElseThrow().serial();
  }

  @Test
  @DisplayName("a watermark does not cover a state refused on route and not received since")
  void watermarkStaysBelowARefusedState() {
    try (TestMesh mesh = new TestMesh()) {
      RawPeer x = peerWhoseStateWasRefusedOnRoute(mesh);
      x.send(new Message.Routes(Map.of("owner-z", 1)));
      x.send(new Message.Watermark("owner-z", 1, 10, false));
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"));
      assertEquals(8, claimedSerialOfOwnerZ(mesh), "just below the refused serial 9");
    }
  }

  @Test
  @DisplayName("once a state refused on route arrives, the same peer's watermarks of that owner are adopted")
  void watermarkIsAdoptedOnceTheRefusedStateArrived() {
    try (TestMesh mesh = new TestMesh()) {
      RawPeer x = peerWhoseStateWasRefusedOnRoute(mesh);
      x.send(new Message.Routes(Map.of("owner-z", 1)));
      x.send(sync("c", "owner-z", 9, 9)); // now on the path: applied, the refusal made good
      x.send(new Message.Watermark("owner-z", 1, 10, false));
      mesh.settle();
      assertEquals(9.0, x(mesh, "c"));
      assertEquals(10, claimedSerialOfOwnerZ(mesh), "x's watermark was adopted");
    }
  }

  /** A state of owner-z, its x the serial. */
  private static Message.Sync syncOfZ(String key, long epoch, long serial, boolean deleted) {
    return new Message.Sync("Cursor", key, "owner-z", epoch, serial, 0, deleted,
        deleted ? JSON.createObjectNode() : JSON.valueToTree(new Cursor(key, serial, 0)));
  }

  @Test
  @DisplayName("a state refused on route stays missing when an older state of that key arrives: the watermark stays below the newest refused")
  void anOlderStateDoesNotMakeANewerRefusalGood() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer w = new RawPeer(mesh, "a", "w");
      w.send(hello("w", "owner-z")); // w owns owner-z: on its path
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x")); // not on owner-z's path
      x.send(syncOfZ("c", 1, 9, false));
      x.send(syncOfZ("c", 1, 12, false));
      w.send(syncOfZ("c", 1, 10, false));
      w.send(new Message.Watermark("owner-z", 1, 15, false));
      mesh.settle();
      assertEquals(10.0, x(mesh, "c"));
      assertEquals(11, claimedSerialOfOwnerZ(mesh), "serial 12 of c is still missing");
    }
  }

  @Test
  @DisplayName("a state refused on route over another owner's tombstone of the key keeps the watermark below it")
  void aRefusalOverAnotherOwnersTombstoneIsRemembered() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer y = new RawPeer(mesh, "a", "y");
      y.send(hello("y", "owner-y"));
      y.send(new Message.Sync("Cursor", "c", "owner-y", 5, 1, 0, true, JSON.createObjectNode()));
      RawPeer w = new RawPeer(mesh, "a", "w");
      w.send(hello("w", "owner-z"));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      x.send(syncOfZ("c", 1, 9, false)); // would replace owner-y's tombstone: refused on route
      w.send(new Message.Watermark("owner-z", 1, 10, false));
      mesh.settle();
      assertTrue(mesh.get("a").get(CURSOR, "c").orElseThrow().deleted());
      assertEquals(8, claimedSerialOfOwnerZ(mesh), "serial 9 of c is missing");
    }
  }

  @Test
  @DisplayName("removing an owner's epoch forgets its refused states of that epoch only")
  void anOwnerRemovalKeepsRefusalsOfALaterEpoch() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer w = new RawPeer(mesh, "a", "w");
      w.send(hello("w", "owner-z"));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      x.send(syncOfZ("c", 2, 5, false)); // refused on route
      w.send(new Message.OwnerRemoved("owner-z", 1));
      w.send(new Message.Watermark("owner-z", 2, 9, false));
      mesh.settle();
      assertEquals(4, claimedSerialOfOwnerZ(mesh), "serial 5 of epoch 2 is missing");
    }
  }

  @Test
  @DisplayName("a state taken for deleted (its sender was away while the tombstone was dropped) is not also refused on route: the watermark stays")
  void aStateTakenForDeletedIsNotRefusedOnRoute() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("z", b -> b.keepAlive(Duration.ZERO));
      mesh.node("a", b -> b.tombstoneRetention(Duration.ofMinutes(1)).keepAlive(Duration.ZERO));
      mesh.connect("a", "z");
      mesh.get("z").publish(new Cursor("gone", 1, 1)).block(); // serial 1
      mesh.get("z").publish(new Cursor("kept", 2, 2)).block(); // serial 2
      mesh.get("z").delete(CURSOR, "gone").block(); // serial 3
      mesh.advance(Duration.ofMinutes(3)); // a drops the tombstone after its retention
      assertEquals(3, claimedSerialOfOwnerZ(mesh));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x")); // not on owner-z's path
      x.send(new Message.CatchUp(List.of())); // remembers nothing: behind what a dropped
      x.send(sync("gone", "owner-z", 1, 1));
      mesh.settle();
      assertTrue(mesh.get("a").get(CURSOR, "gone").isEmpty());
      assertTrue(x.of(Message.Withdraw.class).stream().anyMatch(w -> w.key().equals("gone") && w.serial() == 1),
          "withdrawn, so that x drops it");
      assertEquals(3, claimedSerialOfOwnerZ(mesh), "no refusal holds a's watermark below serial 1");
    }
  }

  @Test
  @DisplayName("a full resync does not drop a key its sender sent but had refused on route: the sender holds it")
  void aFullResyncKeepsAKeyRefusedOnRoute() {
    try (TestMesh mesh = new TestMesh()) {
      RawPeer x = peerWhoseStateWasRefusedOnRoute(mesh); // c was in x's catch-up
      x.send(new Message.Routes(Map.of("owner-z", 1)));
      x.send(new Message.Watermark("owner-z", 1, 10, true)); // the end of x's full resync
      mesh.settle();
      assertEquals(1.0, x(mesh, "c"), "x sent c: it is not gone");
    }
  }

  @ParameterizedTest(name = "held before the refusal: {0}")
  @ValueSource(booleans = {true, false})
  @DisplayName("a full resync does not drop a key its sender sent but the listen policy refused, whether the node held it then or received it from another neighbour since: the sender holds it, so it is not gone")
  void aFullResyncKeepsAKeyThePolicyRefused(boolean heldBefore) {
    try (TestMesh mesh = new TestMesh()) {
      Policy refuseK2FromZ = new Policy() {
        @Override
        public boolean shouldListen(PeerId sender, Operation op, SyncType<?> type, ObjectKey key, OwnerId owner) {
          return !(sender.equals(PeerId.of("z")) && key.key().equals("k2"));
        }
      };
      mesh.node("a", b -> b.peerPolicy(refuseK2FromZ));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      x.send(new Message.CatchUp(List.of()));
      Runnable fromX = () -> {
        x.send(sync("k1", "owner-x", 1, 1));
        x.send(sync("k2", "owner-x", 2, 2));
        mesh.settle();
      };
      if (heldBefore) {
        fromX.run();
      }
      RawPeer z = new RawPeer(mesh, "a", "z");
      z.send(hello("z"));
      z.send(new Message.Routes(Map.of("owner-x", 1)));
      z.send(sync("k1", "owner-x", 1, 1));
      z.send(sync("k2", "owner-x", 2, 2)); // refused by a's policy
      mesh.settle();
      if (!heldBefore) {
        fromX.run();
      }
      z.send(new Message.Watermark("owner-x", 1, 2, true)); // the end of z's full resync of owner-x
      mesh.settle();
      assertEquals(List.of("UNAUTHORIZED"), z.of(Message.Error.class).stream().map(Message.Error::code).toList());
      assertEquals(1.0, x(mesh, "k1"));
      assertEquals(2.0, x(mesh, "k2"), "z sent k2: it is not gone");
    }
  }

  @Test
  @DisplayName("the peer's first watermark ends the record of what its catch-up sent, even when a refused state keeps the watermark from being adopted")
  void catchUpRecordEndsAtARefusedWatermark() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("z");
      mesh.connect("a", "z");
      mesh.get("z").publish(new Cursor("c", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(sync("c", "owner-z", 9, 9)); // before x's ROUTES names owner-z: refused
      peer.send(new Message.Routes(Map.of("owner-z", 1)));
      for (int i = 0; i < 10; i++) {
        peer.send(sync("k" + i, "owner-z", 10 + i, i));
      }
      // c, applied again once x's ROUTES put it on owner-z's path, and the ten states after it.
      assertEquals(11, mesh.get("a").engine.keysAwaitingWatermark(), "recorded until the watermark");
      peer.send(new Message.Watermark("owner-z", 1, 19, false));
      for (int i = 10; i < 20; i++) {
        peer.send(sync("k" + i, "owner-z", 10 + i, i));
      }
      assertEquals(19.0, mesh.get("a").get(CURSOR, "k19").orElseThrow().value().x());
      assertEquals(0, mesh.get("a").engine.keysAwaitingWatermark(), "the record ended with the watermark");
    }
  }

  @Test
  @DisplayName("the catch-up record is bounded by the objects the node holds (+ 4,096): past it, it is given up, and a full resync on that link drops nothing")
  void catchUpRecordIsBounded() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      RawPeer first = new RawPeer(mesh, "a", "x");
      first.send(hello("x", "owner-x"));
      first.send(sync("old", "owner-x", 1, 1));
      first.send(new Message.Watermark("owner-x", 1, 1, true));
      mesh.settle();
      RawPeer x = new RawPeer(mesh, "a", "x"); // replaces the first link: a new catch-up
      x.send(hello("x", "owner-x"));
      RawPeer y = new RawPeer(mesh, "a", "y");
      y.send(hello("y", "owner-q"));
      for (int i = 0; i <= 1 + Destination.CATCH_UP_RECORD_SLACK; i++) {
        x.send(sync("made-up-" + i, "owner-q", 1, i)); // x is off owner-q's path, through y: refused
      }
      mesh.settle();
      assertEquals(0, a.engine.keysAwaitingWatermark(), "given up, not grown");
      x.send(new Message.Watermark("owner-x", 1, 2, true)); // "old" not sent again: deleted?
      mesh.settle();
      assertEquals(1.0, x(mesh, "old"), "kept: the record that could tell was given up");
    }
  }

  @Test
  @DisplayName("watermarks of owners a peer neither speaks for nor sent a state of leave no record on its link")
  void watermarksOfOwnersNotSpokenForLeaveNoRecord() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.peerPolicy(new Policy() {
        @Override
        public boolean shouldAcceptRoute(PeerId neighbour, OwnerId owner) {
          return owner.equals(OwnerId.of("owner-x"));
        }
      }));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      for (int i = 0; i < 1_000; i++) {
        x.send(new Message.Watermark("made-up-" + i, 1, 1, false));
      }
      x.send(new Message.Watermark("owner-x", 1, 1, false));
      mesh.settle();
      assertEquals(1, a.engine.ownersCaughtUp(), "owner-x only");
    }
  }

  @Test
  @DisplayName("a full resync keeps a key whose refusal on route was evicted (past 4,096 kept) and that came from another neighbour since")
  void aFullResyncKeepsAKeyWhoseRefusalWasEvicted() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      RawPeer y = new RawPeer(mesh, "a", "y");
      y.send(hello("y", "owner-q"));
      int n = Destination.REFUSED_ON_ROUTE_KEPT + 4;
      for (int i = 0; i < n; i++) {
        x.send(sync("k" + i, "owner-q", i + 1, i)); // x off owner-q's path: refused, kept (oldest evicted)
      }
      y.send(sync("k0", "owner-q", 1, 0)); // y on the path: applied
      mesh.settle();
      assertEquals(0.0, x(mesh, "k0"));
      x.send(new Message.Routes(Map.of("owner-q", 1))); // x now on the path too
      x.send(new Message.Watermark("owner-q", 1, n, true)); // the end of x's full resync
      mesh.settle();
      assertEquals(0.0, x(mesh, "k0"), "x sent k0: it is not gone");
    }
  }

  @Test
  @DisplayName("a replayed old version is ignored and the sender is brought up to date")
  void replayIgnored() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(sync("c", "owner-x", 5, 5));
      peer.send(sync("c", "owner-x", 3, 3));
      assertEquals(5.0, mesh.get("a").get(CURSOR, "c").orElseThrow().value().x());
      assertTrue(peer.of(Message.Error.class).isEmpty());
      // a returns nothing for c: the owner's node already holds the newest version.
      assertTrue(peer.of(Message.Sync.class).isEmpty());
    }
  }

  @ParameterizedTest(name = "at {0}")
  @ValueSource(strings = {"owner", "r1", "r2"})
  @DisplayName("at every hop of a line, an impersonated owner gets BAD_OWNER and nothing changes anywhere")
  void impersonationRefusedAtEveryHop(String hop) {
    try (TestMesh mesh = ReplicationTest.line("owner", "r1", "r2")) {
      mesh.get("owner").publish(new Cursor("c", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, hop, "x");
      peer.send(hello("x", "owner-x"));
      peer.send(sync("c", "owner-owner", 99, 666));
      assertEquals("BAD_OWNER", peer.of(Message.Error.class).get(0).code());
      for (String n : List.of("owner", "r1", "r2")) {
        assertEquals(1.0, mesh.get(n).get(CURSOR, "c").orElseThrow().value().x(), n);
      }
    }
  }

  @Test
  @DisplayName("a replayed old version stops at the first hop: every node down the line keeps the newest")
  void replayIgnoredAtEveryHop() {
    try (TestMesh mesh = ReplicationTest.line("r1", "r2", "r3")) {
      RawPeer owner = new RawPeer(mesh, "r1", "x");
      owner.send(hello("x", "owner-x"));
      owner.send(sync("c", "owner-x", 5, 5));
      for (String n : List.of("r1", "r2", "r3")) {
        assertEquals(5.0, mesh.get(n).get(CURSOR, "c").orElseThrow().value().x(), n);
      }
      long framesBefore = mesh.get("r2").stats().framesReceived();
      owner.send(sync("c", "owner-x", 3, 3));
      for (String n : List.of("r1", "r2", "r3")) {
        assertEquals(5L, mesh.get(n).get(CURSOR, "c").orElseThrow().version().serial(), n);
      }
      assertEquals(framesBefore, mesh.get("r2").stats().framesReceived(), "the replay went no further");
    }
  }

  @Test
  @DisplayName("a frame before HELLO, an undecodable frame or an unknown type gets an ERROR and closes the link")
  void badInputClosesLink() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer early = new RawPeer(mesh, "a", "x");
      early.send(sync("c", "owner-x", 1, 1));
      assertEquals("INVALID_OPERATION", early.of(Message.Error.class).get(0).code());
      assertTrue(early.closed);

      RawPeer garbage = new RawPeer(mesh, "a", "y");
      garbage.send(hello("y", "owner-y"));
      garbage.sendRaw(new byte[] {3, (byte) 0xff, 0x00, 0x13});
      assertEquals("BAD_ENCODING", garbage.of(Message.Error.class).get(0).code());
      assertTrue(garbage.closed);

      RawPeer unknown = new RawPeer(mesh, "a", "z");
      unknown.send(hello("z", "owner-z"));
      unknown.sendRaw(new byte[] {(byte) 200, 0});
      assertEquals("BAD_ENCODING", unknown.of(Message.Error.class).get(0).code());
      assertTrue(unknown.closed);

      // The node keeps serving its other peers.
      mesh.node("b");
      mesh.connect("a", "b");
      mesh.get("a").publish(new Cursor("ok", 1, 1)).block();
      assertTrue(mesh.get("b").get(CURSOR, "ok").isPresent());
    }
  }

  private static final byte[] NOT_CBOR = {3, (byte) 0xff, 0x00, 0x13};

  @Test
  @DisplayName("a refused link gets its ERROR alone, what was queued for it is dropped, and its queued request fails over at once")
  void aRefusedLinkGetsItsErrorAloneAndIsPassedOver() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<byte[]> out = new ArrayList<>();
      ManualTransport transport = new ManualTransport(out::add);
      Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
      Link link = attachWithOneUnitLeft(mesh, a, transport, in);
      in.tryEmitNext(CODEC.encode(sync("theirs", "owner-x", 1, 1)));
      RawPeer y = caughtUpPeer(mesh, "y");
      y.send(new Message.Routes(Map.of("owner-x", 1)));
      mesh.settle();
      a.publish(new Cursor("k1", 1, 0)).block(); // takes the unit left over
      a.publish(new Cursor("k2", 2, 0)).block();
      a.propose(CURSOR, "theirs", new Cursor("theirs", 9, 9)).subscribe(o -> {}, e -> {});
      mesh.settle();
      assertEquals(List.of(), y.of(Message.Propose.class), "queued toward x, the shorter route");
      out.clear();

      in.tryEmitNext(NOT_CBOR);
      mesh.settle();
      assertEquals(1, y.of(Message.Propose.class).size(), "the request queued for x went through y");
      assertEquals(RouteTable.MAX_HOPS, lastRoutes(y).get("owner-x"), "a now reaches owner-x through y alone");
      transport.request(100);
      mesh.settle();
      List<Message> sent = out.stream().filter(f -> f.length > 0).map(CODEC::decode).toList();
      assertEquals(1, sent.size(), "the ERROR alone, not k2 nor the request: " + sent);
      assertEquals("BAD_ENCODING", assertInstanceOf(Message.Error.class, sent.get(0)).code());
      assertTrue(transport.completed, "the ERROR is the last frame");
      assertFalse(link.isDisposed(), "left to the transport, which closes once the ERROR is delivered");
    }
  }

  @ParameterizedTest(name = "transport asked for frames before: {0}")
  @ValueSource(booleans = {true, false})
  @DisplayName("a refused link whose transport does not take the ERROR is closed after the grace")
  void aRefusedLinkThatTakesNothingIsClosedAfterTheGrace(boolean asked) {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      ManualTransport transport = new ManualTransport(f -> {});
      Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
      Link link;
      if (asked) {
        link = attachWithOneUnitLeft(mesh, a, transport, in);
        a.publish(new Cursor("k1", 1, 0)).block(); // takes the unit left over: none is asked for after it
      } else {
        link = manualLink(in, transport);
        a.attach(link).subscribe();
        in.tryEmitNext(CODEC.encode(hello("x", "owner-x")));
      }
      mesh.settle();
      int framesOut = transport.framesOut;
      in.tryEmitNext(NOT_CBOR);
      mesh.advance(Engine.CLOSE_GRACE.minusMillis(1));
      assertFalse(link.isDisposed());
      mesh.advance(Duration.ofMillis(1));
      assertTrue(link.isDisposed(), "closed without its ERROR");
      assertEquals(framesOut, transport.framesOut);
      assertFalse(a.isConnected(PeerId.of("x")));
    }
  }

  @Test
  @DisplayName("a key or an owner id that no store could keep (too long, or with U+0000) is refused as BAD_ENCODING, and never stored")
  void unstorableNamesAreRefused() {
    try (TestMesh mesh = new TestMesh()) {
      dev.entanglement.store.InMemoryStateStore store = new dev.entanglement.store.InMemoryStateStore();
      EntanglementNode a = mesh.node("a", b -> b.store(store));
      a.start().block();
      String longKey = "k".repeat(ObjectKey.MAX_KEY_LENGTH + 1);
      String longOwner = "o".repeat(OwnerId.MAX_LENGTH + 1);
      List<Message.Sync> bad = List.of(
          sync(longKey, "owner-x", 1, 1),
          sync("nul\u0000key", "owner-x", 1, 1),
          new Message.Sync("Cursor", "c", longOwner, 1, 1, 0, false, JSON.valueToTree(new Cursor("c", 1, 1))),
          new Message.Sync("Cursor", "c", "owner\u0000x", 1, 1, 0, false, JSON.valueToTree(new Cursor("c", 1, 1))));
      for (Message.Sync s : bad) {
        RawPeer x = new RawPeer(mesh, "a", "x");
        x.send(hello("x", "owner-x"));
        x.send(s);
        mesh.settle();
        assertEquals(List.of("BAD_ENCODING"), x.of(Message.Error.class).stream().map(Message.Error::code).toList());
        assertTrue(x.closed);
      }
      assertTrue(store.load().block().objects().isEmpty(), "nothing of them stored");
      RawPeer ok = new RawPeer(mesh, "a", "y");
      ok.send(hello("y", "owner-y"));
      ok.send(sync("k".repeat(ObjectKey.MAX_KEY_LENGTH), "owner-y", 1, 1));
      mesh.settle();
      assertEquals(1.0, x(mesh, "k".repeat(ObjectKey.MAX_KEY_LENGTH)), "the longest key is kept");
      assertThrows(IllegalArgumentException.class, () -> a.publish(new Cursor(longKey, 1, 1)).block());
    }
  }

  @Test
  @DisplayName("a key deleted by one owner and recreated by another: a peer that held the first owner's newer-looking tombstone still gets the new state")
  void heldVersionsOfAnotherOwnerDoNotCount() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer owners = new RawPeer(mesh, "a", "x");
      owners.send(new Message.Hello(FrameCodec.PROTOCOL_VERSION, "x",
          List.of(new Message.OwnerAd("owner-1", 100), new Message.OwnerAd("owner-2", 50)), 0));
      owners.send(new Message.CatchUp(List.of()));
      RawPeer watcher = new RawPeer(mesh, "a", "y");
      watcher.send(hello("y"));
      watcher.send(new Message.CatchUp(List.of()));
      ObjectNode attrs = JSON.valueToTree(new Cursor("k", 1, 0));
      owners.send(new Message.Sync("Cursor", "k", "owner-1", 100, 1, 0, false, attrs));
      owners.send(new Message.Sync("Cursor", "k", "owner-1", 100, 2, 0, true, JSON.createObjectNode()));
      mesh.settle();
      assertEquals(List.of(1L, 2L), syncSerials(watcher, "k"), "y holds owner-1's tombstone (100, 2)");
      // owner-2 creates the key anew, in an epoch lower than owner-1's.
      owners.send(new Message.Sync("Cursor", "k", "owner-2", 50, 1, 0, false, JSON.valueToTree(new Cursor("k", 7, 0))));
      mesh.settle();
      assertEquals(7.0, x(mesh, "k"));
      List<Message.Sync> toY = watcher.of(Message.Sync.class);
      Message.Sync last = toY.get(toY.size() - 1);
      assertEquals(List.of("owner-2", 1L), List.of(last.owner(), last.serial()), "y is sent owner-2's state");
    }
  }

  @Test
  @DisplayName("a HELLO with another protocol version is refused")
  void versionMismatch() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(new Message.Hello(FrameCodec.PROTOCOL_VERSION + 1, "x", List.of(), 0));
      assertEquals("INVALID_OPERATION", peer.of(Message.Error.class).get(0).code());
      assertTrue(peer.closed);
    }
  }

  @Test
  @DisplayName("an unknown type in a state is answered with UNKNOWN_TYPE; a PING with a PONG")
  void unknownTypeAndPing() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(new Message.Sync("Nope", "k", "owner-x", 1, 1, 0, false, JSON.createObjectNode()));
      assertEquals("UNKNOWN_TYPE", peer.of(Message.Error.class).get(0).code());
      peer.send(new Message.Ping(42));
      assertEquals(42, peer.of(Message.Pong.class).get(0).nonce());
      assertTrue(!peer.closed);
    }
  }

  @Test
  @DisplayName("a create of a type the owner does not know is rejected UNKNOWN_TYPE, directly and across a relay that does not know it either; the links go on")
  void aRequestOfAnUnknownTypeIsRejected() {
    Registry cursorsOnly = Registry.builder("cursors").type(CURSOR).build();
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("r", cursorsOnly, b -> {});
      mesh.node("b", cursorsOnly, b -> {});
      mesh.connect("a", "r");
      mesh.connect("r", "b");
      mesh.settle();
      TestMesh.Shape shape = new TestMesh.Shape("s", "red", 1, 1, false);
      Outcome<TestMesh.Shape> viaRelay = mesh.get("a").create(TestMesh.SHAPE, OwnerId.of("owner-b"), shape).block();
      assertEquals(ErrorCode.UNKNOWN_TYPE, assertInstanceOf(Outcome.Rejected.class, viaRelay).code());
      Outcome<TestMesh.Shape> direct = mesh.get("a").create(TestMesh.SHAPE, OwnerId.of("owner-r"), shape).block();
      assertEquals(ErrorCode.UNKNOWN_TYPE, assertInstanceOf(Outcome.Rejected.class, direct).code());
      mesh.get("b").publish(new Cursor("c", 1, 1)).block();
      mesh.settle();
      assertTrue(mesh.get("a").get(CURSOR, "c").isPresent(), "the links still carry what both know");
      for (String n : List.of("a", "r", "b")) {
        assertEquals(0, mesh.get(n).statsConsistent().block().pendingRequests(), n);
      }
    }
  }

  @Test
  @DisplayName("a neighbour cannot remove one of this node's own owners: BAD_OWNER, nothing dropped, the link stays")
  void aPeerCannotRemoveALocalOwner() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(new Message.OwnerRemoved("owner-a", 1));
      assertEquals("BAD_OWNER", peer.of(Message.Error.class).get(0).code());
      assertFalse(peer.closed);
      assertFalse(mesh.get("a").get(CURSOR, "c").orElseThrow().deleted());
      assertTrue(mesh.get("a").publish(new Cursor("c", 2, 2)).block().value().x() == 2);
    }
  }

  @Test
  @DisplayName("a proposal answered by the node carries the request id back")
  void responseCarriesRequestId() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(new Message.Propose(77, Message.ProposalKind.UPDATE, "Cursor", "c", "owner-a", true,
          JSON.valueToTree(Map.of("x", 4.0)), null, 0));
      Message.Response r = peer.of(Message.Response.class).get(0);
      assertEquals(77, r.inReplyTo());
      assertEquals(4.0, r.state().attributes().get("x").asDouble());
      peer.send(new Message.Propose(78, Message.ProposalKind.UPDATE, "Cursor", "missing", "owner-a", true,
          JSON.valueToTree(Map.of("x", 4.0)), null, 0));
      Message.Error e = peer.of(Message.Error.class).get(0);
      assertEquals(78, e.inReplyTo());
      assertEquals("NOT_FOUND", e.code());
    }
  }

  /**
   * A transport that asks for frames only as the test decides ({@code request}), counts what it is
   * handed (markers included) and passes each frame to {@code onFrame}.
   */
  private static final class ManualTransport extends reactor.core.publisher.BaseSubscriber<byte[]> {
    private final java.util.function.Consumer<byte[]> onFrame;
    int framesOut;
    boolean completed;
    Throwable error;

    ManualTransport(java.util.function.Consumer<byte[]> onFrame) {
      this.onFrame = onFrame;
    }

    @Override
    protected void hookOnSubscribe(org.reactivestreams.Subscription s) {
      // frames only as the test asks for them
    }

    @Override
    protected void hookOnNext(byte[] frame) {
      framesOut++;
      onFrame.accept(frame);
    }

    @Override
    protected void hookOnComplete() {
      completed = true;
    }

    @Override
    protected void hookOnError(Throwable t) {
      error = t;
    }

    /** The node's subscription, which can also count bytes. */
    dev.entanglement.transport.FrameSubscription frames() {
      return (dev.entanglement.transport.FrameSubscription) upstream();
    }
  }

  /** The key of {@code frame} if it is a SYNC (not a marker, not another message), or null. */
  private static String syncKey(byte[] frame) {
    return frame.length > 0 && CODEC.decode(frame) instanceof Message.Sync sync ? sync.key() : null;
  }

  /**
   * Attaches to {@code a} a link from "x" whose outbound frames go to {@code transport}; completes
   * the handshake, and takes its frames one at a time until one unit of demand is left over.
   */
  private static Link attachWithOneUnitLeft(TestMesh mesh, EntanglementNode a, ManualTransport transport) {
    return attachWithOneUnitLeft(mesh, a, transport, Sinks.many().unicast().onBackpressureBuffer());
  }

  /** As above, with the frames from "x" coming from {@code in}; returns the link. */
  private static Link attachWithOneUnitLeft(
      TestMesh mesh, EntanglementNode a, ManualTransport transport, Sinks.Many<byte[]> in) {
    Link link = manualLink(in, transport);
    a.attach(link).subscribe();
    in.tryEmitNext(CODEC.encode(hello("x", "owner-x")));
    in.tryEmitNext(CODEC.encode(new Message.CatchUp(List.of())));
    mesh.settle();
    for (int i = 0; i < 100; i++) {
      int before = transport.framesOut;
      transport.request(1);
      mesh.settle();
      if (transport.framesOut == before) {
        break;
      }
    }
    return link;
  }

  private static dev.entanglement.transport.Link manualLink(
      Sinks.Many<byte[]> in, org.reactivestreams.Subscriber<byte[]> transport) {
    return manualLink("x", in, transport);
  }

  private static dev.entanglement.transport.Link manualLink(
      String remote, Sinks.Many<byte[]> in, org.reactivestreams.Subscriber<byte[]> transport) {
    Sinks.Empty<Void> closed = Sinks.empty();
    return new dev.entanglement.transport.Link() {
      public PeerId remote() {
        return PeerId.of(remote);
      }

      public reactor.core.publisher.Flux<byte[]> receive() {
        return in.asFlux();
      }

      public reactor.core.publisher.Mono<Void> send(org.reactivestreams.Publisher<byte[]> f) {
        return reactor.core.publisher.Mono.fromRunnable(() -> f.subscribe(transport));
      }

      public reactor.core.publisher.Mono<Void> onClose() {
        return closed.asMono();
      }

      public void dispose() {
        closed.tryEmitEmpty();
      }

      public boolean isDisposed() {
        return Boolean.TRUE.equals(closed.scan(reactor.core.Scannable.Attr.TERMINATED));
      }
    };
  }

  @Test
  @DisplayName("a closing node sends what was queued for a link, then GOAWAY as its last frame and completes its frames; close() waits for the link, and a request queued toward an owner fails NOT_CONNECTED")
  void closingSendsGoAwayAsTheLastFrame() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<byte[]> out = new ArrayList<>();
      ManualTransport transport = new ManualTransport(out::add);
      Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
      Link link = attachWithOneUnitLeft(mesh, a, transport, in);
      in.tryEmitNext(CODEC.encode(sync("theirs", "owner-x", 1, 1)));
      mesh.settle();
      a.publish(new Cursor("k1", 1, 0)).block(); // takes the unit left over
      a.publish(new Cursor("k2", 2, 0)).block();
      a.publish(new Cursor("k3", 3, 0)).block();
      java.util.concurrent.atomic.AtomicReference<Throwable> proposal =
          new java.util.concurrent.atomic.AtomicReference<>();
      a.propose(CURSOR, "theirs", new Cursor("theirs", 9, 9)).subscribe(o -> {}, proposal::set);
      mesh.settle();
      out.clear();

      java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
      a.close().subscribe(null, e -> {}, () -> closed.set(true));
      mesh.settle();
      EntanglementException failure = assertInstanceOf(EntanglementException.class, proposal.get());
      assertEquals(ErrorCode.NOT_CONNECTED, failure.code());
      assertFalse(closed.get(), "close() waits for the link to close");
      assertFalse(link.isDisposed(), "the link stays open to flush its last frames");

      transport.request(100);
      mesh.settle();
      List<Message> sent = out.stream().filter(f -> f.length > 0).map(CODEC::decode).toList();
      assertEquals(List.of("k2", "k3"),
          sent.stream().filter(m -> m instanceof Message.Sync).map(m -> ((Message.Sync) m).key()).toList());
      Message.GoAway bye = assertInstanceOf(Message.GoAway.class, sent.get(sent.size() - 1));
      assertEquals(Engine.GOAWAY_SHUTDOWN, bye.code());
      assertEquals(1, sent.stream().filter(m -> m instanceof Message.GoAway).count());
      assertTrue(transport.completed, "the frames complete after the GOAWAY: the transport closes");

      a.publish(new Cursor("k4", 4, 0)).subscribe(v -> {}, e -> {});
      mesh.settle();
      assertEquals(sent.size(), out.stream().filter(f -> f.length > 0).count(), "nothing after GOAWAY");
      mesh.advance(Engine.CLOSE_GRACE);
      assertFalse(link.isDisposed(), "frames completed: the transport closes the link, the grace does not cut it");
      assertFalse(closed.get());
      link.dispose(); // as a transport does once the last frame is flushed
      mesh.settle();
      assertTrue(closed.get(), "close() completes once the link is closed");
    }
  }

  @Test
  @DisplayName("after a peer's GOAWAY nothing more is sent to it, and the link closes when the peer ends it")
  void aGoAwayEndsSendingAndThePeersEndClosesTheLink() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      RawPeer x = peerThatSaysGoAway(mesh);
      int received = x.received.size();
      a.publish(new Cursor("k1", 1, 0)).block();
      mesh.settle();
      assertFalse(x.closed, "the link waits for the peer to end it");
      assertEquals(received, x.received.size(), "nothing is sent after the peer's GOAWAY");
      x.out.tryEmitComplete();
      mesh.settle();
      assertTrue(x.closed);
      assertFalse(a.isConnected(PeerId.of("x")));
    }
  }

  @Test
  @DisplayName("once the only neighbour on an owner's path says GOAWAY, a state of that owner refused from another neighbour as off the path is taken")
  void aLeavingPeerNoLongerHoldsThePath() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      RawPeer x = caughtUpPeer(mesh, "x", "owner-x");
      RawPeer y = caughtUpPeer(mesh, "y");
      y.send(sync("c", "owner-x", 1, 1));
      mesh.settle();
      assertTrue(a.get(CURSOR, "c").isEmpty(), "refused: x alone is on owner-x's path");
      x.send(new Message.GoAway("SHUTDOWN", "node x is closing"));
      mesh.settle();
      assertEquals(1.0, a.get(CURSOR, "c").orElseThrow().value().x(), "taken before x's link closes");
      assertTrue(a.isConnected(PeerId.of("x")));
    }
  }

  @Test
  @DisplayName("what a peer sends after its GOAWAY, its last frame, is dropped, and the link still waits for the peer to end it")
  void framesAfterAGoAwayAreDropped() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      RawPeer x = peerThatSaysGoAway(mesh);
      long received = a.stats().framesReceived();
      x.send(sync("c", "owner-x", 1, 1));
      x.send(new Message.Ping(7));
      mesh.settle();
      assertTrue(a.get(CURSOR, "c").isEmpty(), "not applied");
      assertEquals(List.of(), x.of(Message.Pong.class), "not answered");
      assertEquals(received, a.stats().framesReceived());
      assertFalse(x.closed);
      x.out.tryEmitComplete();
      mesh.settle();
      assertTrue(x.closed);
    }
  }

  @Test
  @DisplayName("a peer that says GOAWAY and does not end its link has it closed after the grace")
  void aPeerThatSaysGoAwayAndStaysIsClosedAfterTheGrace() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      RawPeer x = peerThatSaysGoAway(mesh);
      mesh.advance(Engine.CLOSE_GRACE.minusMillis(1));
      assertFalse(x.closed);
      mesh.advance(Duration.ofMillis(1));
      assertTrue(x.closed, "closed after the grace");
      assertFalse(a.isConnected(PeerId.of("x")));
    }
  }

  @Test
  @DisplayName("a node that closes while a peer is leaving closes that link at once, without waiting for the grace")
  void closingWhileAPeerIsLeavingClosesItsLinkAtOnce() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      RawPeer x = peerThatSaysGoAway(mesh);
      java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
      a.close().subscribe(null, e -> {}, () -> closed.set(true));
      mesh.settle();
      assertTrue(x.closed);
      assertTrue(closed.get(), "close() did not wait for the leaving peer");
    }
  }

  @Test
  @DisplayName("once a peer says GOAWAY, a request awaiting its answer fails and new requests and routes pass it over, before its link closes")
  void aLeavingPeerIsPassedOverAtOnce() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      RawPeer x = caughtUpPeer(mesh, "x", "owner-x");
      x.send(sync("c", "owner-x", 1, 1));
      RawPeer y = caughtUpPeer(mesh, "y");
      y.send(new Message.Routes(Map.of("owner-x", 1)));
      mesh.settle();
      java.util.concurrent.atomic.AtomicReference<Throwable> sentBefore =
          new java.util.concurrent.atomic.AtomicReference<>();
      a.propose(CURSOR, "c", new Cursor("c", 2, 0)).subscribe(o -> {}, sentBefore::set);
      mesh.settle();
      assertEquals(1, x.of(Message.Propose.class).size(), "the shorter route, through x");
      assertEquals(1, lastRoutes(y).get("owner-x"), "y learns that a reaches owner-x");

      x.send(new Message.GoAway("SHUTDOWN", "node x is closing"));
      mesh.settle();
      EntanglementException failure = assertInstanceOf(EntanglementException.class, sentBefore.get(),
          "no answer can follow the GOAWAY");
      assertEquals(ErrorCode.NOT_CONNECTED, failure.code());
      assertEquals(RouteTable.MAX_HOPS, lastRoutes(y).get("owner-x"), "a now reaches owner-x through y alone");
      a.propose(CURSOR, "c", new Cursor("c", 3, 0)).subscribe(o -> {}, e -> {});
      mesh.settle();
      assertEquals(1, y.of(Message.Propose.class).size(), "the new request goes through y at once");
      assertEquals(1, x.of(Message.Propose.class).size());
      assertFalse(x.closed, "the link still waits for x to end it");
      assertTrue(a.isConnected(PeerId.of("x")));
    }
  }

  private static Map<String, Integer> lastRoutes(RawPeer peer) {
    List<Message.Routes> routes = peer.of(Message.Routes.class);
    return routes.get(routes.size() - 1).hops();
  }

  /** A raw peer {@code name} of node "a" that said HELLO, owning {@code owners}, and CATCH_UP; settled. */
  private static RawPeer caughtUpPeer(TestMesh mesh, String name, String... owners) {
    RawPeer peer = new RawPeer(mesh, "a", name);
    peer.send(hello(name, owners));
    peer.send(new Message.CatchUp(List.of()));
    mesh.settle();
    return peer;
  }

  /** A raw peer "x" of node "a" that says HELLO and CATCH_UP, then GOAWAY; settled. */
  private static RawPeer peerThatSaysGoAway(TestMesh mesh) {
    RawPeer x = caughtUpPeer(mesh, "x", "owner-x");
    assertTrue(mesh.get("a").isConnected(PeerId.of("x")));
    x.send(new Message.GoAway("SHUTDOWN", "node x is closing"));
    mesh.settle();
    return x;
  }

  @ParameterizedTest
  @ValueSource(longs = {0, -1, Long.MIN_VALUE})
  @DisplayName("a transport that requests n <= 0 frames gets onError(IllegalArgumentException) (Reactive Streams §3.9), and its link closes")
  void aNonPositiveRequestIsAnError(long n) {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<byte[]> out = new ArrayList<>();
      ManualTransport transport = new ManualTransport(out::add);
      Link link = attachWithOneUnitLeft(mesh, a, transport);
      transport.frames().request(n); // past BaseSubscriber.request, which drops such a request
      mesh.settle();
      assertInstanceOf(IllegalArgumentException.class, transport.error);
      assertTrue(link.isDisposed());
      a.publish(new Cursor("k1", 1, 0)).block();
      mesh.settle();
      assertTrue(out.stream().noneMatch(f -> f.length > 0 && CODEC.decode(f) instanceof Message.Sync),
          "nothing after the error");
    }
  }

  @Test
  @DisplayName("a closing node's link that takes no frames is closed after the grace, and close() completes")
  void aLinkThatTakesNoGoAwayIsClosedAfterTheGrace() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<byte[]> out = new ArrayList<>();
      ManualTransport transport = new ManualTransport(out::add);
      Link link = attachWithOneUnitLeft(mesh, a, transport);
      a.publish(new Cursor("k1", 1, 0)).block();
      a.publish(new Cursor("k2", 2, 0)).block();
      mesh.settle();

      java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
      a.close().subscribe(null, e -> {}, () -> closed.set(true));
      mesh.advance(Engine.CLOSE_GRACE.minusMillis(1));
      assertFalse(link.isDisposed());
      assertFalse(closed.get());
      mesh.advance(Duration.ofMillis(1));
      assertTrue(link.isDisposed(), "closed after the grace");
      assertTrue(closed.get());
      assertFalse(transport.completed);
    }
  }

  @Test
  @DisplayName("a run of frames ends with END_OF_BURST while demand is left, or once demand comes back; the marker is no frame and is not counted")
  void runsEndWithAMarkerWhileDemandIsLeft() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<byte[]> out = new ArrayList<>();
      ManualTransport transport = new ManualTransport(out::add);
      attachWithOneUnitLeft(mesh, a, transport);
      for (int i = 0; i < out.size(); i++) {
        assertTrue(out.get(i).length > 0 || i > 0 && out.get(i - 1).length > 0,
            "a marker only ends a run of frames: " + i);
      }

      out.clear();
      a.publish(new Cursor("k1", 1, 0)).block(); // takes the unit left over
      mesh.settle();
      assertEquals(1, out.size(), "a frame that takes the last unit is followed by no marker yet");
      assertInstanceOf(Message.Sync.class, CODEC.decode(out.get(0)));

      // A transport counts demand when it asks for it, and so may have asked before that frame
      // reached it: it may be holding the frame for its marker, which must come with the demand.
      transport.request(10);
      mesh.settle();
      assertEquals(2, out.size(), "the demand that comes back ends the open run at once");
      assertEquals(0, out.get(1).length);
      transport.request(1);
      mesh.settle();
      assertEquals(2, out.size(), "and only that run: no marker without a frame before it");
      out.clear();
      long framesBefore = a.stats().framesSent();
      long bytesBefore = a.stats().bytesSent();
      a.publish(new Cursor("k2", 2, 0)).block();
      mesh.settle();
      assertEquals(2, out.size(), "the SYNC, then the marker: demand is left");
      assertEquals("k2", ((Message.Sync) CODEC.decode(out.get(0))).key());
      assertEquals(0, out.get(1).length);
      assertEquals(1, a.stats().framesSent() - framesBefore, "the marker is not a frame sent");
      assertEquals(out.get(0).length, a.stats().bytesSent() - bytesBefore);
    }
  }

  private static List<Long> syncSerials(RawPeer peer, String key) {
    return peer.of(Message.Sync.class).stream().filter(s -> s.key().equals(key)).map(Message.Sync::serial).toList();
  }

  @Test
  @DisplayName("changes committed while tasks wait behind them leave at the end of the turn: coalesced, and none left behind")
  void changesBehindABacklogLeaveAtTheEndOfTheTurn() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      EntanglementNode a = mesh.get("a");
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(new Message.CatchUp(List.of()));
      mesh.settle();
      // The watcher runs within the engine's task that commits "trigger": every publish it makes
      // is queued behind that task, so each of them runs with more tasks waiting behind it.
      a.watch(CURSOR, "trigger").take(1).subscribe(t -> {
        a.publish(new Cursor("c", 1, 0)).subscribe();
        a.publish(new Cursor("c", 2, 0)).subscribe();
        for (int i = 0; i < 50; i++) {
          a.publish(new Cursor("k" + i, i, 0)).subscribe();
        }
      });
      a.publish(new Cursor("trigger", 0, 0)).block();
      mesh.settle();

      List<Message.Sync> c = peer.of(Message.Sync.class).stream().filter(s -> s.key().equals("c")).toList();
      assertEquals(1, c.size(), "the two versions of c coalesced in the link's queue: " + c);
      assertEquals(2.0, c.get(0).attributes().get("x").asDouble(), "the later version");
      for (int i = 0; i < 50; i++) {
        assertEquals(1, syncSerials(peer, "k" + i).size(), "k" + i);
      }
      assertEquals(1, syncSerials(peer, "trigger").size());
    }
  }

  @Test
  @DisplayName("demand that comes back while commits wait ends the open run at once, and is served at the end of the turn, in one run: within one batch, not behind the whole backlog")
  void demandIsServedAtTheEndOfTheTurn() {
    int backlog = 2 * SerialExecutor.DEFAULT_BATCH + 50; // three turns of commits
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<String> log = new ArrayList<>();
      ManualTransport transport = new ManualTransport(frame -> {
        String key = syncKey(frame);
        if (key != null) {
          log.add("sent " + key);
        } else if (frame.length == 0) {
          log.add("marker");
        }
      });
      attachWithOneUnitLeft(mesh, a, transport);
      a.watchAll(CURSOR).subscribe(s -> {
        log.add("commit " + s.key().key());
        if (s.key().key().equals("k24")) {
          transport.request(5); // as a transport asks for more halfway through a turn
        }
      });
      a.watch(CURSOR, "trigger").take(1).subscribe(t -> {
        for (int i = 0; i < backlog; i++) {
          a.publish(new Cursor("k" + i, i, 0)).subscribe();
        }
      });
      a.publish(new Cursor("trigger", 0, 0)).block(); // takes the unit of demand left over
      mesh.settle();

      // The unit left over sent "trigger" with none left to end its run: the transport may hold
      // that frame until a marker, so the demand that comes back ends the run at once.
      int requested = log.indexOf("commit k24");
      assertEquals("marker", log.get(requested + 1),
          "the open run ended as the demand came back, not at the end of the turn: " + log.subList(requested, requested + 3));
      assertEquals(List.of("sent trigger", "sent k0", "sent k1", "sent k2", "sent k3"),
          log.stream().filter(e -> e.startsWith("sent")).toList(), "the other four units of demand, in order");
      int first = log.indexOf("sent k0");
      String around = "sent k0 after " + log.get(first - 1) + ", before " + log.get(first + 4);
      assertEquals(log.indexOf("sent k3"), first + 3, "the four frames left as one run");
      assertTrue(log.indexOf("commit k25") < first,
          "the demand did not drain the link at once, in the middle of the turn: " + around);
      assertTrue(first < log.indexOf("commit k" + SerialExecutor.DEFAULT_BATCH),
          "but at the end of that turn, within one batch of tasks, not behind the backlog: " + around);
      assertEquals(backlog + 1, log.stream().filter(e -> e.startsWith("commit")).count());
    }
  }

  @Test
  @DisplayName("a transport that counts bytes is handed frames only while its bytes allow: the frame that crosses the line goes whole, and bytes given back after it resume the flow by as much")
  void byteDemandBoundsWhatATransportIsHanded() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<String> log = new ArrayList<>();
      List<Integer> sizes = new ArrayList<>();
      ManualTransport transport = new ManualTransport(frame -> {
        String key = syncKey(frame);
        if (key != null) {
          log.add(key);
          sizes.add(frame.length);
        } else if (frame.length == 0) {
          log.add("marker");
        }
      });
      attachWithOneUnitLeft(mesh, a, transport);
      dev.entanglement.transport.FrameSubscription bytes = transport.frames();
      bytes.request(0, 1); // bytes are counted from now on
      mesh.settle();
      log.clear(); // a marker may end the handshake's last run
      for (int i = 0; i < 10; i++) {
        a.publish(new Cursor("k" + i, i, 0)).block(Duration.ofSeconds(5));
      }
      mesh.settle();
      assertEquals(List.of("k0"), log, "one byte allows the frame that crosses the line, whole");

      transport.request(100);
      mesh.settle();
      assertEquals(List.of("k0", "marker"), log, "frames are not enough: the bytes are spent");

      bytes.request(0, 1); // still below zero: nothing
      mesh.settle();
      assertEquals(List.of("k0", "marker"), log, "one byte given back does not cover what k0 crossed by");

      bytes.request(0, sizes.get(0) - 1); // back to one byte
      mesh.settle();
      assertEquals(List.of("k0", "marker", "k1", "marker"), log);

      bytes.request(0, Long.MAX_VALUE); // saturates
      mesh.settle();
      assertEquals(10, log.stream().filter(e -> e.startsWith("k")).count(), log.toString());
      bytes.request(0, 1);
      a.publish(new Cursor("k0", 5, 0)).block(Duration.ofSeconds(5));
      mesh.settle();
      assertEquals(11, log.stream().filter(e -> e.startsWith("k")).count(), "no overflow: " + log);
    }
  }

  @Test
  @DisplayName("a transport that throws from onNext loses its link, not the change: the other links get it and the publisher is told it took effect")
  void aThrowingTransportLosesItsLinkNotTheChange() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      java.util.concurrent.atomic.AtomicBoolean armed = new java.util.concurrent.atomic.AtomicBoolean();
      java.util.concurrent.atomic.AtomicReference<org.reactivestreams.Subscription> subscription =
          new java.util.concurrent.atomic.AtomicReference<>();
      // Not a BaseSubscriber, which would catch what its hook throws and cancel.
      org.reactivestreams.Subscriber<byte[]> throwing = new org.reactivestreams.Subscriber<>() {
        @Override
        public void onSubscribe(org.reactivestreams.Subscription s) {
          subscription.set(s);
        }

        @Override
        public void onNext(byte[] frame) {
          if (armed.get() && syncKey(frame) != null) {
            throw new IllegalStateException("a buggy transport");
          }
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onComplete() {}
      };
      Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
      boolean[] closed = {false};
      dev.entanglement.transport.Link link = manualLink(in, throwing);
      link.onClose().subscribe(v -> {}, e -> {}, () -> closed[0] = true);
      a.attach(link).subscribe(); // first in the loop over the links
      in.tryEmitNext(CODEC.encode(hello("x", "owner-x")));
      in.tryEmitNext(CODEC.encode(new Message.CatchUp(List.of())));
      mesh.settle();
      subscription.get().request(Long.MAX_VALUE);
      RawPeer peer = new RawPeer(mesh, "a", "y");
      peer.send(hello("y", "owner-y"));
      peer.send(new Message.CatchUp(List.of()));
      mesh.settle();
      long failedBefore = a.stats().tasksFailed();

      armed.set(true);
      Snapshot<Cursor> committed = a.publish(new Cursor("k", 1, 0)).block(Duration.ofSeconds(5));
      mesh.settle();
      assertEquals(1.0, committed.value().x(), "the publisher was told the change took effect");
      assertEquals(1.0, x(mesh, "k"));
      assertEquals(List.of(1L), syncSerials(peer, "k"), "the other link was sent it");
      assertTrue(closed[0], "the throwing transport's link was closed");
      assertEquals(failedBefore + 1, a.stats().tasksFailed(), "and the failure counted");
      assertEquals(List.of(PeerId.of("y")), a.stats().peers().stream().map(PeerStats::peer).toList());
    }
  }

  @Test
  @DisplayName("a burst held for its marker is handled when a new link from the same peer replaces the link (review, session 30)")
  void aHeldBurstIsHandledWhenTheLinkIsReplaced() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      BurstLink old = new BurstLink(mesh, "a");
      old.send(hello("x", "owner-x"));
      old.endBurst();
      old.send(sync("c", "owner-x", 1, 1)); // received; its marker is late
      mesh.settle();
      assertNull(x(mesh, "c"), "held for the marker");
      BurstLink replacement = new BurstLink(mesh, "a"); // the same peer "x": replaces the old link
      replacement.send(hello("x", "owner-x"));
      mesh.settle();
      assertTrue(old.isDisposed());
      assertEquals(1.0, x(mesh, "c"), "a frame the node received is handled, not lost with its link");
    }
  }

  @Test
  @DisplayName("a link's queue gives its index back on the engine's tick once a backlog has drained, not while it is pending")
  void aDrainedBacklogGivesItsIndexBack() {
    int backlog = CoalescingQueue.RETAINED_INDEX + 1_000;
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      List<String> sent = new ArrayList<>();
      ManualTransport transport = new ManualTransport(frame -> {
        String key = syncKey(frame);
        if (key != null) {
          sent.add(key);
        }
      });
      attachWithOneUnitLeft(mesh, a, transport);
      for (int i = 0; i < backlog; i++) {
        a.publish(new Cursor("k" + i, i, 0)).subscribe();
      }
      mesh.settle();
      mesh.advance(Duration.ofSeconds(3));
      assertEquals(1, sent.size(), "one unit of demand: the rest waits in the link's queue");
      assertEquals(0, a.engine.queueIndexRebuilds(), "a pending backlog keeps its index");

      transport.request(Long.MAX_VALUE);
      mesh.settle();
      assertEquals(backlog, sent.size(), "every object sent once, the backlog drained");
      assertEquals(0, a.engine.queueIndexRebuilds(), "not on the poll that emptied the queue");
      mesh.advance(Duration.ofSeconds(3));
      assertEquals(1, a.engine.queueIndexRebuilds(), "the tick gave the drained backlog's index back");

      a.publish(new Cursor("k0", -1, 0)).block();
      mesh.settle();
      assertEquals("k0", sent.get(sent.size() - 1), "the link still sends");
    }
  }

  @Test
  @DisplayName("a RESPONSE to no request of the node's is checked but never bound: neither the policy nor the type's deserializer runs for it")
  void unsolicitedResponseIsNotBound() {
    try (TestMesh mesh = new TestMesh()) {
      List<String> listened = new ArrayList<>();
      mesh.node("a", b -> b.peerPolicy(new Policy() {
        @Override
        public boolean shouldListen(PeerId sender, Operation op, SyncType<?> type, ObjectKey key, OwnerId owner) {
          listened.add(key.key());
          return true;
        }
      }));
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(new Message.CatchUp(List.of()));
      mesh.settle();

      peer.sendRaw(CODEC.encodeResponse(77, CODEC.encode(sync("stray", "owner-x", 1, 5))));
      peer.send(sync("real", "owner-x", 1, 6));
      mesh.settle();

      assertEquals(List.of("real"), listened, "the policy ran for the SYNC only");
      assertTrue(mesh.get("a").get(CURSOR, "stray").isEmpty(), "an unsolicited answer is not applied");
      assertEquals(6.0, mesh.get("a").get(CURSOR, "real").orElseThrow().value().x());
      assertTrue(!peer.closed && peer.of(Message.Error.class).isEmpty(), "and it is no protocol error");
    }
  }

  @Test
  @DisplayName("the owner answers a proposal with RESPONSE alone on the proposer's link, and floods the SYNC elsewhere")
  void responseStandsInForTheSyncToTheProposer() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      RawPeer proposer = new RawPeer(mesh, "a", "x");
      RawPeer bystander = new RawPeer(mesh, "a", "y");
      for (RawPeer p : List.of(proposer, bystander)) {
        p.send(hello(p == proposer ? "x" : "y", p == proposer ? "owner-x" : "owner-y"));
        p.send(new Message.CatchUp(List.of()));
      }
      mesh.settle();
      assertEquals(List.of(1L), syncSerials(proposer, "c"));

      proposer.send(new Message.Propose(5, Message.ProposalKind.UPDATE, "Cursor", "c", "owner-a", true,
          JSON.valueToTree(Map.of("x", 4.0)), null, 0));
      mesh.settle();

      Message.Response r = proposer.of(Message.Response.class).get(0);
      assertEquals(2, r.state().serial());
      assertEquals(List.of(1L), syncSerials(proposer, "c"), "no SYNC of version 2 besides the RESPONSE");
      assertEquals(List.of(1L, 2L), syncSerials(bystander, "c"));
    }
  }

  @Test
  @DisplayName("once a tombstone is dropped after the retention, no link records its key any more")
  void droppedTombstonesLeaveNoRecordOnLinks() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.tombstoneRetention(Duration.ofMinutes(1)));
      mesh.node("b");
      mesh.node("c");
      mesh.connect("a", "b");
      mesh.connect("a", "c");
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      mesh.get("a").delete(CURSOR, "c").block();
      mesh.settle();
      assertTrue(mesh.get("b").get(CURSOR, "c").orElseThrow().deleted());
      assertEquals(2, mesh.get("a").engine.linksRecording(KEY_C), "both peers hold the tombstone");
      mesh.advance(Duration.ofMinutes(3));
      assertTrue(mesh.get("a").get(CURSOR, "c").isEmpty(), "dropped");
      assertEquals(0, mesh.get("a").engine.linksRecording(KEY_C));
      mesh.get("a").publish(new Cursor("c", 7, 7)).block();
      mesh.settle();
      for (String peer : List.of("b", "c")) {
        assertEquals(7.0, mesh.get(peer).get(CURSOR, "c").orElseThrow().value().x(),
            "a new object of the key still reaches " + peer);
      }
    }
  }

  @Test
  @DisplayName("a proposal decided after its requester's link closed commits, and the closed link holds nothing")
  void aRequesterWhoseLinkClosedDoesNotBecomeAHolder() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      List<Proposal<Cursor>> undecided = new ArrayList<>();
      mesh.get("a").proposals(CURSOR).subscribe(undecided::add);
      RawPeer proposer = new RawPeer(mesh, "a", "x");
      proposer.send(hello("x", "owner-x"));
      proposer.send(new Message.CatchUp(List.of()));
      proposer.send(new Message.Propose(5, Message.ProposalKind.UPDATE, "Cursor", "c", "owner-a", true,
          JSON.valueToTree(Map.of("x", 4.0)), null, 0));
      mesh.settle();
      assertEquals(1, undecided.size());
      proposer.connection.b().dispose();
      mesh.settle();
      assertTrue(undecided.get(0).commit());
      mesh.settle();
      assertEquals(4.0, x(mesh, "c"));
      assertFalse(mesh.get("a").engine.heldByDetachedLink(KEY_C));
      mesh.get("a").publish(new Cursor("c", 5, 5)).block();
      assertFalse(mesh.get("a").engine.heldByDetachedLink(KEY_C), "nor of the owner's next version");
    }
  }

  @Test
  @DisplayName("a relay applies the state a RESPONSE carries, passes it back without a SYNC, and floods it to other neighbours")
  void relayPassesTheResponseInsteadOfTheSync() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("b");
      mesh.node("d");
      mesh.connect("a", "b");
      mesh.connect("b", "d");
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      RawPeer proposer = new RawPeer(mesh, "b", "x");
      proposer.send(hello("x", "owner-x"));
      proposer.send(new Message.CatchUp(List.of()));
      mesh.settle();
      assertEquals(List.of(1L), syncSerials(proposer, "c"));

      proposer.send(new Message.Propose(9, Message.ProposalKind.UPDATE, "Cursor", "c", "owner-a", true,
          JSON.valueToTree(Map.of("x", 4.0)), null, 0));
      mesh.settle();

      Message.Response r = proposer.of(Message.Response.class).get(0);
      assertEquals(9, r.inReplyTo());
      assertEquals(2, r.state().serial());
      assertEquals(List.of(1L), syncSerials(proposer, "c"));
      for (String node : List.of("a", "b", "d")) {
        Snapshot<Cursor> held = mesh.get(node).get(CURSOR, "c").orElseThrow();
        assertEquals(2, held.version().serial(), node);
        assertEquals(4.0, held.value().x(), node);
      }
    }
  }

  @Test
  @DisplayName("a new link to the same peer replaces the old one")
  void duplicateLinkReplaced() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer first = new RawPeer(mesh, "a", "x");
      RawPeer second = new RawPeer(mesh, "a", "x");
      assertTrue(first.closed);
      assertTrue(!second.closed);
    }
  }

  /** The LIMIT_EXCEEDED errors {@code peer} received: short texts that disclose nothing. */
  private static List<Message.Error> limitErrors(RawPeer peer) {
    List<Message.Error> errors =
        peer.of(Message.Error.class).stream().filter(e -> e.code().equals("LIMIT_EXCEEDED")).toList();
    errors.forEach(e -> assertTrue(!ReceivePathFuzzTest.disclosesInternals(e.message()), e.message()));
    return errors;
  }

  private static Message.Propose propose(long id, String key, Object x) {
    return new Message.Propose(id, Message.ProposalKind.UPDATE, "Cursor", key, "owner-a", true,
        JSON.valueToTree(Map.of("x", x)), null, 0);
  }

  @Test
  @DisplayName("pending requests per peer: excess proposals are answered LIMIT_EXCEEDED at once; others keep syncing")
  void pendingRequestsPerPeer() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.maxPendingRequestsPerPeer(3).decisionTimeout(java.time.Duration.ofSeconds(10)));
      mesh.node("b");
      mesh.connect("a", "b");
      List<Proposal<?>> undecided = new CopyOnWriteArrayList<>();
      mesh.get("a").proposals(CURSOR).subscribe(undecided::add); // never decided
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      for (long id = 1; id <= 5; id++) {
        peer.send(propose(id, "c", (double) id));
      }
      assertEquals(3, undecided.size());
      assertEquals(List.of(4L, 5L), limitErrors(peer).stream().map(Message.Error::inReplyTo).toList());
      assertTrue(!peer.closed);
      mesh.get("a").publish(new Cursor("c", 2, 2)).block();
      assertEquals(2.0, mesh.get("b").get(CURSOR, "c").orElseThrow().value().x());
      // Once answered (here: the decision timeout), they no longer count.
      mesh.advance(java.time.Duration.ofSeconds(11));
      assertEquals(3, peer.of(Message.Error.class).stream().filter(e -> e.code().equals("TIMEOUT")).count());
      peer.send(propose(6, "c", 6.0));
      assertEquals(4, undecided.size());
      assertEquals(2, limitErrors(peer).size());
    }
  }

  @Test
  @DisplayName("transitions per peer: a TRANSITION beyond the cap is refused LIMIT_EXCEEDED and not applied")
  void transitionsPerPeer() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.maxTransitionsPerPeer(2));
      List<Tentative<?>> seen = new CopyOnWriteArrayList<>();
      mesh.get("a").tentativeAll(CURSOR).subscribe(seen::add);
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      for (int i = 1; i <= 3; i++) {
        peer.send(new Message.Transition("Cursor", "k" + i, "owner-x", 0, 0, "t" + i, "x", 1, false,
            JSON.valueToTree(new Cursor("k" + i, i, 0))));
      }
      assertEquals(List.of("k1", "k2"), seen.stream().map(t -> t.key().key()).toList());
      assertEquals(1, limitErrors(peer).size());
      assertEquals(2, mesh.get("a").stats().activeTransitions());
      // An update of an admitted transition is still applied; once one ends, a new one fits.
      peer.send(new Message.Transition("Cursor", "k1", "owner-x", 0, 0, "t1", "x", 2, false,
          JSON.valueToTree(new Cursor("k1", 9, 0))));
      peer.send(new Message.TransitionEnd("Cursor", "k2", "t2", "ABORTED"));
      peer.send(new Message.Transition("Cursor", "k3", "owner-x", 0, 0, "t3", "x", 1, false,
          JSON.valueToTree(new Cursor("k3", 3, 0))));
      assertEquals(1, limitErrors(peer).size());
      assertEquals(2, mesh.get("a").stats().activeTransitions());
      assertTrue(!peer.closed);
    }
  }

  @Test
  @DisplayName("maximum object size: a local publish or propose fails clearly; a peer's oversize SYNC or PROPOSE is refused")
  void maxObjectSize() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.maxObjectSize(300));
      mesh.node("b");
      mesh.connect("a", "b");
      String big = "x".repeat(400); // over the size, within the key length
      EntanglementException local = org.junit.jupiter.api.Assertions.assertThrows(
          EntanglementException.class, () -> mesh.get("a").publish(new Cursor(big, 1, 1)).block());
      assertEquals(ErrorCode.LIMIT_EXCEEDED, local.code());
      assertTrue(local.getMessage().contains("maximum object size of 300 bytes"), local.getMessage());
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      EntanglementException proposed = org.junit.jupiter.api.Assertions.assertThrows(
          EntanglementException.class,
          () -> mesh.get("a").propose(CURSOR, "c", Map.of("x", big)).block());
      assertEquals(ErrorCode.LIMIT_EXCEEDED, proposed.code());

      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(hello("x", "owner-x"));
      peer.send(sync(big, "owner-x", 1, 1));
      peer.send(propose(9, "c", big));
      assertEquals(List.of(0L, 9L), limitErrors(peer).stream().map(Message.Error::inReplyTo).toList());
      assertTrue(mesh.get("a").get(CURSOR, big).isEmpty());
      assertEquals(1.0, mesh.get("a").get(CURSOR, "c").orElseThrow().value().x());
      // The link stays open and a normal state still arrives and is relayed.
      peer.send(sync("small", "owner-x", 1, 5));
      assertEquals(5.0, mesh.get("b").get(CURSOR, "small").orElseThrow().value().x());
      assertTrue(!peer.closed);
    }
  }

  /** Node {@code a}'s record of the keys withdrawn from {@code peer} (Destination.withdrawn). */
  private static java.util.Set<ObjectKey> withdrawnFrom(EntanglementNode a, String peer) throws Exception {
    java.lang.reflect.Field f = Engine.class.getDeclaredField("destinations");
    f.setAccessible(true);
    @SuppressWarnings("unchecked")
    List<Destination> destinations = (List<Destination>) f.get(a.engine);
    return destinations.stream().filter(d -> d.peer.equals(PeerId.of(peer))).findFirst().orElseThrow().withdrawn;
  }

  @Test
  @DisplayName("a link's record of withdrawn keys holds objects held only: it empties as they are dropped or their owner removed")
  void withdrawnKeysLeaveWithTheirObjects() throws Exception {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.peerPolicy(TestMesh.sendingOnly((peer, snap) -> !peer.equals(PeerId.of("x")))));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x"));
      x.send(new Message.CatchUp(List.of(new Message.Mark("owner-z", 1, 0)))); // x may hold owner-z's states
      RawPeer z = new RawPeer(mesh, "a", "z");
      z.send(hello("z", "owner-z"));
      for (int i = 0; i < 100; i++) {
        z.send(sync("k" + i, "owner-z", 1, i));
      }
      assertEquals(100, x.of(Message.Withdraw.class).size(), "each hidden state withdrawn from x once");
      assertEquals(100, withdrawnFrom(mesh.get("a"), "x").size());
      for (int i = 0; i < 50; i++) {
        z.send(new Message.Withdraw("Cursor", "k" + i, "owner-z", 1, 1));
      }
      assertEquals(50, withdrawnFrom(mesh.get("a"), "x").size(), "dropped objects leave the record");
      z.send(new Message.OwnerRemoved("owner-z", 1));
      assertEquals(0, withdrawnFrom(mesh.get("a"), "x").size(), "a removed owner's objects leave it");
    }
  }

  record Click(String id, int n) {}

  static final SyncType<Click> CLICK = SyncType.of("Click", Click.class, Click::id).unique();

  @Test
  @DisplayName("queued events per link: a slow link keeps the newest events, in order, and drops the oldest unsent; a fast link and the states are unaffected")
  void queuedEventsPerLink() {
    Registry reg = Registry.builder("events").type(CURSOR).type(CLICK).build();
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", reg, b -> b.maxQueuedEvents(8));
      mesh.node("slow", reg, b -> {});
      mesh.node("fast", reg, b -> {});
      // About 40 frames a second: each event waits for the one before it.
      mesh.connect("a", "slow", dev.entanglement.transport.LocalTransport.builder()
          .scheduler(mesh.clock).bandwidth(2_000).build());
      mesh.connect("a", "fast");
      mesh.advance(java.time.Duration.ofMinutes(1)); // handshakes, routes, catch-ups
      List<Integer> slowGot = new CopyOnWriteArrayList<>();
      List<Integer> fastGot = new CopyOnWriteArrayList<>();
      mesh.get("slow").watchAll(CLICK).subscribe(s -> slowGot.add(s.value().n()));
      mesh.get("fast").watchAll(CLICK).subscribe(s -> fastGot.add(s.value().n()));
      EntanglementNode a = mesh.get("a");
      for (int i = 0; i < 100; i++) {
        a.publish(new Click("ignored", i)).block();
      }
      a.publish(new Cursor("c", 1, 1)).block();
      PeerStats stalled = peerStats(a, "slow");
      assertTrue(stalled.queueDepth() <= 8 + 1, "queued: " + stalled.queueDepth()); // + the state
      mesh.advance(java.time.Duration.ofMinutes(1));

      PeerStats after = peerStats(a, "slow");
      assertEquals(0, after.queueDepth());
      assertEquals(100, slowGot.size() + after.eventsDropped(), "every event sent or dropped, once");
      assertTrue(after.eventsDropped() >= 100 - 8 - 2, "dropped: " + after.eventsDropped());
      assertEquals(List.of(92, 93, 94, 95, 96, 97, 98, 99), slowGot.subList(slowGot.size() - 8, slowGot.size()));
      for (int i = 1; i < slowGot.size(); i++) {
        assertTrue(slowGot.get(i - 1) < slowGot.get(i), "in order: " + slowGot);
      }
      assertEquals(java.util.stream.IntStream.range(0, 100).boxed().toList(), fastGot);
      assertEquals(0, peerStats(a, "fast").eventsDropped());
      assertEquals(after.eventsDropped(), a.stats().eventsDropped());
      assertEquals(1.0, mesh.get("slow").get(CURSOR, "c").orElseThrow().value().x());
    }
  }

  private static Message.Propose unknownTypeProposal(long requestId) {
    return new Message.Propose(requestId, Message.ProposalKind.UPDATE, "Unknown", "k", "owner-a", true,
        JSON.valueToTree(new Cursor("k", 1, 1)), null, 0);
  }

  @Test
  @DisplayName("queued answers: a peer that reads nothing costs one PONG and one ERROR per code for its PINGs and refused states, and is refused a keepalive interval after its unread answers pass the bound")
  void unreadAnswersAreBounded() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.maxQueuedAnswers(16).keepAlive(Duration.ofSeconds(15)));
      ManualTransport transport = new ManualTransport(f -> {}); // never asks for a frame
      Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
      Link link = manualLink(in, transport);
      a.attach(link).subscribe();
      in.tryEmitNext(CODEC.encode(hello("x", "owner-x")));
      mesh.settle();
      int handshake = peerStats(a, "x").queueDepth();
      ObjectNode attrs = JSON.valueToTree(new Cursor("k", 1, 1));
      for (int i = 0; i < 1_000; i++) {
        in.tryEmitNext(CODEC.encode(new Message.Ping(i)));
        in.tryEmitNext(CODEC.encode(new Message.Sync("Unknown", "k" + i, "owner-x", 1, 1, 0, false, attrs)));
        in.tryEmitNext(CODEC.encode(sync("k" + i, "owner-a", 1, i))); // a's own owner: BAD_OWNER
      }
      mesh.settle();
      assertEquals(handshake + 3, peerStats(a, "x").queueDepth(), "a PONG, an UNKNOWN_TYPE, a BAD_OWNER");

      for (int i = 1; i <= 16; i++) { // each answered at once: UNKNOWN_TYPE, in reply to its request
        in.tryEmitNext(CODEC.encode(unknownTypeProposal(i)));
      }
      mesh.advance(Duration.ofSeconds(30));
      assertFalse(link.isDisposed(), "16 answers unread: within the bound");
      // (and its keepalive PINGs, two by now: one waits)
      assertEquals(handshake + 3 + 16 + 1, peerStats(a, "x").queueDepth(), "and a keepalive PING");

      in.tryEmitNext(CODEC.encode(unknownTypeProposal(17)));
      mesh.advance(Duration.ofSeconds(15).minusMillis(1));
      assertFalse(link.isDisposed(), "past the bound: watched for a keepalive interval");
      mesh.advance(Duration.ofMillis(1).plus(Engine.CLOSE_GRACE));
      assertTrue(link.isDisposed(), "it read nothing: refused, and closed without its ERROR, which it never asked for");
      assertFalse(a.isConnected(PeerId.of("x")));
      assertEquals(0, transport.framesOut);
    }
  }

  @Test
  @DisplayName("queued answers: past sixteen times the bound a peer is refused at once, without the keepalive interval's wait")
  void unreadAnswersPastTheHardBound() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.maxQueuedAnswers(4));
      ManualTransport transport = new ManualTransport(f -> {});
      Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
      Link link = manualLink(in, transport);
      a.attach(link).subscribe();
      in.tryEmitNext(CODEC.encode(hello("x", "owner-x")));
      for (int i = 1; i <= Engine.UNREAD_ANSWERS_FACTOR * 4; i++) {
        in.tryEmitNext(CODEC.encode(unknownTypeProposal(i)));
      }
      mesh.advance(Engine.CLOSE_GRACE);
      assertFalse(link.isDisposed(), "64 answers: watched, not refused yet");
      in.tryEmitNext(CODEC.encode(unknownTypeProposal(65)));
      mesh.advance(Engine.CLOSE_GRACE);
      assertTrue(link.isDisposed(), "the 65th: refused at once");
    }
  }

  @Test
  @DisplayName("queued answers: a peer that reads gets every answer, however many it asks for and however slowly it reads; once it stops reading past the bound it is refused with LIMIT_EXCEEDED")
  void answersToAReadingPeer() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.maxQueuedAnswers(8).keepAlive(Duration.ofSeconds(15)));
      RawPeer fast = new RawPeer(mesh, "a", "fast");
      fast.send(hello("fast", "owner-fast"));
      for (int i = 1; i <= 200; i++) {
        fast.send(unknownTypeProposal(i));
      }
      mesh.settle();
      assertEquals(java.util.stream.LongStream.rangeClosed(1, 200).boxed().toList(),
          fast.of(Message.Error.class).stream().map(Message.Error::inReplyTo).toList());

      // A peer that asks for 50 answers at once and reads one every 5 s.
      List<byte[]> out = new ArrayList<>();
      ManualTransport transport = new ManualTransport(out::add);
      Sinks.Many<byte[]> in = Sinks.many().unicast().onBackpressureBuffer();
      attachWithOneUnitLeft(mesh, a, transport, in);
      out.clear();
      for (int i = 1; i <= 50; i++) {
        in.tryEmitNext(CODEC.encode(unknownTypeProposal(i)));
      }
      for (int i = 0; i < 100; i++) {
        mesh.advance(Duration.ofSeconds(5));
        in.tryEmitNext(CODEC.encode(new Message.Ping(i))); // not silent
        transport.request(1);
        mesh.settle();
      }
      List<Long> answered = out.stream().filter(f -> f.length > 0).map(CODEC::decode)
          .filter(m -> m instanceof Message.Error).map(m -> ((Message.Error) m).inReplyTo()).toList();
      assertEquals(java.util.stream.LongStream.rangeClosed(1, 50).boxed().toList(), answered);
      assertTrue(a.isConnected(PeerId.of("x")), "read slowly, never refused");

      // Then it stops reading.
      out.clear();
      for (int i = 51; i <= 70; i++) {
        in.tryEmitNext(CODEC.encode(unknownTypeProposal(i)));
      }
      mesh.advance(Duration.ofMillis(15_500)); // refused; its ERROR waits a second at most
      transport.request(100);
      mesh.settle();
      List<Message> got = out.stream().filter(f -> f.length > 0).map(CODEC::decode)
          .filter(m -> !(m instanceof Message.Ping)).toList();
      assertEquals(List.of(new Message.Error(0, "LIMIT_EXCEEDED", "more than 8 answers unread")), got,
          "the refusal, alone: the answers were dropped with it");
      assertTrue(transport.completed, "its frames end: its transport closes it");
    }
  }

  record Doc(String id, String body, double x) {}

  static final SyncType<Doc> DOC = SyncType.of("Doc", Doc.class, Doc::id);

  @Test
  @DisplayName("queued answers: a proposer whose answers are larger than its requests (partial updates of large objects) is not refused, on a link slower for them")
  void largeAnswersToAReadingProposer() {
    try (TestMesh mesh = new TestMesh()) {
      Registry reg = Registry.builder("docs").type(DOC).build();
      EntanglementNode a = mesh.node("a", reg, b -> b.maxQueuedAnswers(64));
      EntanglementNode p = mesh.node("p", reg, b -> {});
      String body = "x".repeat(2_000);
      everyProposalCommits(mesh, a, p, DOC, i -> new Doc("d" + i, body, 0), "d",
          LocalTransport.builder().scheduler(mesh.clock).bandwidth(1_000_000).build());
    }
  }

  @Test
  @DisplayName("queued answers: a proposer that paces its own reading (maxInboundRate) is not refused, keepalive off or not")
  void answersToAPacedReader() {
    try (TestMesh mesh = new TestMesh()) {
      // Keepalive off: the watch does not follow its interval.
      EntanglementNode a = mesh.node("a", b -> b.maxQueuedAnswers(64).keepAlive(Duration.ZERO));
      EntanglementNode p = mesh.node("p", b -> b.maxInboundRate(100, 100).keepAlive(Duration.ZERO));
      everyProposalCommits(mesh, a, p, CURSOR, i -> new Cursor("c" + i, 0, 0), "c",
          LocalTransport.builder().scheduler(mesh.clock).build());
    }
  }

  /**
   * Publishes 1,000 objects on {@code a} (keys {@code prefix + i}), links {@code p} to it, and has
   * {@code p} propose {@code x = 1} on each at once: every proposal commits, and the link stays.
   */
  private static <T> void everyProposalCommits(TestMesh mesh, EntanglementNode a, EntanglementNode p,
      SyncType<T> type, java.util.function.IntFunction<T> object, String prefix, LocalTransport link) {
    int n = 1_000;
    for (int i = 0; i < n; i++) {
      a.publish(object.apply(i)).block();
    }
    mesh.connect("a", "p", link);
    mesh.advance(Duration.ofSeconds(60));
    assertTrue(p.get(type, prefix + (n - 1)).isPresent(), "synced");
    a.proposals(type).subscribe(Proposal::commit);
    List<Object> outcomes = new CopyOnWriteArrayList<>();
    for (int i = 0; i < n; i++) {
      p.propose(type, prefix + i, Map.of("x", 1.0)).subscribe(outcomes::add, outcomes::add);
    }
    mesh.advance(Duration.ofSeconds(60));
    assertEquals(n, outcomes.size());
    assertEquals(List.of(), outcomes.stream().filter(o -> !(o instanceof Outcome.Committed)).limit(1).toList());
    assertTrue(a.isConnected(PeerId.of("p")));
  }

  /**
   * A node's outbound side that forwards each frame to the peer and records it; while shut, it
   * holds frames back and asks for no more (a stalled path).
   */
  private static final class Gate extends reactor.core.publisher.BaseSubscriber<byte[]> {
    final Sinks.Many<byte[]> to;
    final List<Message> seen = new ArrayList<>();
    final List<byte[]> held = new ArrayList<>();
    boolean shut;

    Gate(Sinks.Many<byte[]> to) {
      this.to = to;
    }

    @Override
    protected void hookOnSubscribe(org.reactivestreams.Subscription s) {
      s.request(1);
    }

    @Override
    protected void hookOnNext(byte[] f) {
      if (f.length > 0) {
        seen.add(CODEC.decode(f));
      }
      if (shut) {
        held.add(f);
      } else {
        to.tryEmitNext(f);
        request(1);
      }
    }

    void open() {
      shut = false;
      held.forEach(to::tryEmitNext);
      held.clear();
      request(1);
    }

    List<Long> probeNonces() {
      return seen.stream().filter(m -> m instanceof Message.Ping).map(m -> ((Message.Ping) m).nonce()).toList();
    }
  }

  private static List<Long> pongs(Gate gate) {
    return gate.seen.stream().filter(m -> m instanceof Message.Pong).map(m -> ((Message.Pong) m).nonce()).toList();
  }

  @Test
  @DisplayName("a PONG that answers a keepalive PING sent after a probe acknowledges the probe too: the peer may answer only the newest PING waiting, and probing goes on")
  void aPongToALaterPingAcknowledgesTheProbe() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", x -> x.keepAlive(Duration.ofSeconds(5)));
      EntanglementNode b = mesh.node("b", x -> x.keepAlive(Duration.ofSeconds(5)));
      Sinks.Many<byte[]> toA = Sinks.many().unicast().onBackpressureBuffer();
      Sinks.Many<byte[]> toB = Sinks.many().unicast().onBackpressureBuffer();
      Gate aToB = new Gate(toB);
      Gate bToA = new Gate(toA);
      a.attach(manualLink("b", toA, aToB)).subscribe();
      b.attach(manualLink("a", toB, bToA)).subscribe();
      mesh.advance(Duration.ofSeconds(3));
      a.publish(new Cursor("c0", 0, 0)).block();
      mesh.advance(Duration.ofSeconds(3));
      assertFalse(aToB.probeNonces().isEmpty(), "a probes b");

      bToA.shut = true; // b's frames to a stall: a frame or two it hands over are held
      int pongsBefore = pongs(bToA).size();
      int pingsBefore = aToB.probeNonces().size();
      b.publish(new Cursor("b0", 0, 0)).block();
      mesh.settle();
      a.publish(new Cursor("c1", 1, 0)).block();
      mesh.advance(Duration.ofMillis(1_500)); // a's probe goes out
      mesh.advance(Duration.ofSeconds(5)); // and keepalive PINGs after it
      bToA.open();
      mesh.advance(Duration.ofSeconds(1));
      List<Long> stalled = aToB.probeNonces().subList(pingsBefore, aToB.probeNonces().size());
      List<Long> answered = pongs(bToA).subList(pongsBefore, pongs(bToA).size());
      assertTrue(answered.size() < stalled.size(), "PINGs " + stalled + ", PONGs " + answered + ": some replaced");
      assertEquals(stalled.get(stalled.size() - 1), answered.get(answered.size() - 1), "the newest answered");

      // Probing goes on: a probe follows each change (at most one a second), where a keepalive
      // PING comes every 5 s. Were the probe never taken as acknowledged, no other would follow.
      int mark = aToB.probeNonces().size();
      for (int i = 2; i < 10; i++) {
        a.publish(new Cursor("c" + i, i, 0)).block();
        mesh.advance(Duration.ofMillis(1_100));
      }
      int pings = aToB.probeNonces().size() - mark;
      assertTrue(pings >= 6, pings + " PINGs in 8.8 s: probes stopped");
      List<Long> nonces = aToB.probeNonces();
      for (int i = 1; i < nonces.size(); i++) {
        assertTrue(nonces.get(i) < nonces.get(i - 1), "every PING's nonce below the one before: " + nonces);
      }
    }
  }

  private static PeerStats peerStats(EntanglementNode node, String peer) {
    return node.stats().peers().stream()
        .filter(p -> p.peer().equals(PeerId.of(peer))).findFirst().orElseThrow();
  }

  @Test
  @DisplayName("inbound rate: a flood is read at the rate (+ burst), in order, losing nothing; a neighbour under it syncs at once")
  void inboundRate() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.maxInboundRate(100, 20));
      mesh.node("b");
      mesh.connect("a", "b");
      List<String> fromX = new CopyOnWriteArrayList<>();
      a.watchAll(CURSOR, s -> s.owner().equals(OwnerId.of("owner-x")))
          .subscribe(s -> fromX.add(s.key().key()));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      List<String> sent = new java.util.ArrayList<>();
      for (int i = 0; i < 1_000; i++) {
        sent.add("k" + i);
        x.send(sync("k" + i, "owner-x", i + 1, i));
      }
      assertEquals(20, peerStats(a, "x").framesReceived(), "the burst at once");
      for (int step = 1; step <= 100; step++) { // 10 s in steps of 100 ms
        mesh.advance(java.time.Duration.ofMillis(100));
        long read = peerStats(a, "x").framesReceived();
        assertTrue(read <= 20 + 10 * step, read + " frames after " + step * 100 + " ms");
        assertTrue(read >= Math.min(1_001, 10 * step), read + " frames after " + step * 100 + " ms");
        // b, under the rate, is never held back: its publish is applied at a without time passing.
        mesh.get("b").publish(new Cursor("b", step, 0)).block();
        assertEquals(step, a.get(CURSOR, "b").orElseThrow().value().x());
      }
      assertEquals(1_001, peerStats(a, "x").framesReceived());
      assertEquals(sent, fromX, "every state, in the order sent");
      assertEquals(999.0, mesh.get("b").get(CURSOR, "k999").orElseThrow().value().x());
      PeerStats flooder = peerStats(a, "x");
      assertTrue(flooder.inboundPauses() > 0);
      assertTrue(flooder.inboundThrottled().toMillis() > 9_000, flooder.inboundThrottled().toString());
      assertEquals(0, peerStats(a, "b").inboundPauses());
      assertTrue(!x.closed);
      assertEquals(0, a.stats().tasksFailed());
    }
  }

  @Test
  @DisplayName("inbound rate: a link closed while paused leaves no timer behind and reads nothing more")
  void inboundRateLinkClosedWhilePaused() {
    try (TestMesh mesh = new TestMesh()) {
      InboundLimiterTest.RecordingScheduler timers = new InboundLimiterTest.RecordingScheduler(mesh.clock);
      EntanglementNode a = mesh.node("a",
          b -> b.scheduler(timers).maxInboundRate(100, 10).keepAlive(java.time.Duration.ZERO));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      for (int i = 0; i < 100; i++) {
        x.send(sync("k" + i, "owner-x", i + 1, i));
      }
      mesh.advance(java.time.Duration.ofMillis(5));
      PeerStats paused = peerStats(a, "x");
      assertEquals(10, paused.framesReceived());
      assertEquals(1, paused.inboundPauses());
      assertEquals(java.time.Duration.ofMillis(5), paused.inboundThrottled());
      assertTrue(timers.pending() >= 1, "the resume timer waits");
      x.connection.close();
      assertTrue(!a.isConnected(PeerId.of("x")));
      assertEquals(0, timers.pending(), "every timer of the link disposed");
      mesh.advance(java.time.Duration.ofMinutes(1));
      assertEquals(10, a.stats().framesReceived());
      assertEquals(9, java.util.stream.IntStream.range(0, 100)
          .filter(i -> a.get(CURSOR, "k" + i).isPresent()).count(), "HELLO and 9 states");
    }
  }

  @Test
  @DisplayName("a request that timed out leaves the link's record of requests; its late RESPONSE is taken as the SYNC the owner will not send")
  void aTimedOutRequestLeavesTheRecord() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.requestTimeout(Duration.ofSeconds(5)));
      RawPeer x = new RawPeer(mesh, "a", "x");
      x.send(hello("x", "owner-x"));
      x.send(sync("c", "owner-x", 1, 1));
      mesh.settle();
      List<Object> outcomes = new CopyOnWriteArrayList<>();
      for (int i = 0; i < 3; i++) {
        a.propose(CURSOR, "c", Map.of("x", 10.0 + i)).subscribe(outcomes::add, outcomes::add);
        mesh.settle(); // each its own PROPOSE: the one before it has left the queue
      }
      List<Message.Propose> asked = x.of(Message.Propose.class);
      assertEquals(3, asked.size());
      assertEquals(3, peerStats(a, "x").pendingRequests());

      mesh.advance(Duration.ofSeconds(6)); // x answers none of them
      assertEquals(3, outcomes.size());
      outcomes.forEach(o -> assertEquals(ErrorCode.TIMEOUT, assertInstanceOf(EntanglementException.class, o).code()));
      assertEquals(0, peerStats(a, "x").pendingRequests(), "given up on: no longer recorded");

      x.send(new Message.Response(asked.get(2).requestId(), sync("c", "owner-x", 2, 12)));
      mesh.settle();
      assertEquals(12.0, x(mesh, "c"), "the late answer's state, applied");
      assertEquals(3, outcomes.size(), "and no outcome a second time");
    }
  }

  @Test
  @DisplayName("a peer that never says HELLO is dropped after the handshake timeout")
  void handshakeTimeout() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.handshakeTimeout(java.time.Duration.ofSeconds(10)));
      RawPeer silent = new RawPeer(mesh, "a", "x");
      mesh.advance(java.time.Duration.ofSeconds(9));
      assertTrue(!silent.closed);
      mesh.advance(java.time.Duration.ofSeconds(2));
      assertEquals("TIMEOUT", silent.of(Message.Error.class).get(0).code());
      assertTrue(silent.closed);
    }
  }

  @Test
  @DisplayName("keepalive: idle links are pinged and stay up; a black-holed peer is detected and dropped")
  void keepAliveAndDeadPeer() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", b -> b.keepAlive(java.time.Duration.ofSeconds(15)));
      mesh.node("b", b -> b.keepAlive(java.time.Duration.ofSeconds(15)));
      var live = mesh.connect("a", "b");
      RawPeer hole = new RawPeer(mesh, "a", "x");
      hole.send(hello("x", "owner-x")); // then never another frame
      mesh.advance(java.time.Duration.ofSeconds(40));
      assertTrue(!hole.closed);
      assertTrue(hole.of(Message.Ping.class).size() >= 2);
      mesh.advance(java.time.Duration.ofSeconds(10));
      assertTrue(hole.closed, "45 s of silence is a dead peer");
      mesh.advance(java.time.Duration.ofMinutes(5));
      assertTrue(!live.a().isDisposed(), "a live peer answers pings and stays connected");
    }
  }

  @Test
  @DisplayName("keepalive: a dead peer is detached at once, even if its transport never reports the close")
  void keepAliveDetachesWithoutTheTransportsClose() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.keepAlive(java.time.Duration.ofSeconds(15)));
      LocalTransport.Connection c = LocalTransport.builder().scheduler(mesh.clock).build()
          .connect(PeerId.of("a"), PeerId.of("x"));
      int[] disposals = {0};
      // Closes like any link, but its onClose never completes (a transport that loses the event).
      dev.entanglement.transport.Link mute =
          new dev.entanglement.transport.Link() {
            public PeerId remote() {
              return c.a().remote();
            }

            public reactor.core.publisher.Flux<byte[]> receive() {
              return c.a().receive();
            }

            public reactor.core.publisher.Mono<Void> send(org.reactivestreams.Publisher<byte[]> f) {
              return c.a().send(f);
            }

            public reactor.core.publisher.Mono<Void> onClose() {
              return reactor.core.publisher.Mono.never();
            }

            public void dispose() {
              disposals[0]++;
              c.a().dispose();
            }

            public boolean isDisposed() {
              return c.a().isDisposed();
            }
          };
      a.attach(mute).subscribe();
      Sinks.Many<byte[]> out = Sinks.many().unicast().onBackpressureBuffer();
      c.b().receive().subscribe();
      c.b().send(out.asFlux()).subscribe();
      out.tryEmitNext(CODEC.encode(hello("x", "owner-x"))); // then never another frame
      mesh.advance(java.time.Duration.ofSeconds(40));
      assertTrue(a.isConnected(PeerId.of("x")));
      mesh.advance(java.time.Duration.ofSeconds(10));
      int closes = disposals[0];
      assertTrue(closes > 0, "45 s of silence closes the link");
      assertTrue(!a.isConnected(PeerId.of("x")), "and detaches it without waiting for onClose");
      assertEquals(List.of(), a.stats().peers());
      mesh.advance(java.time.Duration.ofMinutes(5));
      assertEquals(closes, disposals[0], "a detached destination is not closed again");
    }
  }

  @Test
  @DisplayName("a link that fails while being attached is detached, and attach completes")
  void linkFailingDuringAttachIsDetached() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a", b -> b.handshakeTimeout(java.time.Duration.ofSeconds(1)));
      Sinks.Empty<Void> closed = Sinks.empty();
      dev.entanglement.transport.Link broken =
          new dev.entanglement.transport.Link() {
            boolean disposed;

            public PeerId remote() {
              return PeerId.of("broken");
            }

            public reactor.core.publisher.Flux<byte[]> receive() {
              return reactor.core.publisher.Flux.never();
            }

            public reactor.core.publisher.Mono<Void> send(org.reactivestreams.Publisher<byte[]> f) {
              throw new NullPointerException("channel pipeline torn down");
            }

            public reactor.core.publisher.Mono<Void> onClose() {
              return closed.asMono();
            }

            public void dispose() {
              disposed = true;
              closed.tryEmitEmpty();
            }

            public boolean isDisposed() {
              return disposed;
            }
          };
      boolean[] done = {false};
      a.attach(broken).subscribe(null, null, () -> done[0] = true);
      assertTrue(broken.isDisposed());
      assertTrue(done[0], "attach must complete once the link is closed");
      assertTrue(!a.isConnected(PeerId.of("broken")));
    }
  }

  @Test
  @DisplayName("an ERROR before HELLO (a refused dial) closes the link without an ERROR in reply")
  void refusalBeforeHelloIsNotAnswered() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      RawPeer peer = new RawPeer(mesh, "a", "x");
      peer.send(new Message.Error(0, "UNAUTHORIZED", "refused"));
      assertTrue(peer.closed, "link closed");
      assertTrue(peer.of(Message.Error.class).isEmpty(), "answered with " + peer.of(Message.Error.class));
    }
  }
}
