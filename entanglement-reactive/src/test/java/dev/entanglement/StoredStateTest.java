package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/** Which form of a version's attributes is held, and that every derived form is the same data. */
class StoredStateTest {
  private static final FrameCodec CODEC = new FrameCodec();
  private static final JsonMapper JSON = JsonMapper.builder().build();
  private static final TypeBinding<Cursor> BINDING = new TypeBinding<>(TestMesh.CURSOR, TestMesh.registry());
  private static final ObjectKey KEY = new ObjectKey("Cursor", "c");

  private static Snapshot<Cursor> snapshot(Cursor value, boolean deleted) {
    return new Snapshot<>(KEY, deleted ? null : value, OwnerId.of("o"), new Version(1, 2), deleted, 0);
  }

  @Test
  @DisplayName("a received state's attributes come from its frame, keeping attributes the Java type ignores")
  void fromFrameIsLossless() {
    ObjectNode wire = JSON.valueToTree(new Cursor("c", 3, 4));
    wire.put("z", "from a newer peer");
    byte[] frame = CODEC.encode(new Message.Sync("Cursor", "c", "o", 1, 2, 0, false, wire));
    StoredState st = new StoredState(BINDING, snapshot(new Cursor("c", 3, 4), false), null, frame);

    assertEquals(wire, st.attributes(CODEC, JSON));
    AtomicLong encodes = new AtomicLong();
    assertSame(frame, st.frame(CODEC, JSON, encodes));
    assertEquals(0, encodes.get(), "a received frame is never re-encoded");
  }

  @Test
  @DisplayName("a published state's attributes and frame are derived from its value, and the frame is encoded once")
  void fromValue() {
    Cursor value = new Cursor("c", 3, 4);
    StoredState st = new StoredState(BINDING, snapshot(value, false), null, null);

    assertEquals(JSON.valueToTree(value), st.attributes(CODEC, JSON));
    AtomicLong encodes = new AtomicLong();
    byte[] frame = st.frame(CODEC, JSON, encodes);
    assertSame(frame, st.frame(CODEC, JSON, encodes));
    assertEquals(1, encodes.get());
    Message.Sync decoded = (Message.Sync) CODEC.decode(frame);
    assertEquals(JSON.valueToTree(value), decoded.attributes());
    assertEquals(2, decoded.serial());
  }

  @Test
  @DisplayName("a held tree is returned as is; a deleted state has no attributes")
  void heldTreeAndTombstone() {
    ObjectNode tree = JSON.valueToTree(new Cursor("c", 3, 4));
    StoredState held = new StoredState(BINDING, snapshot(new Cursor("c", 3, 4), false), tree, null);
    assertSame(tree, held.attributes(CODEC, JSON));

    StoredState tombstone = new StoredState(BINDING, snapshot(null, true), null, null);
    assertTrue(tombstone.attributes(CODEC, JSON).isEmpty());
  }

  @Test
  @DisplayName("a partial proposal's patch replaces top-level attributes and never changes a held tree")
  void patchedAttributes() {
    ObjectNode patch = JSON.createObjectNode().put("x", 9.0);
    ObjectNode expected = JSON.valueToTree(new Cursor("c", 9, 4));

    ObjectNode tree = JSON.valueToTree(new Cursor("c", 3, 4));
    StoredState held = new StoredState(BINDING, snapshot(new Cursor("c", 3, 4), false), tree, null);
    assertEquals(expected, held.attributesPatchedWith(patch, CODEC, JSON));
    assertEquals(JSON.valueToTree(new Cursor("c", 3, 4)), held.attributes(CODEC, JSON), "held tree unchanged");

    StoredState fromValue = new StoredState(BINDING, snapshot(new Cursor("c", 3, 4), false), null, null);
    assertEquals(expected, fromValue.attributesPatchedWith(patch, CODEC, JSON));

    byte[] frame = CODEC.encode(
        new Message.Sync("Cursor", "c", "o", 1, 2, 0, false, JSON.valueToTree(new Cursor("c", 3, 4))));
    StoredState received = new StoredState(BINDING, snapshot(new Cursor("c", 3, 4), false), null, frame);
    assertEquals(expected, received.attributesPatchedWith(patch, CODEC, JSON));
  }

  @Test
  @DisplayName("a live state needs a source for its attributes")
  void needsASource() {
    Snapshot<Cursor> noValue = new Snapshot<>(KEY, null, OwnerId.of("o"), new Version(1, 2), false, 0);
    assertThrows(IllegalArgumentException.class, () -> new StoredState(BINDING, noValue, null, null));
  }

  @Test
  @DisplayName("a local commit's frame is kept while it has users, then dropped and encoded again on demand")
  void localFrameKeptWhileUsed() {
    StoredState st = new StoredState(BINDING, snapshot(new Cursor("c", 3, 4), false), null, null);
    AtomicLong encodes = new AtomicLong();
    byte[] first = st.frame(CODEC, JSON, encodes);
    st.retainFrame(); // committing
    st.retainFrame(); // queued for one destination
    st.releaseFrame();
    assertSame(first, st.frame(CODEC, JSON, encodes), "a user is left");
    st.releaseFrame();
    st.releaseFrame(); // one release too many is ignored
    byte[] again = st.frame(CODEC, JSON, encodes);
    assertEquals(2, encodes.get(), "encoded again once the last user was done");
    assertArrayEquals(first, again);
    st.retainFrame();
    st.releaseFrame();
    assertEquals(2, encodes.get());
  }

  @Test
  @DisplayName("a received frame, the source of the attributes, is kept whatever its users")
  void receivedFrameAlwaysKept() {
    byte[] frame = CODEC.encode(
        new Message.Sync("Cursor", "c", "o", 1, 2, 0, false, JSON.valueToTree(new Cursor("c", 3, 4))));
    StoredState st = new StoredState(BINDING, snapshot(new Cursor("c", 3, 4), false), null, frame);
    st.retainFrame();
    st.releaseFrame();
    AtomicLong encodes = new AtomicLong();
    assertSame(frame, st.frame(CODEC, JSON, encodes));
    assertEquals(0, encodes.get());
  }
}
