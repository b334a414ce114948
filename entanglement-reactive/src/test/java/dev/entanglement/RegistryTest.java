package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import org.junit.jupiter.api.Test;

class RegistryTest {

  @Test
  void registeringATypeNameTwiceIsAnError() {
    SyncType<Cursor> again = SyncType.of("Cursor", Cursor.class, Cursor::id);
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () -> Registry.builder("r").type(CURSOR).type(again));
    assertTrue(e.getMessage().contains("'Cursor'"), e.getMessage());
  }

  @Test
  void aTypeNameInTwoRegistriesOfOneNodeIsAnError() {
    Registry a = Registry.builder("a").type(CURSOR).build();
    Registry b = Registry.builder("b").type(SyncType.of("Cursor", Cursor.class, Cursor::id)).build();
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () -> EntanglementNode.builder().registry(a).registry(b).build());
    assertTrue(e.getMessage().contains("'a'") && e.getMessage().contains("'b'"), e.getMessage());
  }

  @Test
  void aNodeNeedsARegistry() {
    assertThrows(IllegalStateException.class, () -> EntanglementNode.builder().build());
  }

  @Test
  void typesFromSeveralRegistriesWorkTogether() {
    record Note(String id, String text) {}
    SyncType<Note> note = SyncType.of("Note", Note.class, Note::id);
    EntanglementNode n =
        EntanglementNode.builder()
            .registry(Registry.builder("cursors").type(CURSOR).build())
            .registry(Registry.builder("notes").type(note).build())
            .build();
    n.publish(new Cursor("c", 1, 1)).block();
    n.publish(new Note("n", "hi")).block();
    assertEquals("hi", n.get(note, "n").orElseThrow().value().text());
    n.close().block();
  }

  @Test
  void publishingAnUnregisteredTypeFails() {
    record Other(String id) {}
    EntanglementNode n = EntanglementNode.builder().registry(Registry.builder("r").type(CURSOR).build()).build();
    assertThrows(IllegalArgumentException.class, () -> n.publish(new Other("x")).block());
    assertThrows(
        IllegalArgumentException.class,
        () -> n.watchAll(SyncType.of("Other", Other.class, Other::id)));
    n.close().block();
  }
}
