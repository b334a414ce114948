package dev.entanglement.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.RecordComponent;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.jspecify.annotations.Nullable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.JsonNodeFactory;
import tools.jackson.databind.node.ObjectNode;
import tools.jackson.dataformat.cbor.CBORMapper;

class FrameCodecTest {

  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
  private static final JsonMapper JSON = JsonMapper.builder().build();
  /** Used only to build malformed bodies. */
  private static final CBORMapper CBOR = CBORMapper.builder().build();

  private final FrameCodec codec = new FrameCodec();

  // ---------------------------------------------------------------------------------------------
  // Samples
  // ---------------------------------------------------------------------------------------------

  private static ObjectNode richAttributes() {
    ObjectNode n = NODES.objectNode();
    n.put("x", 12);
    n.put("y", -3);
    n.put("big", 9_000_000_000L); // beyond int range
    n.put("ratio", 0.25);
    n.put("label", "héllo ✓ 世界");
    n.put("empty", "");
    n.put("flag", true);
    n.putNull("nothing");
    n.putArray("list").add(1).add("two").add(false).addNull();
    ObjectNode nested = n.putObject("nested");
    nested.putObject("deeper").put("z", 0);
    nested.putArray("emptyList");
    return n;
  }

  private static JsonNode parsedAttributes() {
    return JSON.readTree("{\"speed\": 3, \"tags\": [\"a\", \"b\"], \"pos\": {\"x\": 1, \"y\": 2}}");
  }

  static Message.Sync sampleSync() {
    return new Message.Sync(
        "Cursor", "c1", "owner-a", 7L, 123_456L, 1_700_000_000_123L, false, richAttributes());
  }

  static Stream<Message> samples() {
    Map<String, Integer> hops = new LinkedHashMap<>();
    hops.put("owner-a", 0);
    hops.put("owner-b", 1);
    hops.put("owner-ç", 17);
    return Stream.of(
        new Message.Hello(
            FrameCodec.PROTOCOL_VERSION,
            "node-1",
            List.of(new Message.OwnerAd("owner-a", 1L), new Message.OwnerAd("owner-b", 99L)),
            1 << 20),
        new Message.Hello(FrameCodec.PROTOCOL_VERSION, "", List.of(), 0),
        new Message.Routes(hops),
        new Message.Routes(Map.of()),
        sampleSync(),
        new Message.Sync(
            "Cursor", "gone", "owner-a", Long.MAX_VALUE, Long.MIN_VALUE, 0L, true,
            NODES.objectNode()),
        new Message.Withdraw("Cursor", "c1", "alice", 1, 7),
        new Message.Propose(
            1L, Message.ProposalKind.UPDATE, "Cursor", "c1", "owner-a", true,
            parsedAttributes(), null, 0),
        new Message.Propose(
            Long.MAX_VALUE, Message.ProposalKind.DELETE, "Cursor", "c2", "owner-b", false,
            NODES.objectNode(), "tx-42", Integer.MAX_VALUE),
        new Message.Create(77L, "Document", "owner-b", richAttributes(), 3),
        new Message.Transition(
            "Cursor", "c1", "owner-a", 3L, 42L, "tx-1", "node-2", 5L, true, parsedAttributes()),
        new Message.TransitionEnd("Cursor", "c1", "tx-1", "CONFIRMED"),
        new Message.Response(77L, sampleSync()),
        new Message.Error(0L, "NOT_FOUND", "no such object: Cursor/c9"),
        new Message.NoResponse(12L),
        new Message.OwnerRemoved("owner-b", 4L),
        new Message.Ping(-1L),
        new Message.Pong(Long.MIN_VALUE),
        new Message.GoAway("SHUTDOWN", "bye"),
        new Message.CatchUp(List.of(new Message.Mark("owner-a", 3, 42), new Message.Mark("owner-b", 1, 0))),
        new Message.CatchUp(List.of()),
        new Message.Watermark("owner-a", 3, 42, true));
  }

  @Test
  void samplesCoverEveryMessageType() {
    Set<MessageType> covered =
        samples()
            .map(Message::type)
            .collect(Collectors.toCollection(() -> EnumSet.noneOf(MessageType.class)));
    assertEquals(EnumSet.allOf(MessageType.class), covered);
  }

  // ---------------------------------------------------------------------------------------------
  // Round trip
  // ---------------------------------------------------------------------------------------------

  @ParameterizedTest
  @MethodSource("samples")
  void roundTrip(Message m) {
    byte[] body = codec.encode(m);
    assertTrue(body.length > 1);
    assertEquals(m.type().code(), body[0] & 0xff, "first byte is the type code");
    Message decoded = codec.decode(body);
    assertEquals(m, decoded);
    assertEquals(m.type(), decoded.type());
    // encoding is deterministic
    assertArrayEquals(body, codec.encode(decoded));
  }

  @Test
  void typeCodesAreDistinctAndResolvable() {
    for (MessageType t : MessageType.values()) {
      assertTrue(t.code() >= 1 && t.code() <= 255, t + " code in 1..255");
      assertEquals(t, MessageType.ofCode(t.code()));
    }
    assertEquals(null, MessageType.ofCode(0));
    assertEquals(null, MessageType.ofCode(-1));
    assertEquals(null, MessageType.ofCode(256));
  }

  @Test
  void unknownPropertiesAreIgnored_forwardCompatibility() {
    ObjectNode tree = bodyTree(codec.encode(sampleSync()));
    tree.put("addedInAFutureMinorVersion", "whatever");
    tree.putObject("anotherOne").put("n", 1);
    assertEquals(sampleSync(), codec.decode(frame(MessageType.SYNC, tree)));
  }

  // ---------------------------------------------------------------------------------------------
  // Decode errors
  // ---------------------------------------------------------------------------------------------

  @Test
  void emptyBodyIsRejected() {
    assertThrows(ProtocolException.class, () -> codec.decode(new byte[0]));
  }

  @ParameterizedTest
  @ValueSource(ints = {0, 18, 19, 100, 127, 128, 200, 255})
  void unknownTypeCodeIsRejected(int code) {
    byte[] valid = codec.encode(sampleSync());
    valid[0] = (byte) code;
    ProtocolException e = assertThrows(ProtocolException.class, () -> codec.decode(valid));
    assertTrue(e.getMessage().contains(Integer.toString(code)), e.getMessage());
  }

  @Test
  void typeByteAloneIsRejected() {
    for (MessageType t : MessageType.values()) {
      byte[] body = {(byte) t.code()};
      assertThrows(ProtocolException.class, () -> codec.decode(body), t.name());
    }
  }

  @ParameterizedTest
  @MethodSource("samples")
  void everyTruncationIsRejected(Message m) {
    byte[] body = codec.encode(m);
    for (int len = 1; len < body.length; len++) {
      byte[] truncated = Arrays.copyOf(body, len);
      int l = len;
      assertThrows(
          ProtocolException.class,
          () -> codec.decode(truncated),
          () -> "prefix of " + l + "/" + body.length + " bytes of " + m.type());
    }
  }

  @Test
  void trailingBytesAfterTheMessageAreRejected() {
    byte[] body = codec.encode(sampleSync());
    byte[] longer = Arrays.copyOf(body, body.length + 1);
    longer[body.length] = 0x01; // a complete CBOR value (unsigned 1) after the map
    assertThrows(ProtocolException.class, () -> codec.decode(longer));
  }

  @Test
  void garbageAfterTypeByteIsRejected() {
    // 0xff (a "break" outside an indefinite-length item) and reserved additional info 0x1c
    assertThrows(ProtocolException.class, () -> codec.decode(new byte[] {3, (byte) 0xff}));
    assertThrows(ProtocolException.class, () -> codec.decode(new byte[] {3, (byte) 0x1c}));
  }

  static Stream<Arguments> wrongShapes() {
    return Stream.of(
        Arguments.of("SYNC as an array", MessageType.SYNC, hex("83010203")),
        Arguments.of("SYNC as a text string", MessageType.SYNC, hex("6178")),
        Arguments.of("SYNC as an integer", MessageType.SYNC, hex("05")),
        Arguments.of("SYNC as CBOR null", MessageType.SYNC, hex("f6")),
        Arguments.of("SYNC as true", MessageType.SYNC, hex("f5")),
        Arguments.of("SYNC as a byte string", MessageType.SYNC, hex("43010203")),
        Arguments.of("PING as an integer", MessageType.PING, hex("05")),
        Arguments.of("PING as an array", MessageType.PING, hex("8105")),
        Arguments.of("ROUTES as an array", MessageType.ROUTES, hex("80")),
        Arguments.of("GOAWAY as a text string", MessageType.GOAWAY, hex("6178")),
        Arguments.of("an empty map for HELLO", MessageType.HELLO, hex("a0")));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("wrongShapes")
  void validCborOfTheWrongShapeIsRejected(String name, MessageType type, byte[] cbor) {
    byte[] body = new byte[cbor.length + 1];
    body[0] = (byte) type.code();
    System.arraycopy(cbor, 0, body, 1, cbor.length);
    assertThrows(ProtocolException.class, () -> codec.decode(body));
  }

  @Test
  void wrongFieldTypesAreRejected() {
    ObjectNode sync = bodyTree(codec.encode(sampleSync()));
    assertRejected(MessageType.SYNC, sync.deepCopy().put("e", "seven"), "text for a long");
    assertRejected(MessageType.SYNC, sync.deepCopy().putNull("s"), "null for a long");
    assertRejected(MessageType.SYNC, sync.deepCopy().putNull("d"), "null for a boolean");
    assertRejected(
        MessageType.SYNC, sync.deepCopy().set("k", NODES.objectNode()), "object for a string");

    ObjectNode hello =
        bodyTree(
            codec.encode(
                new Message.Hello(1, "n", List.of(new Message.OwnerAd("o", 1L)), 1024)));
    assertRejected(
        MessageType.HELLO, hello.deepCopy().set("o", NODES.objectNode()), "map for a list");
    assertRejected(
        MessageType.HELLO,
        hello.deepCopy().set("o", NODES.arrayNode().add("o")),
        "text for an OwnerAd");

    Message aPropose =
        samples().filter(Message.Propose.class::isInstance).findFirst().orElseThrow();
    ObjectNode propose = bodyTree(codec.encode(aPropose));
    assertRejected(
        MessageType.PROPOSE, propose.deepCopy().put("p", "MERGE"), "unknown enum constant");
  }

  /** Every non-nullable field of every message is required. */
  @ParameterizedTest
  @MethodSource("samples")
  void missingRequiredFieldIsRejected(Message m) {
    ObjectNode full = bodyTree(codec.encode(m));
    for (RecordComponent rc : m.getClass().getRecordComponents()) {
      if (isNullable(rc)) {
        continue;
      }
      ObjectNode without = full.deepCopy();
      assertNotNull(without.remove(wireName(rc)), "encoded body has field " + wireName(rc));
      assertRejected(m.type(), without, "missing " + m.type() + "." + rc.getName());
    }
  }

  @Test
  void missingNestedRequiredFieldIsRejected() {
    ObjectNode response = bodyTree(codec.encode(new Message.Response(5L, sampleSync())));
    ((ObjectNode) response.get("s")).remove("o");
    assertRejected(MessageType.RESPONSE, response, "Response.state without owner");

    ObjectNode hello =
        bodyTree(
            codec.encode(
                new Message.Hello(1, "n", List.of(new Message.OwnerAd("o", 1L)), 1024)));
    ((ObjectNode) hello.get("o").get(0)).remove("e");
    assertRejected(MessageType.HELLO, hello, "OwnerAd without epoch");
  }

  /**
   * The protocol package is {@code @NullMarked}: an explicit CBOR null for a non-nullable
   * reference field does not make a valid message and must not reach the engine as a Java null.
   */
  @ParameterizedTest
  @MethodSource("samples")
  void explicitNullForNonNullableReferenceFieldIsRejected(Message m) {
    ObjectNode full = bodyTree(codec.encode(m));
    List<String> accepted = new ArrayList<>();
    for (RecordComponent rc : m.getClass().getRecordComponents()) {
      if (rc.getType().isPrimitive() || isNullable(rc)) {
        continue;
      }
      ObjectNode withNull = full.deepCopy();
      withNull.putNull(wireName(rc));
      Message decoded;
      try {
        decoded = codec.decode(frame(m.type(), withNull));
      } catch (ProtocolException expected) {
        continue;
      }
      if (componentValue(rc, decoded) == null) {
        accepted.add(rc.getName());
      }
    }
    assertTrue(
        accepted.isEmpty(),
        () ->
            m.type()
                + ": an explicit CBOR null for non-nullable field(s) "
                + accepted
                + " decoded to a message holding Java null instead of a ProtocolException");
  }

  @Test
  void nullableTransitionIdRoundTripsAsNull() {
    Message.Propose p =
        new Message.Propose(
            9L, Message.ProposalKind.UPDATE, "T", "k", "o", false, NODES.objectNode(), null, 1);
    Message.Propose decoded = (Message.Propose) codec.decode(codec.encode(p));
    assertEquals(null, decoded.transitionId());
    assertEquals(p, decoded);
  }

  // ---------------------------------------------------------------------------------------------
  // Streaming SYNC / RESPONSE paths against databind
  // ---------------------------------------------------------------------------------------------

  /** Databind as the codec configured it before SYNC and RESPONSE were streamed: the reference. */
  private static Message.@Nullable Sync databindSync(byte[] body) {
    return databind(body, Message.Sync.class);
  }

  private static <M extends Message> @Nullable M databind(byte[] body, Class<M> type) {
    try {
      return CBORMapper.builder()
          .disable(tools.jackson.databind.DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
          .build()
          .readerFor(type)
          .with(tools.jackson.databind.DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
          .without(tools.jackson.databind.DeserializationFeature.ACCEPT_FLOAT_AS_INT)
          .with(tools.jackson.databind.DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
          .readValue(body, 1, body.length - 1);
    } catch (RuntimeException e) {
      return null;
    }
  }

  @Test
  void streamedEncodingsAreTheDatabindBytes() {
    assertSameBytesAsDatabind(goldenSync());
    Message.Sync tombstone =
        new Message.Sync("T", "k", "o", -1L, Long.MAX_VALUE, Long.MIN_VALUE, true, NODES.objectNode());
    assertSameBytesAsDatabind(tombstone);
    for (long r : new long[] {0, 23, 24, 255, 256, 65535, 65536, 0xffff_ffffL, 1L << 32, Long.MAX_VALUE,
        -1, -24, -25, -256, -257, Long.MIN_VALUE}) {
      assertSameBytesAsDatabind(new Message.Response(r, goldenSync()));
    }
    for (long r : new long[] {0, 24, 65536, Long.MAX_VALUE, -257, Long.MIN_VALUE}) {
      for (int hops : new int[] {0, 23, 24, Integer.MAX_VALUE, -1, Integer.MIN_VALUE}) {
        assertSameBytesAsDatabind(new Message.Propose(r, Message.ProposalKind.UPDATE, "Cursor", "c1",
            "owner-a", true, goldenSync().attributes(), "tx-1", hops));
        assertSameBytesAsDatabind(new Message.Propose(r, Message.ProposalKind.DELETE, "", "é€",
            "o", false, NODES.objectNode(), null, hops));
      }
    }
  }

  /** Writes part of an object, then throws a checked exception the signature does not declare. */
  static final class SneakySerializer extends tools.jackson.databind.ValueSerializer<Sneaky> {
    @Override
    public void serialize(Sneaky v, tools.jackson.core.JsonGenerator g, tools.jackson.databind.SerializationContext c) {
      g.writeStartObject();
      g.writeName("half");
      FrameCodecTest.<RuntimeException>sneakyThrow(new IOException("checked, undeclared"));
    }
  }

  @SuppressWarnings("unchecked")
  static <E extends Throwable> void sneakyThrow(Throwable t) throws E {
    throw (E) t;
  }

  @tools.jackson.databind.annotation.JsonSerialize(using = SneakySerializer.class)
  record Sneaky(String a) {}

  /** Encodes another frame on the same thread while its own frame is being written. */
  static final class NestingSerializer extends tools.jackson.databind.ValueSerializer<Nesting> {
    @Override
    public void serialize(Nesting v, tools.jackson.core.JsonGenerator g, tools.jackson.databind.SerializationContext c) {
      v.inner[0] = v.codec.encode(goldenSync());
      g.writeString("outer");
    }
  }

  @tools.jackson.databind.annotation.JsonSerialize(using = NestingSerializer.class)
  record Nesting(FrameCodec codec, byte[][] inner) {}

  @Test
  void aCheckedExceptionThrownUndeclaredMidFrameLeavesTheWriterClean() {
    Message.Propose propose = new Message.Propose(5, Message.ProposalKind.UPDATE, "Cursor", "c1",
        "owner-a", true, goldenSync().attributes(), null, 1);
    for (int i = 0; i < 3; i++) {
      Throwable t = assertThrows(Throwable.class, () -> codec.encodeSync(
          "T", "k", "o", 1, 2, 3, false, new Sneaky("x"), JSON));
      assertTrue(t instanceof IOException, t.toString());
      assertSameBytesAsDatabind(goldenSync());
      assertSameBytesAsDatabind(propose);
    }
  }

  @Test
  void aSerializerThatEncodesAFrameOfItsOwnGetsAWholeFrame_andSoDoesItsCaller() {
    byte[][] inner = new byte[1][];
    byte[] outer = codec.encodeSync("T", "k", "o", 1, 2, 3, false, new Nesting(codec, inner), JSON);
    assertEquals(goldenSync(), codec.decode(inner[0]));
    Message.Sync decoded = (Message.Sync) codec.decode(outer);
    assertEquals("outer", decoded.attributes().asString());
    assertEquals("k", decoded.key());
    assertSameBytesAsDatabind(goldenSync());
  }

  /** A value whose serialization fails once its map has begun. */
  record Failing(String a) {
    @Override
    public String a() {
      throw new IllegalStateException("unreadable");
    }
  }

  @Test
  void aWriteThatFailsMidFrameLeavesTheThreadsWriterClean() {
    Message.Propose propose = new Message.Propose(5, Message.ProposalKind.UPDATE, "Cursor", "c1",
        "owner-a", true, goldenSync().attributes(), null, 1);
    for (int i = 0; i < 3; i++) {
      // Fails after the SYNC's fields are written, inside its map: nothing of it may reach the next frame.
      assertThrows(RuntimeException.class, () -> codec.encodeSync(
          "T", "k", "o", 1, 2, 3, false, new Failing("x"), JSON));
      assertSameBytesAsDatabind(propose);
      assertSameBytesAsDatabind(goldenSync());
    }
  }

  /** Encodes through databind, as every other message type still is. */
  private void assertSameBytesAsDatabind(Message m) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    out.write(m.type().code());
    CBOR.writer().writeValue(out, m);
    assertEquals(HexFormat.of().formatHex(out.toByteArray()), HexFormat.of().formatHex(codec.encode(m)), m.toString());
  }

  @Test
  void syncWrittenFromTheValueDecodesToTheSyncOfItsTree() {
    record Item(String id, long serial, double x, List<String> tags, @Nullable String note) {}
    Item item = new Item("i-1", 7, 1.5, List.of("a", "b"), null);
    Message.Sync viaTree =
        new Message.Sync("Item", "i-1", "owner-a", 2, 9, 1_700_000_000_123L, false, JSON.valueToTree(item));
    // Not always the same bytes (a list written from the value has a definite length), the same
    // message.
    assertEquals(
        codec.decode(codec.encode(viaTree)),
        codec.decode(codec.encodeSync("Item", "i-1", "owner-a", 2, 9, 1_700_000_000_123L, false, item, JSON)));
  }

  @Test
  void responseAroundAnEncodedSyncDecodesToTheResponse() {
    byte[] sync = codec.encode(goldenSync());
    assertEquals(new Message.Response(77, goldenSync()), codec.decode(codec.encodeResponse(77, sync)));
    assertThrows(IllegalArgumentException.class, () -> codec.encodeResponse(1, new byte[] {3}));
    assertThrows(
        IllegalArgumentException.class,
        () -> codec.encodeResponse(1, codec.encode(new Message.Ping(1))));
  }

  /**
   * Differential, seeded: mutated SYNC, RESPONSE and PROPOSE bodies decode to what databind binds, or are
   * refused. The streamed reader may be stricter (it takes no coercions: a text where an integer
   * is due, a number for a boolean), never more lenient.
   */
  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {1, 2, 3, 4})
  void streamedReaderAgreesWithDatabind(long seed) {
    FrameMutator gen = new FrameMutator();
    int compared = 0;
    int accepted = 0;
    for (long i = 0; i < 5_000; i++) {
      byte[] body = gen.body(seed, i);
      if (body.length == 0
          || (body[0] != MessageType.SYNC.code()
              && body[0] != MessageType.RESPONSE.code()
              && body[0] != MessageType.PROPOSE.code())) {
        continue;
      }
      compared++;
      Message streamed;
      try {
        streamed = codec.decode(body);
      } catch (ProtocolException e) {
        continue;
      }
      accepted++;
      Message reference =
          body[0] == MessageType.SYNC.code() ? databindSync(body)
              : body[0] == MessageType.RESPONSE.code() ? databind(body, Message.Response.class)
              : databind(body, Message.Propose.class);
      assertEquals(reference, streamed, () -> "seed " + seed + " input " + HexFormat.of().formatHex(body));
    }
    assertTrue(compared > 500 && accepted > 50, "compared " + compared + ", accepted " + accepted);
  }

  // ---------------------------------------------------------------------------------------------
  // Attributes bound while decoding (decodeSync)
  // ---------------------------------------------------------------------------------------------

  /** The attributes of FrameMutator's cursors and shapes, as an application would declare them. */
  record Cursor(String id, double x, double y, @Nullable Object tag) {}

  record Shape(String id, String team, double x, double y, boolean locked) {}

  /** Binds as an engine does: unknown properties refused, trailing tokens allowed. */
  private static final JsonMapper STRICT =
      JsonMapper.builder().enable(tools.jackson.databind.DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES).build();

  private static final FrameCodec.AttributeBinder BINDER =
      (type, key, owner) -> switch (type) {
        case "Cursor" -> STRICT.readerFor(Cursor.class)
            .without(tools.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
        case "Shape" -> STRICT.readerFor(Shape.class)
            .without(tools.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
        default -> null;
      };

  @Test
  void boundSyncCarriesTheValueItsTreeBindsTo_andNoTree() {
    Message.Sync sync = new Message.Sync("Cursor", "c1", "owner-a", 1, 7, 5, false,
        NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0));
    FrameCodec.BoundSync b = codec.decodeSync(codec.encode(sync), BINDER);
    assertEquals(new Cursor("c1", 1.5, -2.0, null), b.value());
    assertTrue(b.sync().attributes().isMissingNode());
    assertEquals(new Message.Sync("Cursor", "c1", "owner-a", 1, 7, 5, false, b.sync().attributes()), b.sync());
  }

  @Test
  void syncOfATypeWithoutReader_aDeletedOne_orOneThatDoesNotBind_keepsItsTree() {
    ObjectNode attrs = NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0);
    Message.Sync unknown = new Message.Sync("Other", "c1", "owner-a", 1, 7, 5, false, attrs);
    Message.Sync deleted = new Message.Sync("Cursor", "c1", "owner-a", 1, 8, 5, true, NODES.objectNode());
    Message.Sync misfit = new Message.Sync("Cursor", "c1", "owner-a", 1, 9, 5, false,
        attrs.deepCopy().put("z", 3)); // an attribute the type does not declare
    for (Message.Sync m : List.of(unknown, deleted, misfit)) {
      FrameCodec.BoundSync b = codec.decodeSync(codec.encode(m), BINDER);
      assertEquals(m, b.sync());
      assertEquals(null, b.value());
    }
  }

  @Test
  void unassignedSimpleValueInBoundAttributesIsRefusedAsByDecode() {
    Message.Sync sync = new Message.Sync("Cursor", "c1", "owner-a", 1, 7, 5, false,
        NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0).put("tag", true));
    byte[] body = codec.encode(sync);
    int at = lastIndexOf(body, (byte) 0xf5); // true
    body[at] = (byte) 0xf0; // simple(16): unassigned
    assertThrows(ProtocolException.class, () -> codec.decode(body));
    assertThrows(ProtocolException.class, () -> codec.decodeSync(body, BINDER));
  }

  /** A SYNC body whose map is written by {@code fields}: any order, any repetition. */
  private static byte[] rawSync(java.util.function.Consumer<tools.jackson.core.JsonGenerator> fields) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    out.write(MessageType.SYNC.code());
    try (tools.jackson.core.JsonGenerator g = CBOR.createGenerator(out)) {
      g.writeStartObject();
      g.writeStringProperty("t", "Cursor");
      g.writeStringProperty("k", "c1");
      g.writeStringProperty("o", "owner-a");
      g.writeNumberProperty("e", 1);
      g.writeNumberProperty("s", 7);
      g.writeNumberProperty("c", 5);
      g.writeBooleanProperty("d", false);
      g.writeName("a");
      g.writeStartObject();
      g.writeStringProperty("id", "c1");
      g.writeNumberProperty("x", 1.5);
      g.writeNumberProperty("y", -2.0);
      g.writeEndObject();
      fields.accept(g);
      g.writeEndObject();
    }
    return out.toByteArray();
  }

  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"type", "deleted", "attributes", "attributesNull", "key"})
  void aFieldGivenAgainAfterTheAttributesIsDecodedAsDecodeDoes_neverWithAStaleValue(String again) {
    byte[] body = rawSync(g -> {
      switch (again) {
        case "type" -> g.writeStringProperty("t", "Shape");
        case "deleted" -> g.writeBooleanProperty("d", true);
        case "attributes" -> {
          g.writeName("a");
          g.writeStartObject();
          g.writeStringProperty("id", "c9");
          g.writeNumberProperty("x", 9.0);
          g.writeNumberProperty("y", 9.0);
          g.writeEndObject();
        }
        case "attributesNull" -> g.writeNullProperty("a");
        default -> g.writeStringProperty("k", "c2");
      }
    });
    Message.Sync reference = (Message.Sync) codec.decode(body);
    FrameCodec.BoundSync b = codec.decodeSync(body, BINDER);
    assertEquals(reference, b.sync());
    assertEquals(null, b.value());
  }

  /** A type that ignores attributes it does not declare, as the demo's types do. */
  @com.fasterxml.jackson.annotation.JsonIgnoreProperties(ignoreUnknown = true)
  record Lenient(String id, double x, double y) {}

  @Test
  void anUnassignedSimpleValueInsideAnIgnoredAttributeIsRefusedAsByDecode() {
    ObjectNode attrs = NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0);
    attrs.putArray("extra").add(true);
    byte[] body = codec.encode(new Message.Sync("Lenient", "c1", "owner-a", 1, 7, 5, false, attrs));
    body[lastIndexOf(body, (byte) 0xf5)] = (byte) 0xf0; // simple(16), inside the ignored "extra"
    FrameCodec.AttributeBinder lenient = (type, key, owner) -> STRICT.readerFor(Lenient.class)
        .without(tools.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    assertThrows(ProtocolException.class, () -> codec.decode(body));
    assertThrows(ProtocolException.class, () -> codec.decodeSync(body, lenient));
  }

  @Test
  void aCodecThatEncodedIsNotKeptAliveByTheThreadItEncodedOn() {
    FrameCodec used = new FrameCodec();
    used.encodeSync("Cursor", "c1", "owner-a", 1, 1, 1, false, NODES.objectNode().put("x", 1), JSON);
    java.lang.ref.WeakReference<FrameCodec> ref = new java.lang.ref.WeakReference<>(used);
    used = null;
    for (int i = 0; i < 10 && ref.get() != null; i++) {
      System.gc(); // a full collection clears the weak reference if nothing else holds the codec
    }
    assertEquals(null, ref.get(), "the codec is still reachable");
  }

  private static int lastIndexOf(byte[] body, byte b) {
    for (int i = body.length - 1; i >= 0; i--) {
      if (body[i] == b) {
        return i;
      }
    }
    throw new AssertionError("no " + b);
  }

  /**
   * Differential, seeded: a mutated SYNC body is refused by decodeSync exactly when decode refuses
   * it; accepted, it has the same fields, and a bound value is what its tree binds to.
   */
  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {5, 6, 7, 8})
  void boundDecodeAgreesWithDecodeAndTreeBinding(long seed) {
    FrameMutator gen = new FrameMutator();
    int compared = 0;
    int bound = 0;
    for (long i = 0; i < 10_000; i++) {
      byte[] body = gen.body(seed, i);
      if (body.length == 0 || body[0] != MessageType.SYNC.code()) {
        continue;
      }
      compared++;
      String input = "seed " + seed + " input " + HexFormat.of().formatHex(body);
      Message reference;
      try {
        reference = codec.decode(body);
      } catch (ProtocolException e) {
        assertThrows(ProtocolException.class, () -> codec.decodeSync(body, BINDER), input);
        continue;
      }
      FrameCodec.BoundSync b = codec.decodeSync(body, BINDER);
      Message.Sync ref = (Message.Sync) reference;
      if (b.value() == null) {
        assertEquals(ref, b.sync(), input);
        continue;
      }
      bound++;
      assertEquals(
          new Message.Sync(ref.objectType(), ref.key(), ref.owner(), ref.epoch(), ref.serial(),
              ref.committedAt(), ref.deleted(), b.sync().attributes()),
          b.sync(), input);
      assertEquals(STRICT.treeToValue(ref.attributes(), b.value().getClass()), b.value(), input);
    }
    assertTrue(compared > 500 && bound > 50, "compared " + compared + ", bound " + bound);
  }

  // ---------------------------------------------------------------------------------------------
  // RESPONSE decoded from its embedded SYNC (decodeResponse)
  // ---------------------------------------------------------------------------------------------

  @ParameterizedTest(name = "request id {0}")
  @ValueSource(longs = {0, 23, 24, 255, 256, 65_535, 65_536, 4_294_967_295L, 4_294_967_296L, Long.MAX_VALUE})
  void responseAroundASyncCarriesThatSyncFrame_andItsBoundValue(long requestId) {
    Message.Sync sync = new Message.Sync("Cursor", "c1", "owner-a", 1, 7, 5, false,
        NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0));
    byte[] syncFrame = codec.encode(sync);
    FrameCodec.BoundResponse b = codec.decodeResponse(codec.encodeResponse(requestId, syncFrame), BINDER);
    assertEquals(requestId, b.response().inReplyTo());
    assertArrayEquals(syncFrame, b.syncFrame());
    assertEquals(new Cursor("c1", 1.5, -2.0, null), b.value());
    assertEquals(codec.decodeSync(syncFrame, BINDER).sync(), b.response().state());
  }

  @Test
  void aResponseToARequestNotAwaitedIsReadAsATree_andTheBinderNeverRuns() {
    Message.Sync sync = new Message.Sync("Cursor", "c1", "owner-a", 1, 7, 5, false,
        NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0));
    byte[] syncFrame = codec.encode(sync);
    byte[] body = codec.encodeResponse(42, syncFrame);
    List<Long> asked = new ArrayList<>();
    int[] binderCalls = {0};
    FrameCodec.AttributeBinder counting = (type, key, owner) -> {
      binderCalls[0]++;
      return BINDER.readerFor(type, key, owner);
    };

    FrameCodec.BoundResponse unawaited = codec.decodeResponse(body, id -> asked.add(id) && false, counting);
    assertEquals(List.of(42L), asked);
    assertEquals(0, binderCalls[0], "no binder for an answer nobody awaits");
    assertEquals(null, unawaited.value());
    assertEquals(new Message.Response(42, sync), unawaited.response(), "the state read as a tree");
    assertArrayEquals(syncFrame, unawaited.syncFrame());

    FrameCodec.BoundResponse awaited = codec.decodeResponse(body, id -> id == 42, counting);
    assertEquals(1, binderCalls[0]);
    assertEquals(new Cursor("c1", 1.5, -2.0, null), awaited.value());

    // Checked all the same: a malformed answer is refused whether awaited or not.
    byte[] truncated = Arrays.copyOf(body, body.length - 3);
    assertThrows(ProtocolException.class, () -> codec.decodeResponse(truncated, id -> false, counting));
  }

  @Test
  void responseInAnotherLayoutIsDecodedAsByDecode_withoutAFrame() {
    Message.Sync sync = new Message.Sync("Cursor", "c1", "owner-a", 1, 7, 5, false,
        NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0));
    // "s" before "r", a definite map: what another implementation may write.
    ObjectNode tree = NODES.objectNode();
    tree.set("s", CBOR.valueToTree(sync));
    tree.put("r", 9);
    byte[] cbor = CBOR.writeValueAsBytes(tree);
    byte[] body = new byte[cbor.length + 1];
    body[0] = (byte) MessageType.RESPONSE.code();
    System.arraycopy(cbor, 0, body, 1, cbor.length);
    FrameCodec.BoundResponse b = codec.decodeResponse(body, BINDER);
    assertEquals(codec.decode(body), b.response());
    assertEquals(new Message.Response(9, sync), b.response());
    assertEquals(null, b.syncFrame());
    assertEquals(null, b.value());
    assertThrows(IllegalArgumentException.class, () -> codec.decodeResponse(codec.encode(sync), BINDER));
  }

  /**
   * The embedded state is read inside the RESPONSE, as decode reads it, so the nesting limit counts
   * the RESPONSE's own level: a state at the limit as a SYNC is one level too deep in a RESPONSE.
   */
  @ParameterizedTest(name = "{0} arrays, type {1}")
  @CsvSource({"497, Cursor", "498, Cursor", "497, Other", "498, Other"})
  void nestingLimitCountsTheResponseLevel(int arrays, String type) {
    ObjectNode attrs = NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0);
    tools.jackson.databind.node.ArrayNode deepest = attrs.putArray("tag");
    for (int i = 1; i < arrays; i++) {
      deepest = deepest.addArray();
    }
    deepest.add(0);
    byte[] sync = codec.encode(new Message.Sync(type, "c1", "owner-a", 1, 7, 5, false, attrs));
    byte[] body = codec.encodeResponse(5, sync);
    codec.decode(sync); // 2 + arrays levels: within the limit as a SYNC either way
    if (arrays == 497) {
      FrameCodec.BoundResponse b = codec.decodeResponse(body, BINDER);
      assertEquals(codec.decode(body), new Message.Response(5, (Message.Sync) codec.decode(b.syncFrame())));
    } else {
      assertThrows(ProtocolException.class, () -> codec.decode(body));
      assertThrows(ProtocolException.class, () -> codec.decodeResponse(body, BINDER));
    }
  }

  /**
   * Differential, seeded: a mutated RESPONSE body is refused by decodeResponse exactly when decode
   * refuses it; accepted, it has the same request id and state fields, a bound value is what the
   * state's tree binds to, and an embedded frame decodes to the same state.
   */
  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {9, 10, 11, 12})
  void boundResponseAgreesWithDecode(long seed) {
    FrameMutator gen = new FrameMutator();
    int compared = 0;
    int framed = 0;
    for (long i = 0; i < 40_000; i++) {
      byte[] body = gen.body(seed, i);
      if (body.length == 0 || body[0] != MessageType.RESPONSE.code()) {
        continue;
      }
      compared++;
      String input = "seed " + seed + " input " + HexFormat.of().formatHex(body);
      Message.Response ref;
      try {
        ref = (Message.Response) codec.decode(body);
      } catch (ProtocolException e) {
        assertThrows(ProtocolException.class, () -> codec.decodeResponse(body, BINDER), input);
        continue;
      }
      FrameCodec.BoundResponse b = codec.decodeResponse(body, BINDER);
      assertEquals(ref.inReplyTo(), b.response().inReplyTo(), input);
      Message.Sync s = ref.state();
      if (b.syncFrame() != null) {
        framed++;
        assertEquals(s, codec.decode(b.syncFrame()), input);
      }
      if (b.value() == null) {
        assertEquals(ref, b.response(), input);
        continue;
      }
      assertEquals(
          new Message.Sync(s.objectType(), s.key(), s.owner(), s.epoch(), s.serial(),
              s.committedAt(), s.deleted(), b.response().state().attributes()),
          b.response().state(), input);
      assertEquals(STRICT.treeToValue(s.attributes(), b.value().getClass()), b.value(), input);
    }
    assertTrue(compared > 1_000 && framed > 60, "compared " + compared + ", framed " + framed);
  }

  // ---------------------------------------------------------------------------------------------
  // Golden vectors (src/test/resources/golden/*.hex)
  // ---------------------------------------------------------------------------------------------

  static Message.Sync goldenSync() {
    ObjectNode attrs = NODES.objectNode();
    attrs.put("x", 12);
    attrs.put("label", "cursor");
    return new Message.Sync("Cursor", "c1", "owner-a", 3L, 42L, 1_700_000_000_000L, false, attrs);
  }

  static Message.Hello goldenHello() {
    return new Message.Hello(
        1,
        "node-a",
        List.of(new Message.OwnerAd("owner-a", 3L), new Message.OwnerAd("owner-b", 0L)),
        65536);
  }

  static Stream<Arguments> goldens() {
    return Stream.of(
        Arguments.of("sync.hex", goldenSync()), Arguments.of("hello.hex", goldenHello()));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("goldens")
  void encodingMatchesGoldenBytes(String file, Message m) throws IOException {
    byte[] golden = readGolden(file);
    assertEquals(
        HexFormat.of().formatHex(golden),
        HexFormat.of().formatHex(codec.encode(m)),
        "encoding of " + m.type() + " changed: the wire format is frozen");
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("goldens")
  void decodingGoldenBytesYieldsTheMessage(String file, Message m) throws IOException {
    byte[] golden = readGolden(file);
    assertEquals(m.type().code(), golden[0] & 0xff);
    assertEquals(m, codec.decode(golden));
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers
  // ---------------------------------------------------------------------------------------------

  private static byte[] readGolden(String file) throws IOException {
    try (InputStream in = FrameCodecTest.class.getResourceAsStream("/golden/" + file)) {
      assertNotNull(in, "missing fixture golden/" + file);
      String text = new String(in.readAllBytes(), StandardCharsets.US_ASCII);
      String hex =
          text.lines()
              .filter(l -> !l.stripLeading().startsWith("#"))
              .collect(Collectors.joining())
              .replaceAll("\\s+", "");
      return HexFormat.of().parseHex(hex);
    }
  }

  private static byte[] hex(String s) {
    return HexFormat.of().parseHex(s);
  }

  /** The CBOR map of an encoded frame body, as a tree. */
  private static ObjectNode bodyTree(byte[] body) {
    return (ObjectNode) CBOR.readTree(Arrays.copyOfRange(body, 1, body.length));
  }

  private static byte[] frame(MessageType type, JsonNode tree) {
    byte[] cbor = CBOR.writeValueAsBytes(tree);
    byte[] body = new byte[cbor.length + 1];
    body[0] = (byte) type.code();
    System.arraycopy(cbor, 0, body, 1, cbor.length);
    return body;
  }

  private void assertRejected(MessageType type, JsonNode tree, String what) {
    byte[] body = frame(type, tree);
    assertThrows(
        ProtocolException.class,
        () -> codec.decode(body),
        () -> what + " was accepted: " + codec.decode(body));
  }

  private static boolean isNullable(RecordComponent rc) {
    return rc.getAnnotatedType().isAnnotationPresent(Nullable.class)
        || rc.isAnnotationPresent(Nullable.class);
  }

  private static @Nullable Object componentValue(RecordComponent rc, Message m) {
    try {
      return rc.getAccessor().invoke(m);
    } catch (ReflectiveOperationException e) {
      throw new AssertionError(e);
    }
  }

  /** The CBOR key a record component travels under (its {@code @JsonProperty} name). */
  private static String wireName(java.lang.reflect.RecordComponent rc) {
    com.fasterxml.jackson.annotation.JsonProperty p =
        rc.getAccessor().getAnnotation(com.fasterxml.jackson.annotation.JsonProperty.class);
    return p != null ? p.value() : rc.getName();
  }
}
