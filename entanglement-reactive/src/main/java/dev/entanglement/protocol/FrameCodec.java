package dev.entanglement.protocol;

import java.io.ByteArrayOutputStream;
import java.util.EnumMap;
import java.util.Map;
import java.util.function.LongPredicate;
import org.jspecify.annotations.Nullable;
import tools.jackson.core.JacksonException;
import tools.jackson.core.JsonGenerator;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.ObjectReadContext;
import tools.jackson.core.util.JsonParserDelegate;
import tools.jackson.core.util.JsonRecyclerPools;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.ObjectMapper;
import tools.jackson.databind.ObjectReader;
import tools.jackson.databind.ObjectWriter;
import tools.jackson.databind.node.MissingNode;
import tools.jackson.dataformat.cbor.CBORFactory;
import tools.jackson.dataformat.cbor.CBORMapper;

/**
 * Encodes and decodes frame bodies: {@code [type code: 1 byte][CBOR map of the record's fields]}.
 * The length prefix and flags belong to the transport framing, not to this codec.
 *
 * <p>SYNC and RESPONSE, the messages of the steady state, and PROPOSE, the message of a proposal's
 * round trip, are written and read with the streaming API rather than bound as records: the same
 * bytes (the golden vectors and {@code FrameCodecTest} pin them), without a per-message databind
 * context or record instantiation. Every other message is bound by databind.
 * A SYNC's attributes can be written straight from the object's value ({@link #encodeSync}), and
 * a RESPONSE can be assembled around an already encoded SYNC ({@link #encodeResponse}), so an owner
 * encodes a version once whether it floods it or answers a proposal with it.
 *
 * <p>Thread-safe: it holds immutable Jackson readers and writers; SYNCs and PROPOSEs are written by
 * one writer per thread shared by all codecs (see {@code FrameWriter}).
 */
public final class FrameCodec {
  /** Version of this body format; a HELLO with another major version is refused. */
  public static final int PROTOCOL_VERSION = 1;

  private static final Map<MessageType, Class<? extends Message>> CLASSES =
      new EnumMap<>(MessageType.class);

  static {
    CLASSES.put(MessageType.HELLO, Message.Hello.class);
    CLASSES.put(MessageType.ROUTES, Message.Routes.class);
    CLASSES.put(MessageType.WITHDRAW, Message.Withdraw.class);
    CLASSES.put(MessageType.PROPOSE, Message.Propose.class);
    CLASSES.put(MessageType.CREATE, Message.Create.class);
    CLASSES.put(MessageType.TRANSITION, Message.Transition.class);
    CLASSES.put(MessageType.TRANSITION_END, Message.TransitionEnd.class);
    CLASSES.put(MessageType.ERROR, Message.Error.class);
    CLASSES.put(MessageType.NO_RESPONSE, Message.NoResponse.class);
    CLASSES.put(MessageType.OWNER_REMOVED, Message.OwnerRemoved.class);
    CLASSES.put(MessageType.PING, Message.Ping.class);
    CLASSES.put(MessageType.PONG, Message.Pong.class);
    CLASSES.put(MessageType.GOAWAY, Message.GoAway.class);
    CLASSES.put(MessageType.CATCH_UP, Message.CatchUp.class);
    CLASSES.put(MessageType.WATERMARK, Message.Watermark.class);
  }

  private static final int INDEFINITE_MAP = 0xbf;
  private static final int BREAK = 0xff;
  /** CBOR text of length 1 (major type 3); the field names are one ASCII letter. */
  private static final int TEXT_1 = 0x61;

  private final ObjectMapper mapper;
  private final ObjectWriter writer;
  private final ObjectReader treeReader;
  private final Map<MessageType, ObjectReader> readers = new EnumMap<>(MessageType.class);
  /**
   * One frame writer per thread, shared by every codec: every codec's generators are configured
   * alike, and a writer must not refer to its codec (a thread's value would keep it alive).
   */
  private static final ThreadLocal<FrameWriter> FRAME_WRITERS =
      ThreadLocal.withInitial(() -> new FrameWriter(CBORMapper.builder().build()));

  public FrameCodec() {
    // Buffers recycled per thread: a body is read on one thread, start to end, and the default
    // pool (one concurrent deque per factory) costs two atomic deque operations per parser, one
    // parser per frame.
    this(CBORMapper.builder(
            CBORFactory.builder().recyclerPool(JsonRecyclerPools.threadLocalPool()).build())
        .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
        .build());
  }

  private FrameCodec(ObjectMapper mapper) {
    this.mapper = mapper;
    this.writer = mapper.writer();
    // Reads a field's value in the middle of a body: what follows it is not trailing data.
    this.treeReader =
        mapper.readerFor(JsonNode.class).without(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    CLASSES.forEach(
        (type, cls) ->
            readers.put(
                type,
                mapper
                    .readerFor(cls)
                    .with(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
                    .without(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
                    .with(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)));
  }

  /** Encodes one message into a new frame body. */
  public byte[] encode(Message message) {
    if (message instanceof Message.Sync s) {
      return encodeSync(
          s.objectType(), s.key(), s.owner(), s.epoch(), s.serial(), s.committedAt(), s.deleted(),
          s.attributes(), mapper);
    } else if (message instanceof Message.Response r) {
      return encodeResponse(r.inReplyTo(), encode(r.state()));
    } else if (message instanceof Message.Propose p) {
      return frameWriter().propose(p, mapper);
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream(64);
    out.write(message.type().code());
    writer.writeValue(out, message);
    return out.toByteArray();
  }

  /**
   * Encodes a SYNC whose attributes are {@code attributes} as serialized by {@code attributeMapper}:
   * an attribute tree, or the object's value itself, which spares building a tree. Written from a
   * tree, the bytes are those of {@link #encode}; written from a value they decode to the same
   * message, though not always byte for byte (a collection written from the value has a definite
   * length, the same one from a tree an indefinite length).
   */
  public byte[] encodeSync(
      String objectType,
      String key,
      String owner,
      long epoch,
      long serial,
      long committedAt,
      boolean deleted,
      Object attributes,
      ObjectMapper attributeMapper) {
    return frameWriter().sync(
        objectType, key, owner, epoch, serial, committedAt, deleted, attributes, attributeMapper);
  }

  /**
   * The thread's frame writer, or a new one while it is writing: a value's serializer that encodes
   * a frame of its own (on the same thread) must not write into the frame being written.
   */
  private static FrameWriter frameWriter() {
    FrameWriter w = FRAME_WRITERS.get();
    return w.busy ? new FrameWriter(w.generators) : w;
  }

  /**
   * Writes the bodies of the hand-written messages (SYNC, PROPOSE) for one thread with one
   * generator kept open over a reusable buffer: each body is a root-level CBOR value of that
   * generator, flushed and copied out, so a frame costs its own bytes plus what databind allocates
   * for the attributes, not a generator, its contexts and a growing stream per frame (which made
   * encoding the largest source of garbage on a sender).
   *
   * <p>Invariant: between calls ({@code busy} false) the generator is at the root with nothing
   * buffered and the buffer is empty. A write that throws leaves neither in a known state, so both
   * are dropped; a buffer grown past {@value #RETAINED_BUFFER} bytes by a large object is not kept.
   */
  private static final class FrameWriter {
    private final ObjectMapper generators;
    private final FrameBuffer out = new FrameBuffer();
    private @Nullable JsonGenerator generator;
    /** A frame is being written: set by {@code begin}, cleared by {@code end} and {@code discard}. */
    private boolean busy;

    FrameWriter(ObjectMapper generators) {
      this.generators = generators;
    }

    byte[] sync(
        String objectType, String key, String owner, long epoch, long serial, long committedAt,
        boolean deleted, Object attributes, ObjectMapper attributeMapper) {
      JsonGenerator g = begin(MessageType.SYNC);
      try {
        g.writeStartObject();
        g.writeStringProperty("t", objectType);
        g.writeStringProperty("k", key);
        g.writeStringProperty("o", owner);
        g.writeNumberProperty("e", epoch);
        g.writeNumberProperty("s", serial);
        g.writeNumberProperty("c", committedAt);
        g.writeBooleanProperty("d", deleted);
        g.writeName("a");
        attributeMapper.writeValue(g, attributes);
        g.writeEndObject();
      } catch (Throwable e) { // a serializer may throw a checked exception undeclared
        discard();
        throw e;
      }
      return end(g);
    }

    /** A PROPOSE, field by field in the record's order: the bytes databind writes for it. */
    byte[] propose(Message.Propose m, ObjectMapper attributeMapper) {
      JsonGenerator g = begin(MessageType.PROPOSE);
      try {
        g.writeStartObject();
        g.writeNumberProperty("r", m.requestId());
        g.writeStringProperty("p", m.kind().name());
        g.writeStringProperty("t", m.objectType());
        g.writeStringProperty("k", m.key());
        g.writeStringProperty("o", m.owner());
        g.writeBooleanProperty("x", m.partial());
        g.writeName("a");
        attributeMapper.writeValue(g, m.attributes());
        g.writeStringProperty("i", m.transitionId());
        g.writeNumberProperty("h", m.hops());
        g.writeEndObject();
      } catch (Throwable e) { // a serializer may throw a checked exception undeclared
        discard();
        throw e;
      }
      return end(g);
    }

    private JsonGenerator begin(MessageType type) {
      busy = true;
      out.reset();
      out.write(type.code());
      JsonGenerator g = generator;
      if (g == null) {
        g = generators.createGenerator(out);
        generator = g;
      }
      return g;
    }

    /** Flushes a body written whole and copies it out. */
    private byte[] end(JsonGenerator g) {
      boolean copied = false;
      try {
        g.flush();
        byte[] body = out.toByteArray();
        copied = true;
        return body;
      } finally {
        busy = false;
        if (!copied || out.capacity() > RETAINED_BUFFER) {
          discard();
        }
      }
    }

    private void discard() {
      busy = false;
      JsonGenerator g = generator;
      generator = null;
      if (g != null) {
        try {
          g.close(); // gives its buffer back to the recycler; what it writes is dropped below
        } catch (JacksonException ignored) {
          // a generator in an unknown state: nothing more to release
        }
      }
      out.drop();
    }
  }

  /** Bytes a thread's {@link FrameWriter} keeps between frames at most: 64 KiB. */
  private static final int RETAINED_BUFFER = 64 * 1024;

  /** A {@link ByteArrayOutputStream} that can give up its array. */
  private static final class FrameBuffer extends ByteArrayOutputStream {
    FrameBuffer() {
      super(256);
    }

    int capacity() {
      return buf.length;
    }

    /** Replaces the array by a small one and empties the stream. */
    void drop() {
      buf = new byte[256];
      count = 0;
    }
  }

  /**
   * Encodes a RESPONSE around an encoded SYNC frame body, without decoding or re-encoding the
   * state: the bytes are those of {@link #encode} for {@code Response(inReplyTo, sync)}.
   */
  public byte[] encodeResponse(long inReplyTo, byte[] syncFrame) {
    if (syncFrame.length < 2 || syncFrame[0] != MessageType.SYNC.code()) {
      throw new IllegalArgumentException("not a SYNC frame body");
    }
    int idBytes = integerBytes(inReplyTo);
    // [type][map]["r"][id]["s"][the SYNC's map, its own type byte dropped][BREAK], sized exactly
    byte[] out = new byte[1 + 1 + 2 + idBytes + 2 + (syncFrame.length - 1) + 1];
    int at = 0;
    out[at++] = (byte) MessageType.RESPONSE.code();
    out[at++] = (byte) INDEFINITE_MAP;
    out[at++] = (byte) TEXT_1;
    out[at++] = 'r';
    at = writeInteger(out, at, inReplyTo, idBytes);
    out[at++] = (byte) TEXT_1;
    out[at++] = 's';
    System.arraycopy(syncFrame, 1, out, at, syncFrame.length - 1);
    out[out.length - 1] = (byte) BREAK;
    return out;
  }

  /** How many bytes {@link #writeInteger} takes for {@code value}: its head and argument. */
  private static int integerBytes(long value) {
    long v = value < 0 ? -1 - value : value;
    if (v < 24) {
      return 1;
    } else if (v <= 0xff) {
      return 2;
    } else if (v <= 0xffff) {
      return 3;
    } else if (v <= 0xffff_ffffL) {
      return 5;
    }
    return 9;
  }

  /**
   * Writes a CBOR integer (major type 0 or 1) in its shortest form, as Jackson's generator writes
   * it, taking {@code bytes} ({@link #integerBytes}) at {@code at}; returns the index after it.
   */
  private static int writeInteger(byte[] out, int at, long value, int bytes) {
    int major = value < 0 ? 1 << 5 : 0;
    long v = value < 0 ? -1 - value : value;
    if (bytes == 1) {
      out[at] = (byte) (major | (int) v);
      return at + 1;
    }
    int argument = bytes - 1;
    // additional information 24, 25, 26, 27: a 1, 2, 4 or 8 byte argument follows
    out[at] = (byte) (major | (24 + Integer.numberOfTrailingZeros(argument)));
    for (int i = 0; i < argument; i++) {
      out[at + 1 + i] = (byte) (v >>> ((argument - 1 - i) * 8));
    }
    return at + bytes;
  }

  /**
   * Decodes one frame body.
   *
   * @throws ProtocolException if the type is unknown or the body is not a valid message
   */
  public Message decode(byte[] body) {
    if (body.length == 0) {
      throw new ProtocolException("empty frame body");
    }
    MessageType type = MessageType.ofCode(body[0] & 0xff);
    if (type == null) {
      throw new ProtocolException("unknown message type " + (body[0] & 0xff));
    }
    try {
      Message m =
          switch (type) {
            case SYNC -> readWhole(body, this::readSync);
            case RESPONSE -> readWhole(body, this::readResponse);
            case PROPOSE -> readWhole(body, this::readPropose);
            default -> readers.get(type).readValue(body, 1, body.length - 1);
          };
      if (m == null) {
        throw new ProtocolException("null " + type + " body");
      }
      JsonNode attributes = attributesOf(m);
      if (attributes != null && !plainData(attributes)) {
        throw new ProtocolException("malformed " + type + " body");
      }
      return m;
    } catch (JacksonException | IllegalArgumentException e) {
      // The message goes back to the peer: it names the type only, never the offending input
      // (Jackson's messages quote it, at any length); the cause keeps the details for the log.
      throw new ProtocolException("malformed " + type + " body", e);
    }
  }

  /** Binds nothing: the attributes are read as a tree. */
  private static final AttributeBinder UNBOUND = (objectType, key, owner) -> null;

  /** Chooses how a SYNC's attributes are bound as the body is read ({@link #decodeSync}). */
  @FunctionalInterface
  public interface AttributeBinder {
    /**
     * The reader that binds the attributes of {@code objectType} for the object {@code key} of
     * {@code owner} (it must not fail on trailing tokens: the body goes on after them), or null to
     * read them as a tree: the caller may decline to bind for a sender or object it will refuse.
     */
    @Nullable ObjectReader readerFor(String objectType, String key, String owner);
  }

  /**
   * A decoded SYNC. When {@code value} is not null the attributes were bound to it as the body was
   * read and {@code sync.attributes()} is a {@link MissingNode}: the body itself is their lossless
   * form.
   */
  public record BoundSync(Message.Sync sync, @Nullable Object value) {}

  /**
   * Decodes a SYNC body as {@link #decode} does, but binds the attributes of a live state straight
   * to a value with {@code binder}'s reader instead of building a tree and binding that (when the
   * body names its type, key, owner and liveness before the attributes, each once, as this codec
   * writes them): the
   * receive path of every replica, which otherwise allocated a tree per state only to discard it.
   * A body is accepted or refused exactly as by {@link #decode}: if the attributes do not bind
   * (the type refuses them, or they hold a value {@link #decode} refuses), the body is decoded
   * again as by {@link #decode} and returned with its tree and no value, so the caller meets the
   * same refusal or binding failure it would have met.
   *
   * @throws ProtocolException if the body is not a valid SYNC
   */
  public BoundSync decodeSync(byte[] body, AttributeBinder binder) {
    if (body.length == 0 || body[0] != MessageType.SYNC.code()) {
      throw new IllegalArgumentException("not a SYNC body");
    }
    Object[] bound = new Object[1];
    try {
      Message.Sync sync = (Message.Sync) readWhole(body, p -> readSync(p, binder, bound));
      if (bound[0] == null && !plainData(sync.attributes())) {
        throw new IllegalArgumentException("not plain data");
      }
      return new BoundSync(sync, bound[0]);
    } catch (JacksonException | IllegalArgumentException e) {
      // Malformed, or attributes the type refuses: decode tells which, and refuses as it does.
      return new BoundSync((Message.Sync) decode(body), null);
    }
  }

  /**
   * A decoded RESPONSE. When the state is embedded as {@link #encodeResponse} writes it, {@code
   * syncFrame} is that state's SYNC frame body, byte for byte as its owner encoded it, and {@code
   * value} is as in {@link BoundSync}; otherwise both are null and the state has its tree.
   */
  public record BoundResponse(
      Message.Response response, byte @Nullable [] syncFrame, @Nullable Object value) {}

  /**
   * Decodes a RESPONSE body as {@link #decode} does; if the body has exactly the layout of {@link
   * #encodeResponse} ({@code r} then {@code s}, an indefinite map), its state's attributes are bound
   * as by {@link #decodeSync}, and the embedded SYNC map is returned as a SYNC frame body of its own
   * (a relay can forward it without encoding it again). Any other body, and any body this reading
   * fails on (malformed, a field after the state, attributes the type refuses), is decoded by
   * {@link #decode}, so the caller meets the same refusal or the same tree.
   *
   * @throws ProtocolException if the body is not a valid RESPONSE
   */
  public BoundResponse decodeResponse(byte[] body, AttributeBinder binder) {
    return decodeResponse(body, requestId -> true, binder);
  }

  /**
   * As {@link #decodeResponse(byte[], AttributeBinder)}, but the state is bound only if {@code
   * awaited} accepts the RESPONSE's request id: an answer to nothing the caller awaits is read and
   * checked as a tree, and {@code binder} (the caller's policy, the type's deserializer) never runs
   * for it.
   *
   * @throws ProtocolException if the body is not a valid RESPONSE
   */
  public BoundResponse decodeResponse(byte[] body, LongPredicate awaited, AttributeBinder binder) {
    if (body.length == 0 || body[0] != MessageType.RESPONSE.code()) {
      throw new IllegalArgumentException("not a RESPONSE body");
    }
    int syncStart = embeddedSyncStart(body);
    if (syncStart > 0) {
      Object[] bound = new Object[1];
      try {
        // The whole body is read, so every limit (nesting depth included) applies as in decode.
        Message.Response response =
            (Message.Response) readWhole(body, p -> readResponseAroundSync(p, awaited, binder, bound));
        if (bound[0] == null && !plainData(response.state().attributes())) {
          throw new IllegalArgumentException("not plain data");
        }
        // The SYNC map ends where the RESPONSE's closing BREAK, the body's last byte, begins.
        byte[] frame = new byte[body.length - syncStart];
        frame[0] = (byte) MessageType.SYNC.code();
        System.arraycopy(body, syncStart, frame, 1, frame.length - 1);
        return new BoundResponse(response, frame, bound[0]);
      } catch (JacksonException | IllegalArgumentException e) {
        // decode judges the body (see above)
      }
    }
    return new BoundResponse((Message.Response) decode(body), null, null);
  }

  /**
   * Reads a RESPONSE map in {@link #encodeResponse}'s layout, the parser on its START_OBJECT: {@code
   * r}, then {@code s}, read by {@link #readSync(JsonParser, AttributeBinder, Object[])}, then the
   * map's end.
   */
  private Message readResponseAroundSync(
      JsonParser p, LongPredicate awaited, AttributeBinder binder, Object[] bound) {
    expect(p, JsonToken.START_OBJECT);
    if (!"r".equals(p.nextName())) {
      throw new IllegalArgumentException("not the layout of encodeResponse");
    }
    long inReplyTo = integer(p, p.nextToken());
    if (!"s".equals(p.nextName())) {
      throw new IllegalArgumentException("not the layout of encodeResponse");
    }
    p.nextToken();
    Message.Sync sync = readSync(p, awaited.test(inReplyTo) ? binder : UNBOUND, bound);
    if (p.nextToken() != JsonToken.END_OBJECT) {
      throw new IllegalArgumentException("a field after the state");
    }
    return new Message.Response(inReplyTo, sync);
  }

  /**
   * Where the SYNC map of a RESPONSE in {@link #encodeResponse}'s layout starts — {@code [type]
   * [indefinite map] "r" [unsigned integer] "s" [map ...] [BREAK]} — or -1 for any other layout.
   * Only the bytes are checked here; the parser reads the values.
   */
  private static int embeddedSyncStart(byte[] body) {
    if (body.length < 9
        || (body[1] & 0xff) != INDEFINITE_MAP
        || (body[2] & 0xff) != TEXT_1
        || body[3] != 'r'
        || (body[body.length - 1] & 0xff) != BREAK
        || (body[4] & 0xff) >> 5 != 0) { // not an unsigned integer
      return -1;
    }
    int info = body[4] & 0x1f;
    int length = info < 24 ? 0 : info == 24 ? 1 : info == 25 ? 2 : info == 26 ? 4 : info == 27 ? 8 : -1;
    int at = 5 + length;
    if (length < 0 || at + 4 > body.length // "s", at least one byte of map, the BREAK
        || (body[at] & 0xff) != TEXT_1 || body[at + 1] != 's') {
      return -1;
    }
    return at + 2;
  }

  /**
   * Reads attributes for a binder while refusing what {@link #decode} refuses in a tree: an
   * embedded object other than a byte string (Jackson's form of an unassigned CBOR simple value,
   * which would be passed on as another value).
   */
  private static final class PlainDataParser extends JsonParserDelegate {
    PlainDataParser(JsonParser p) {
      super(p);
    }

    @Override
    public JsonToken nextToken() {
      return plain(super.nextToken());
    }

    @Override
    public JsonToken nextValue() {
      return plain(super.nextValue());
    }

    @Override
    public Object getEmbeddedObject() {
      Object o = super.getEmbeddedObject();
      if (o != null && !(o instanceof byte[])) {
        throw new IllegalArgumentException("not plain data");
      }
      return o;
    }

    /** Steps through the skipped tokens itself, so that a skipped value is checked too. */
    @Override
    public JsonParser skipChildren() {
      JsonToken t = currentToken();
      if (t != JsonToken.START_OBJECT && t != JsonToken.START_ARRAY) {
        return this;
      }
      int open = 1;
      while (open > 0) {
        JsonToken n = nextToken();
        if (n == null) {
          return this;
        }
        if (n.isStructStart()) {
          open++;
        } else if (n.isStructEnd()) {
          open--;
        }
      }
      return this;
    }

    private @Nullable JsonToken plain(@Nullable JsonToken t) {
      if (t == JsonToken.VALUE_EMBEDDED_OBJECT) {
        getEmbeddedObject();
      }
      return t;
    }
  }

  private interface BodyReader {
    Message read(JsonParser p);
  }

  /** Reads a body that is one CBOR map, and nothing after it. */
  private Message readWhole(byte[] body, BodyReader reader) {
    // From the factory: the mapper's createParser would build a deserialization context per
    // body that nothing reads (each value read below builds its own). Limits come from the
    // factory either way; stream-read features from the context, so a feature enabled on the
    // mapper alone would not apply here (the mapper enables none).
    try (JsonParser p =
        mapper.tokenStreamFactory().createParser(ObjectReadContext.empty(), body, 1, body.length - 1)) {
      p.nextToken();
      Message m = reader.read(p);
      if (p.nextToken() != null) {
        throw new IllegalArgumentException("trailing data");
      }
      return m;
    }
  }

  /**
   * Reads a SYNC map, the parser on its START_OBJECT; leaves it on the END_OBJECT. Every field is
   * required and strictly typed (text, integers, a boolean); unknown fields are skipped.
   */
  private Message.Sync readSync(JsonParser p) {
    return readSync(p, null, null);
  }

  /**
   * {@link #readSync(JsonParser)}, binding the attributes with {@code binder} when the body names
   * its type and a live state before them (the order this codec writes); the bound value goes to
   * {@code bound} and the message's attributes are then a {@link MissingNode}.
   */
  private Message.Sync readSync(
      JsonParser p, @Nullable AttributeBinder binder, Object @Nullable [] bound) {
    expect(p, JsonToken.START_OBJECT);
    String objectType = null;
    String key = null;
    String owner = null;
    long epoch = 0;
    long serial = 0;
    long committedAt = 0;
    boolean deleted = false;
    JsonNode attributes = null;
    int seen = 0;
    String name;
    while ((name = p.nextName()) != null) {
      JsonToken value = p.nextToken();
      int bit = fieldBit(name);
      if (bound != null && (seen & bit) != 0) {
        // Given twice: the tree path keeps the last, which may contradict what was bound.
        throw new IllegalArgumentException("duplicate field");
      }
      switch (bit) {
        case 1 -> objectType = text(p, value);
        case 2 -> key = text(p, value);
        case 4 -> owner = text(p, value);
        case 8 -> epoch = integer(p, value);
        case 16 -> serial = integer(p, value);
        case 32 -> committedAt = integer(p, value);
        case 64 -> deleted = bool(value);
        case 128 -> {
          ObjectReader reader =
              binder != null && bound != null && (seen & 71) == 71 && !deleted
                  && value == JsonToken.START_OBJECT
                  ? binder.readerFor(objectType, key, owner) : null;
          if (reader != null) {
            bound[0] = reader.readValue(new PlainDataParser(p));
            attributes = MissingNode.getInstance();
          } else {
            attributes = treeReader.readValue(p);
          }
        }
        default -> p.skipChildren();
      }
      seen |= bit;
    }
    expect(p, JsonToken.END_OBJECT);
    if (seen != 255 || attributes == null) {
      throw new IllegalArgumentException("missing fields");
    }
    return new Message.Sync(objectType, key, owner, epoch, serial, committedAt, deleted, attributes);
  }

  /** The bit of a SYNC field in {@link #readSync}'s {@code seen}; 0 for an unknown field. */
  private static int fieldBit(String name) {
    return switch (letter(name)) {
      case 't' -> 1;
      case 'k' -> 2;
      case 'o' -> 4;
      case 'e' -> 8;
      case 's' -> 16;
      case 'c' -> 32;
      case 'd' -> 64;
      case 'a' -> 128;
      default -> 0;
    };
  }

  /**
   * The letter a one-letter field name is, or 0 for any other name (an unknown field): every field
   * of the hand-read messages is named by one ASCII letter, and a switch on it spares hashing and
   * comparing the name (Jackson 3 does not intern names, so they are not the literals' instances).
   */
  private static char letter(String name) {
    return name.length() == 1 ? name.charAt(0) : 0;
  }

  /**
   * Reads a PROPOSE map, the parser on its START_OBJECT: every field required, {@code i} text or
   * null, {@code h} an int; unknown fields are skipped.
   */
  private Message.Propose readPropose(JsonParser p) {
    expect(p, JsonToken.START_OBJECT);
    long requestId = 0;
    Message.ProposalKind kind = null;
    String objectType = null;
    String key = null;
    String owner = null;
    boolean partial = false;
    JsonNode attributes = null;
    String transitionId = null;
    int hops = 0;
    int seen = 0;
    String name;
    while ((name = p.nextName()) != null) {
      JsonToken value = p.nextToken();
      switch (letter(name)) {
        case 'r' -> { requestId = integer(p, value); seen |= 1; }
        case 'p' -> { kind = proposalKind(text(p, value)); seen |= 2; }
        case 't' -> { objectType = text(p, value); seen |= 4; }
        case 'k' -> { key = text(p, value); seen |= 8; }
        case 'o' -> { owner = text(p, value); seen |= 16; }
        case 'x' -> { partial = bool(value); seen |= 32; }
        case 'a' -> { attributes = treeReader.readValue(p); seen |= 64; }
        case 'i' -> { transitionId = value == JsonToken.VALUE_NULL ? null : text(p, value); seen |= 128; }
        case 'h' -> { hops = smallInteger(p, value); seen |= 256; }
        default -> p.skipChildren();
      }
    }
    expect(p, JsonToken.END_OBJECT);
    if (seen != 511 || attributes == null) {
      throw new IllegalArgumentException("missing fields");
    }
    return new Message.Propose(
        requestId, kind, objectType, key, owner, partial, attributes, transitionId, hops);
  }

  /** The kind a PROPOSE names, compared directly: {@code valueOf} hashes the name first. */
  private static Message.ProposalKind proposalKind(String name) {
    if ("UPDATE".equals(name)) {
      return Message.ProposalKind.UPDATE;
    } else if ("DELETE".equals(name)) {
      return Message.ProposalKind.DELETE;
    }
    throw new IllegalArgumentException("unknown proposal kind");
  }

  /** Reads a RESPONSE map, the parser on its START_OBJECT. */
  private Message.Response readResponse(JsonParser p) {
    expect(p, JsonToken.START_OBJECT);
    long inReplyTo = 0;
    Message.Sync state = null;
    int seen = 0;
    String name;
    while ((name = p.nextName()) != null) {
      JsonToken value = p.nextToken();
      switch (letter(name)) {
        case 'r' -> { inReplyTo = integer(p, value); seen |= 1; }
        case 's' -> { state = readSync(p); seen |= 2; }
        default -> p.skipChildren();
      }
    }
    expect(p, JsonToken.END_OBJECT);
    if (seen != 3) {
      throw new IllegalArgumentException("missing fields");
    }
    return new Message.Response(inReplyTo, state);
  }

  private static void expect(JsonParser p, JsonToken token) {
    if (p.currentToken() != token) {
      throw new IllegalArgumentException("expected " + token);
    }
  }

  private static String text(JsonParser p, @Nullable JsonToken t) {
    if (t != JsonToken.VALUE_STRING) {
      throw new IllegalArgumentException("expected text");
    }
    return p.getString();
  }

  /** An integer that fits a long (a float, or a larger integer, is refused). */
  private static long integer(JsonParser p, @Nullable JsonToken t) {
    if (t != JsonToken.VALUE_NUMBER_INT) {
      throw new IllegalArgumentException("expected an integer");
    }
    return p.getLongValue();
  }

  /** An integer that fits an int. */
  private static int smallInteger(JsonParser p, @Nullable JsonToken t) {
    long v = integer(p, t);
    if (v != (int) v) {
      throw new IllegalArgumentException("integer out of range");
    }
    return (int) v;
  }

  private static boolean bool(@Nullable JsonToken t) {
    if (t == JsonToken.VALUE_TRUE) {
      return true;
    } else if (t == JsonToken.VALUE_FALSE) {
      return false;
    }
    throw new IllegalArgumentException("expected a boolean");
  }

  private static @Nullable JsonNode attributesOf(Message m) {
    if (m instanceof Message.Sync s) {
      return s.attributes();
    } else if (m instanceof Message.Response r) {
      return r.state().attributes();
    } else if (m instanceof Message.Propose p) {
      return p.attributes();
    } else if (m instanceof Message.Create c) {
      return c.attributes();
    } else if (m instanceof Message.Transition t) {
      return t.attributes();
    }
    return null;
  }

  /**
   * Whether an attribute tree holds only data (maps, arrays, text, numbers, booleans, null, byte
   * strings). An unassigned CBOR simple value decodes to an embedded object, which would not
   * survive re-encoding: a relay or an owner would pass on something else than it received.
   */
  private static boolean plainData(JsonNode node) {
    if (node.isPojo()) {
      return false;
    }
    if (node.isContainer()) {
      for (JsonNode child : node.values()) {
        if (!plainData(child)) {
          return false;
        }
      }
    }
    return true;
  }
}
