package dev.entanglement.protocol;

import com.fasterxml.jackson.annotation.JsonProperty;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.jspecify.annotations.Nullable;
import tools.jackson.databind.JsonNode;

/**
 * Every message of the protocol. Records are immutable; attribute trees ({@link JsonNode}) must not
 * be mutated after a message is built.
 *
 * <p>Fields travel under one-letter CBOR keys ({@link JsonProperty}); {@code docs/PROTOCOL.md} lists
 * them. Request identifiers ({@code requestId}, {@code inReplyTo}) are scoped to one link and one
 * direction: the sender of a request picks an id unique among its outstanding requests on that link,
 * and the answer names it. A relay maps an inbound id to an outbound id of its own, so responses
 * retrace the request path hop by hop.
 */
public sealed interface Message {

  /** The message's wire type. */
  MessageType type();

  /** Owner advertised in a HELLO, with its current epoch. */
  record OwnerAd(
      @JsonProperty("o") String owner,
      @JsonProperty("e") long epoch) {
    public OwnerAd {
      Objects.requireNonNull(owner, "owner");
    }
  }

  record Hello(
      @JsonProperty("v") int protocolVersion,
      @JsonProperty("n") String nodeId,
      @JsonProperty("o") List<OwnerAd> owners,
      @JsonProperty("m") int maxFrame)
      implements Message {
    public Hello {
      Objects.requireNonNull(nodeId, "nodeId");
      owners = List.copyOf(owners); // a null element is malformed
    }

    public MessageType type() {
      return MessageType.HELLO;
    }
  }

  /** Owner id to hop count, as seen from the sender (0 = the sender's own owner). */
  record Routes(
      @JsonProperty("h") Map<String, Integer> hops) implements Message {
    public Routes {
      hops = Map.copyOf(hops); // a null hop count is malformed
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
      @JsonProperty("t") String objectType,
      @JsonProperty("k") String key,
      @JsonProperty("o") String owner,
      @JsonProperty("e") long epoch,
      @JsonProperty("s") long serial,
      @JsonProperty("c") long committedAt,
      @JsonProperty("d") boolean deleted,
      @JsonProperty("a") JsonNode attributes)
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

  /**
   * The sender no longer shares {@code objectType}/{@code key} with the receiver: the receiver drops
   * its state of {@code owner} if it is not newer than {@code epoch}/{@code serial} (the version the
   * sender withdraws), and ignores states of that owner older than that version arriving later.
   */
  record Withdraw(
      @JsonProperty("t") String objectType,
      @JsonProperty("k") String key,
      @JsonProperty("o") String owner,
      @JsonProperty("e") long epoch,
      @JsonProperty("s") long serial) implements Message {
    public Withdraw {
      Objects.requireNonNull(objectType, "objectType");
      Objects.requireNonNull(key, "key");
      Objects.requireNonNull(owner, "owner");
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
      @JsonProperty("r") long requestId,
      @JsonProperty("p") ProposalKind kind,
      @JsonProperty("t") String objectType,
      @JsonProperty("k") String key,
      @JsonProperty("o") String owner,
      @JsonProperty("x") boolean partial,
      @JsonProperty("a") JsonNode attributes,
      @JsonProperty("i") @Nullable String transitionId,
      @JsonProperty("h") int hops)
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

  record Create(
      @JsonProperty("r") long requestId,
      @JsonProperty("t") String objectType,
      @JsonProperty("o") String owner,
      @JsonProperty("a") JsonNode attributes,
      @JsonProperty("h") int hops)
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

  /**
   * One tentative update of a transition; {@code seq} increases with every update. {@code
   * baseEpoch} and {@code baseSerial} name the committed version of the object the sender judged
   * the tentative value on (its committed state merged with {@code attributes}): a receiver that
   * holds another version does not apply it.
   */
  record Transition(
      @JsonProperty("t") String objectType,
      @JsonProperty("k") String key,
      @JsonProperty("o") String owner,
      @JsonProperty("e") long baseEpoch,
      @JsonProperty("s") long baseSerial,
      @JsonProperty("i") String transitionId,
      @JsonProperty("g") String origin,
      @JsonProperty("q") long seq,
      @JsonProperty("x") boolean partial,
      @JsonProperty("a") JsonNode attributes)
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
  record TransitionEnd(
      @JsonProperty("t") String objectType,
      @JsonProperty("k") String key,
      @JsonProperty("i") String transitionId,
      @JsonProperty("z") String state)
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

  record Response(
      @JsonProperty("r") long inReplyTo,
      @JsonProperty("s") Sync state) implements Message {
    public Response {
      Objects.requireNonNull(state, "state");
    }

    public MessageType type() {
      return MessageType.RESPONSE;
    }
  }

  /** A typed error; {@code inReplyTo} is 0 when it answers no request. */
  record Error(
      @JsonProperty("r") long inReplyTo,
      @JsonProperty("c") String code,
      @JsonProperty("m") String message) implements Message {
    public Error {
      Objects.requireNonNull(code, "code");
      Objects.requireNonNull(message, "message");
    }

    public MessageType type() {
      return MessageType.ERROR;
    }
  }

  record NoResponse(
      @JsonProperty("r") long inReplyTo) implements Message {
    public MessageType type() {
      return MessageType.NO_RESPONSE;
    }
  }

  record OwnerRemoved(
      @JsonProperty("o") String owner,
      @JsonProperty("e") long epoch) implements Message {
    public OwnerRemoved {
      Objects.requireNonNull(owner, "owner");
    }

    public MessageType type() {
      return MessageType.OWNER_REMOVED;
    }
  }

  record Ping(
      @JsonProperty("n") long nonce) implements Message {
    public MessageType type() {
      return MessageType.PING;
    }
  }

  record Pong(
      @JsonProperty("n") long nonce) implements Message {
    public MessageType type() {
      return MessageType.PONG;
    }
  }

  record GoAway(
      @JsonProperty("c") String code,
      @JsonProperty("m") String message) implements Message {
    public GoAway {
      Objects.requireNonNull(code, "code");
      Objects.requireNonNull(message, "message");
    }

    public MessageType type() {
      return MessageType.GOAWAY;
    }
  }

  /** A version of one owner: epoch and serial. */
  record Mark(@JsonProperty("o") String owner, @JsonProperty("e") long epoch, @JsonProperty("s") long serial) {
    public Mark {
      Objects.requireNonNull(owner, "owner");
    }
  }

  /** Sent once per link after HELLO: for each owner, the version up to which the sender is complete. */
  record CatchUp(@JsonProperty("h") List<Mark> holds) implements Message {
    public CatchUp {
      holds = List.copyOf(holds); // a null element is malformed
    }

    public MessageType type() {
      return MessageType.CATCH_UP;
    }
  }

  /**
   * The receiver now holds every state of {@code owner} up to {@code (epoch, serial)}. With {@code
   * full}, the states sent since the receiver's CATCH_UP are the owner's complete set: any other
   * object of that owner up to this version is gone.
   */
  record Watermark(
      @JsonProperty("o") String owner,
      @JsonProperty("e") long epoch,
      @JsonProperty("s") long serial,
      @JsonProperty("f") boolean full)
      implements Message {
    public Watermark {
      Objects.requireNonNull(owner, "owner");
    }

    public MessageType type() {
      return MessageType.WATERMARK;
    }
  }
}
