package dev.entanglement.samples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Policy;
import dev.entanglement.Registry;
import dev.entanglement.SyncType;
import dev.entanglement.samples.cli.DemoTypes.Cursor;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;

class DemoTypesTest {
  static final Duration WAIT = Duration.ofSeconds(10);

  /** What a browser might send as a Cursor: some fields left out, one the node does not know. */
  record BrowserCursor(String id, String team, int x, String mood) {}

  static final SyncType<BrowserCursor> BROWSER_CURSOR =
      SyncType.of("Cursor", BrowserCursor.class, BrowserCursor::id);

  private final List<Disposable> cleanup = new ArrayList<>();

  @AfterEach
  void close() {
    cleanup.forEach(Disposable::dispose);
  }

  private EntanglementNode node(String id, Registry registry) {
    EntanglementNode n = EntanglementNode.builder().id(id).owner(OwnerId.of("owner-" + id)).registry(registry).build();
    cleanup.add(() -> n.close().block(WAIT));
    return n;
  }

  private void link(EntanglementNode a, EntanglementNode b) {
    LocalTransport.Connection c = LocalTransport.create().connect(PeerId.of(a.id()), PeerId.of(b.id()));
    cleanup.add(a.attach(c.a()).subscribe());
    cleanup.add(b.attach(c.b()).subscribe());
  }

  @Test
  @DisplayName("a node decodes partial states with unknown fields, and relays every attribute as received")
  void partialStatesDecodeAndRelayWhole() {
    EntanglementNode browserA = node("a", Registry.builder("browser").type(BROWSER_CURSOR).build());
    EntanglementNode hub = node("hub", DemoTypes.registry(Policy.ALLOW_ALL));
    EntanglementNode browserB = node("b", Registry.builder("browser").type(BROWSER_CURSOR).build());
    link(browserA, hub);
    link(hub, browserB);
    browserA.publish(new BrowserCursor("pointer-a", "red", 12, "curious")).block(WAIT);

    Cursor atHub = hub.watch(DemoTypes.CURSOR, "pointer-a").blockFirst(WAIT).value();
    assertEquals(new Cursor("pointer-a", null, "red", 12.0, null, null, null), atHub);
    BrowserCursor atB = browserB.watch(BROWSER_CURSOR, "pointer-a").blockFirst(WAIT).value();
    assertEquals(new BrowserCursor("pointer-a", "red", 12, "curious"), atB, "the unknown field crosses the hub");
  }
}
