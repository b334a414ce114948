package dev.entanglement.protocol;

/**
 * Wire codes of the message types. A code is the first byte of every frame body and never changes
 * meaning within a major protocol version.
 */
public enum MessageType {
  /** First message on a link: protocol version, node id, local owners. */
  HELLO(1),
  /** Owners the sender can reach, with hop counts (distance vector, split horizon). */
  ROUTES(2),
  /** An owner-versioned state of one object, live or deleted (a tombstone). */
  SYNC(3),
  /** The sender no longer shares this object with the receiver; the receiver drops it. */
  WITHDRAW(4),
  /** A change (update or delete request) proposed by a non-owner, routed toward the owner. */
  PROPOSE(5),
  /** A request that an owner create an object; routed toward the owner. */
  CREATE(6),
  /** A speculative (tentative) change of a transition, flooded to every allowed node. */
  TRANSITION(7),
  /** The terminal state of a transition, flooded by the owner or the originator. */
  TRANSITION_END(8),
  /** The answer to a request: the committed state. */
  RESPONSE(9),
  /** A typed error, in reply to a request or to an unsolicited message. */
  ERROR(10),
  /** The request will never get an answer (a relay lost its way to the owner). */
  NO_RESPONSE(11),
  /** An owner was removed; every object it owned is deleted. */
  OWNER_REMOVED(12),
  /** Keepalive probe. */
  PING(13),
  /** Keepalive answer. */
  PONG(14),
  /** The sender is closing the link, with a reason. */
  GOAWAY(15),
  /** What the sender holds completely, per owner: the receiver sends only what is newer. */
  CATCH_UP(16),
  /** The receiver now holds everything of an owner up to a version (after the states it covers). */
  WATERMARK(17);

  private static final MessageType[] BY_CODE = new MessageType[256];

  static {
    for (MessageType t : values()) {
      BY_CODE[t.code] = t;
    }
  }

  private final int code;

  MessageType(int code) {
    this.code = code;
  }

  /** The wire code, 1..255. */
  public int code() {
    return code;
  }

  /** The type for a wire code, or {@code null} if the code is unknown. */
  public static @org.jspecify.annotations.Nullable MessageType ofCode(int code) {
    return code >= 0 && code < BY_CODE.length ? BY_CODE[code] : null;
  }
}
