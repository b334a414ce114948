package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class SyncTypeTest {
  record Cell(int row, int col) {}

  record Sheet(Cell cell, String value) {}

  record Low(String id) {}

  record High(String id) {}

  @Test
  void scalarKeysUseTheirStringForm() {
    UUID u = UUID.fromString("3f2a0000-0000-0000-0000-000000000001");
    assertEquals("42", SyncType.canonicalKey(42));
    assertEquals(u.toString(), SyncType.canonicalKey(u));
    assertEquals("abc", SyncType.canonicalKey("abc"));
  }

  @Test
  void compositeKeysAreCanonicalJsonWithSortedNames() {
    SyncType<Sheet> sheet = SyncType.of("Sheet", Sheet.class, Sheet::cell);
    ObjectKey k = sheet.keyOf(new Sheet(new Cell(2, 3), "x"));
    assertEquals(new ObjectKey("Sheet", "{\"col\":3,\"row\":2}"), k);
    assertEquals(k, sheet.key(new Cell(2, 3)));
  }

  @Test
  void defaultsAndCopies() {
    SyncType<Low> t = SyncType.of("Low", Low.class, Low::id);
    assertEquals(SyncType.DEFAULT_PRIORITY, t.priority());
    assertEquals(5, t.withPriority(5).priority());
    assertTrue(t.unique().isUnique());
    assertNotEquals(t.unique().keyOf(new Low("a")), t.unique().keyOf(new Low("a")));
    assertEquals(4, java.util.UUID.fromString(t.unique().keyOf(new Low("a")).key()).version());
    assertEquals(2, java.util.UUID.fromString(t.unique().keyOf(new Low("a")).key()).variant());
    assertThrows(IllegalArgumentException.class, () -> t.withPriority(-1));
    assertThrows(IllegalArgumentException.class, () -> SyncType.of("a/b", Low.class, Low::id));
    assertThrows(IllegalArgumentException.class, () -> t.key(null));
  }

  private static final SyncType<Low> LOW = SyncType.of("Low", Low.class, Low::id).withPriority(200);
  private static final SyncType<High> HIGH = SyncType.of("High", High.class, High::id).withPriority(10);

  /** Nodes a and b, connected by a 500 B/s link, with the types LOW and HIGH. */
  private static TestMesh slowPairOfPriorities() {
    Registry reg = Registry.builder("prio").type(LOW).type(HIGH).build();
    TestMesh mesh = new TestMesh();
    mesh.node("a", reg, b -> {});
    mesh.node("b", reg, b -> {});
    mesh.connect("a", "b", LocalTransport.builder().scheduler(mesh.clock).bandwidth(500).build());
    mesh.advance(Duration.ofSeconds(5));
    return mesh;
  }

  @Test
  void lowerPriorityIsSentFirst() {
    try (TestMesh mesh = slowPairOfPriorities()) {
      List<String> order = new ArrayList<>();
      mesh.get("b").watchAll(LOW).subscribe(s -> order.add(s.key().toString()));
      mesh.get("b").watchAll(HIGH).subscribe(s -> order.add(s.key().toString()));
      for (int i = 0; i < 3; i++) {
        mesh.get("a").publish(new Low("l" + i)).block();
      }
      for (int i = 0; i < 3; i++) {
        mesh.get("a").publish(new High("h" + i)).block();
      }
      mesh.advance(Duration.ofSeconds(10));
      // The first low frame was already on the wire; the high ones overtake the rest, in FIFO order.
      assertEquals(List.of("Low/l0", "High/h0", "High/h1", "High/h2", "Low/l1", "Low/l2"), order);
    }
  }

  @Test
  @DisplayName("a catch-up after a disconnection sends what changed meanwhile by priority, every object of it")
  void aCatchUpSendsByPriority() {
    try (TestMesh mesh = slowPairOfPriorities()) {
      mesh.disconnect("a", "b");
      for (int i = 0; i < 3; i++) {
        mesh.get("a").publish(new Low("l" + i)).block();
      }
      for (int i = 0; i < 3; i++) {
        mesh.get("a").publish(new High("h" + i)).block();
      }
      List<String> order = new ArrayList<>();
      mesh.get("b").watchAll(LOW).subscribe(s -> order.add(s.key().toString()));
      mesh.get("b").watchAll(HIGH).subscribe(s -> order.add(s.key().toString()));
      mesh.connect("a", "b", LocalTransport.builder().scheduler(mesh.clock).bandwidth(500).build());
      mesh.advance(Duration.ofSeconds(20));
      assertEquals(6, order.size(), order.toString());
      assertEquals(List.of("High", "High", "High", "Low", "Low", "Low"),
          order.stream().map(k -> k.substring(0, k.indexOf('/'))).toList(), order.toString());
    }
  }
}
