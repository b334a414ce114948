package dev.entanglement.protocol;

import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.jspecify.annotations.Nullable;
import tools.jackson.databind.JsonNode;

/**
 * Every message of the protocol. Records are immutable; attribute trees ({@link JsonNode}) must not
 * be mutated after a message is built.
 *
 * <p>Request identifiers ({@code requestId}, {@code inReplyTo}) are scoped to one link and one
 * direction: the sender of a request picks an id unique among its outstanding requests on that link,
 * and the answer names it. A relay maps an inbound id to an outbound id of its own, so responses
 * retrace the request path hop by hop.
 */
public sealed interface Message {

  /** The message's wire type. */
  MessageType type();

  /** Owner advertised in a HELLO, with its current epoch. */
  record OwnerAd(String owner, long epoch) {
    public OwnerAd {
      Objects.requireNonNull(owner, "owner");
    }
  }

  record Hello(int protocolVersion, String nodeId, List<OwnerAd> owners, int maxFrame)
      implements Message {
    public Hello {
      Objects.requireNonNull(nodeId, "nodeId");
      Objects.requireNonNull(owners, "owners");
    }

    public MessageType type() {
      return MessageType.HELLO;
    }
  }

  /** Owner id to hop count, as seen from the sender (0 = the sender's own owner). */
  record Routes(Map<String, Integer> hops) implements Message {
    public Routes {
      Objects.requireNonNull(hops, "hops");
    }

    public MessageType type() {
      return MessageType.ROUTES;
    }
  }

  /**
   * One owner-versioned object state. {@code deleted} marks a tombstone, whose {@code attributes}
   * are empty.
   */
  record Sync(
      String objectType,
      String key,
      String owner,
      long epoch,
      long serial,
      long committedAt,
      boolean deleted,
      JsonNode attributes)
      implements Message {
    public Sync {
      Objects.requireNonNull(objectType, "objectType");
      Objects.requireNonNull(key, "key");
      Objects.requireNonNull(owner, "owner");
      Objects.requireNonNull(attributes, "attributes");
    }

    public MessageType type() {
      return MessageType.SYNC;
    }
  }

  record Withdraw(String objectType, String key) implements Message {
    public Withdraw {
      Objects.requireNonNull(objectType, "objectType");
      Objects.requireNonNull(key, "key");
    }

    public MessageType type() {
      return MessageType.WITHDRAW;
    }
  }

  /** Kinds of proposal. */
  enum ProposalKind {
    UPDATE,
    DELETE
  }

  /**
   * A proposed change, routed toward {@code owner}. {@code partial} says whether {@code attributes}
   * is a subset to merge or a full value. {@code hops} counts relays and bounds routing loops.
   */
  record Propose(
      long requestId,
      ProposalKind kind,
      String objectType,
      String key,
      String owner,
      boolean partial,
      JsonNode attributes,
      @Nullable String transitionId,
      int hops)
      implements Message {
    public Propose {
      Objects.requireNonNull(kind, "kind");
      Objects.requireNonNull(objectType, "objectType");
      Objects.requireNonNull(key, "key");
      Objects.requireNonNull(owner, "owner");
      Objects.requireNonNull(attributes, "attributes");
    }

    public MessageType type() {
      return MessageType.PROPOSE;
    }
  }

  record Create(long requestId, String objectType, String owner, JsonNode attributes, int hops)
      implements Message {
    public Create {
      Objects.requireNonNull(objectType, "objectType");
      Objects.requireNonNull(owner, "owner");
      Objects.requireNonNull(attributes, "attributes");
    }

    public MessageType type() {
      return MessageType.CREATE;
    }
  }

  /** One tentative update of a transition; {@code seq} increases with every update. */
  record Transition(
      String objectType,
      String key,
      String owner,
      String transitionId,
      String origin,
      long seq,
      boolean partial,
      JsonNode attributes)
      implements Message {
    public Transition {
      Objects.requireNonNull(objectType, "objectType");
      Objects.requireNonNull(key, "key");
      Objects.requireNonNull(owner, "owner");
      Objects.requireNonNull(transitionId, "transitionId");
      Objects.requireNonNull(origin, "origin");
      Objects.requireNonNull(attributes, "attributes");
    }

    public MessageType type() {
      return MessageType.TRANSITION;
    }
  }

  /** Terminal state of a transition: CONFIRMED, BROKEN, REJECTED, EXPIRED or ABORTED. */
  record TransitionEnd(String objectType, String key, String transitionId, String state)
      implements Message {
    public TransitionEnd {
      Objects.requireNonNull(objectType, "objectType");
      Objects.requireNonNull(key, "key");
      Objects.requireNonNull(transitionId, "transitionId");
      Objects.requireNonNull(state, "state");
    }

    public MessageType type() {
      return MessageType.TRANSITION_END;
    }
  }

  record Response(long inReplyTo, Sync state) implements Message {
    public Response {
      Objects.requireNonNull(state, "state");
    }

    public MessageType type() {
      return MessageType.RESPONSE;
    }
  }

  /** A typed error; {@code inReplyTo} is 0 when it answers no request. */
  record Error(long inReplyTo, String code, String message) implements Message {
    public Error {
      Objects.requireNonNull(code, "code");
      Objects.requireNonNull(message, "message");
    }

    public MessageType type() {
      return MessageType.ERROR;
    }
  }

  record NoResponse(long inReplyTo) implements Message {
    public MessageType type() {
      return MessageType.NO_RESPONSE;
    }
  }

  record OwnerRemoved(String owner, long epoch) implements Message {
    public OwnerRemoved {
      Objects.requireNonNull(owner, "owner");
    }

    public MessageType type() {
      return MessageType.OWNER_REMOVED;
    }
  }

  record Ping(long nonce) implements Message {
    public MessageType type() {
      return MessageType.PING;
    }
  }

  record Pong(long nonce) implements Message {
    public MessageType type() {
      return MessageType.PONG;
    }
  }

  record GoAway(String code, String message) implements Message {
    public GoAway {
      Objects.requireNonNull(code, "code");
      Objects.requireNonNull(message, "message");
    }

    public MessageType type() {
      return MessageType.GOAWAY;
    }
  }
}
