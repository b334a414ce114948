package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.protocol.Message;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;

/**
 * The contract every transport meets, written once. An implementing class supplies a {@link
 * Harness} that connects node {@code a} (dialing) to node {@code b} (accepting) over its transport.
 */
interface TransportConformance {
  Duration WAIT = Duration.ofSeconds(15);

  record Cursor(String id, double x, double y) {}

  SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);

  record Click(String id, int n) {}

  /** Events: every publish its own object, never coalesced. */
  SyncType<Click> CLICK = SyncType.of("Click", Click.class, Click::id).unique();

  /** Events that may wait for one link in these tests. */
  int QUEUED_EVENTS = 64;

  /** Two nodes and a way to connect them over the transport under test. */
  interface Harness extends AutoCloseable {
    EntanglementNode a();

    EntanglementNode b();

    /** b's identity as a sees it, and a's as b sees it. */
    PeerId bAsSeenByA();

    PeerId aAsSeenByB();

    /** Opens a link from a to b, limited to {@code bytesPerSecond} from a to b (0: unlimited). */
    void connect(long bytesPerSecond);

    /** Breaks the connection as a network failure would. */
    void disconnect();

    /**
     * Opens a raw connection to b, sends a HELLO then {@code frame} as one properly delimited
     * frame, and returns what b sent back until it closed the connection.
     */
    List<Message> sendRaw(byte[] frame);

    @Override
    void close();
  }

  Harness harness(EntanglementNode a, EntanglementNode b);

  static EntanglementNode node(String id) {
    return EntanglementNode.builder()
        .id(id)
        .owner(OwnerId.of("owner-" + id))
        .registry(Registry.builder("conformance").type(CURSOR).type(CLICK).build())
        .maxQueuedEvents(QUEUED_EVENTS)
        .build();
  }

  static void awaitTrue(java.util.function.BooleanSupplier condition, String what) {
    Boolean ok =
        Flux.interval(Duration.ofMillis(5))
            .map(i -> condition.getAsBoolean())
            .filter(b -> b)
            .blockFirst(WAIT);
    assertTrue(Boolean.TRUE.equals(ok), what);
  }

  static Snapshot<Cursor> await(EntanglementNode n, String key, double x) {
    return n.watch(CURSOR, key).filter(s -> s.value() != null && s.value().x() == x).blockFirst(WAIT);
  }

  private Harness open() {
    return harness(node("a"), node("b"));
  }

  @Test
  @DisplayName("connect and exchange: states both ways, and a proposal answered across the link")
  default void connectAndExchange() {
    try (Harness h = open()) {
      h.connect(0);
      awaitTrue(() -> h.a().isConnected(h.bAsSeenByA()) && h.b().isConnected(h.aAsSeenByB()), "connected");
      h.a().publish(new Cursor("from-a", 1, 1)).block(WAIT);
      h.b().publish(new Cursor("from-b", 2, 2)).block(WAIT);
      assertEquals(OwnerId.of("owner-a"), await(h.b(), "from-a", 1).owner());
      assertEquals(OwnerId.of("owner-b"), await(h.a(), "from-b", 2).owner());
      assertTrue(h.b().propose(CURSOR, "from-a", Map.of("x", 3.0)).block(WAIT).isCommitted());
      await(h.a(), "from-a", 3);
    }
  }

  @Test
  @DisplayName("backpressure: a slow link keeps one pending entry per key and delivers the latest state")
  default void slowLinkStaysBounded() {
    try (Harness h = open()) {
      h.connect(20_000);
      awaitTrue(() -> h.a().isConnected(h.bAsSeenByA()), "connected");
      Map<String, Double> last = new HashMap<>();
      int keys = 100;
      for (int i = 0; i < 20_000; i++) {
        String k = "k" + (i % keys);
        h.a().publish(new Cursor(k, i, 0)).block(WAIT);
        last.put(k, (double) i);
        if (i % 1000 == 999) {
          int queued = h.a().stats().queuedEntries();
          assertTrue(queued <= keys + 8, "the outbound queue grew to " + queued);
        }
      }
      for (var e : last.entrySet()) {
        await(h.b(), e.getKey(), e.getValue());
      }
      long sent = h.a().stats().framesSent();
      assertTrue(sent < 20_000, "coalescing must drop intermediate states; frames sent " + sent);
    }
  }

  @Test
  @DisplayName("backpressure for events: a slow link holds at most maxQueuedEvents of them and delivers the newest, in order")
  default void slowLinkBoundsEvents() {
    try (Harness h = open()) {
      h.connect(20_000);
      awaitTrue(() -> h.a().isConnected(h.bAsSeenByA()), "connected");
      List<Integer> got = new java.util.concurrent.CopyOnWriteArrayList<>();
      h.b().watchAll(CLICK).subscribe(s -> got.add(s.value().n()));
      int events = 5_000;
      for (int i = 0; i < events; i++) {
        h.a().publish(new Click("ignored", i)).block(WAIT);
        if (i % 500 == 499) {
          int queued = h.a().stats().queuedEntries();
          assertTrue(queued <= QUEUED_EVENTS + 8, "the outbound queue grew to " + queued);
        }
      }
      awaitTrue(() -> !got.isEmpty() && got.get(got.size() - 1) == events - 1, "the newest event arrived");
      for (int i = 1; i < got.size(); i++) {
        assertTrue(got.get(i - 1) < got.get(i), "events arrived out of order");
      }
      long dropped = h.a().stats().peers().stream()
          .filter(p -> p.peer().equals(h.bAsSeenByA())).findFirst().orElseThrow().eventsDropped();
      assertTrue(dropped > 0, "nothing was dropped: the link was not slow");
      assertEquals(events, got.size() + dropped, "every event delivered or dropped, once");
    }
  }

  @Test
  @DisplayName("disconnect is detected on both sides; after reconnecting the nodes converge")
  default void disconnectAndReconnect() {
    try (Harness h = open()) {
      h.connect(0);
      awaitTrue(() -> h.a().isConnected(h.bAsSeenByA()) && h.b().isConnected(h.aAsSeenByB()), "connected");
      h.a().publish(new Cursor("c", 1, 1)).block(WAIT);
      await(h.b(), "c", 1);
      h.disconnect();
      awaitTrue(() -> !h.a().isConnected(h.bAsSeenByA()) && !h.b().isConnected(h.aAsSeenByB()), "both see the loss");
      h.a().publish(new Cursor("c", 2, 2)).block(WAIT);
      h.b().publish(new Cursor("d", 5, 5)).block(WAIT);
      h.connect(0);
      await(h.b(), "c", 2);
      await(h.a(), "d", 5);
    }
  }

  @Test
  @DisplayName("a malformed frame gets an ERROR and closes only its own connection")
  default void malformedFrame() {
    try (Harness h = open()) {
      h.connect(0);
      awaitTrue(() -> h.a().isConnected(h.bAsSeenByA()), "connected");
      List<Message> answer = h.sendRaw(new byte[] {3, (byte) 0xff, 0x13, 0x37});
      assertTrue(answer.stream().anyMatch(m -> m instanceof Message.Error e && e.code().equals("BAD_ENCODING")),
          answer.toString());
      h.a().publish(new Cursor("still", 9, 9)).block(WAIT);
      await(h.b(), "still", 9);
    }
  }
}
