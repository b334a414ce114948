package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import org.junit.jupiter.api.Test;

class EntanglementNodeTest {

  @Test
  void publish_replicatesToNeighbour() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementNode b = mesh.node("b");
      mesh.connect("a", "b");
      a.publish(new Cursor("c1", 1, 2)).block();
      mesh.settle();
      Snapshot<Cursor> s = b.get(CURSOR, "c1").orElseThrow();
      assertEquals(new Cursor("c1", 1, 2), s.value());
      assertEquals(a.owner(), s.owner());
      assertTrue(s.version().serial() > 0);
    }
  }

  @Test
  void defaultOwnerFollowsTheOwnersAddedAndRemoved() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      OwnerId first = a.owner();
      OwnerId second = OwnerId.of("owner-second");
      a.addOwner(second).block();
      assertEquals(first, a.owner());
      a.removeOwner(first).block();
      assertEquals(second, a.owner());
      assertEquals(second, a.publish(new Cursor("c1", 1, 2)).block().owner());
      a.removeOwner(second).block();
      IllegalStateException e = assertThrows(IllegalStateException.class, a::owner);
      assertTrue(e.getMessage().contains("no local owner"), e.getMessage());
    }
  }
}
