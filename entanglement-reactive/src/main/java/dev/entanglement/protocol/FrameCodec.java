package dev.entanglement.protocol;

import java.io.ByteArrayOutputStream;
import java.util.EnumMap;
import java.util.Map;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.ObjectMapper;
import tools.jackson.databind.ObjectReader;
import tools.jackson.databind.ObjectWriter;
import tools.jackson.dataformat.cbor.CBORMapper;

/**
 * Encodes and decodes frame bodies: {@code [type code: 1 byte][CBOR map of the record's fields]}.
 * The length prefix and flags belong to the transport framing, not to this codec.
 *
 * <p>Thread-safe: it holds only immutable Jackson readers and writers.
 */
public final class FrameCodec {
  /** Version of this body format; a HELLO with another major version is refused. */
  public static final int PROTOCOL_VERSION = 1;

  private static final Map<MessageType, Class<? extends Message>> CLASSES =
      new EnumMap<>(MessageType.class);

  static {
    CLASSES.put(MessageType.HELLO, Message.Hello.class);
    CLASSES.put(MessageType.ROUTES, Message.Routes.class);
    CLASSES.put(MessageType.SYNC, Message.Sync.class);
    CLASSES.put(MessageType.WITHDRAW, Message.Withdraw.class);
    CLASSES.put(MessageType.PROPOSE, Message.Propose.class);
    CLASSES.put(MessageType.CREATE, Message.Create.class);
    CLASSES.put(MessageType.TRANSITION, Message.Transition.class);
    CLASSES.put(MessageType.TRANSITION_END, Message.TransitionEnd.class);
    CLASSES.put(MessageType.RESPONSE, Message.Response.class);
    CLASSES.put(MessageType.ERROR, Message.Error.class);
    CLASSES.put(MessageType.NO_RESPONSE, Message.NoResponse.class);
    CLASSES.put(MessageType.OWNER_REMOVED, Message.OwnerRemoved.class);
    CLASSES.put(MessageType.PING, Message.Ping.class);
    CLASSES.put(MessageType.PONG, Message.Pong.class);
    CLASSES.put(MessageType.GOAWAY, Message.GoAway.class);
    CLASSES.put(MessageType.CATCH_UP, Message.CatchUp.class);
    CLASSES.put(MessageType.WATERMARK, Message.Watermark.class);
  }

  private final ObjectWriter writer;
  private final Map<MessageType, ObjectReader> readers = new EnumMap<>(MessageType.class);

  public FrameCodec() {
    this(CBORMapper.builder().disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES).build());
  }

  private FrameCodec(ObjectMapper mapper) {
    this.writer = mapper.writer();
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
    ByteArrayOutputStream out = new ByteArrayOutputStream(64);
    out.write(message.type().code());
    writer.writeValue(out, message);
    return out.toByteArray();
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
      Message m = readers.get(type).readValue(body, 1, body.length - 1);
      if (m == null) {
        throw new ProtocolException("null " + type + " body");
      }
      JsonNode attributes = attributesOf(m);
      if (attributes != null && !plainData(attributes)) {
        throw new ProtocolException("malformed " + type + " body");
      }
      return m;
    } catch (JacksonException e) {
      // The message goes back to the peer: it names the type only, never the offending input
      // (Jackson's messages quote it, at any length); the cause keeps the details for the log.
      throw new ProtocolException("malformed " + type + " body", e);
    }
  }

  private static @org.jspecify.annotations.Nullable JsonNode attributesOf(Message m) {
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
