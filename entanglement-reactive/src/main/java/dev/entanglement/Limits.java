package dev.entanglement;

import java.io.IOException;
import java.io.OutputStream;
import java.util.Map;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.ObjectMapper;
import tools.jackson.dataformat.cbor.CBORMapper;

/**
 * Resource limits a node applies to each peer, and to the objects it publishes or accepts; see
 * {@link EntanglementNode.Builder} for their meaning and defaults. Excess is refused with {@link
 * ErrorCode#LIMIT_EXCEEDED}, never queued, except: the inbound rate is applied as backpressure (see
 * {@link InboundLimiter}), an event beyond the queued events makes room by dropping the oldest, and
 * a peer that leaves more than the queued answers unread and reads none of them is refused as a
 * whole (its link closes).
 *
 * @param pendingRequestsPerPeer requests (PROPOSE, CREATE) from one link not answered yet
 * @param transitionsPerPeer active transitions whose updates one link sent
 * @param maxObjectSize largest object: its attributes encoded as CBOR, in bytes; a received SYNC,
 *     PROPOSE, CREATE or TRANSITION body over this size is refused without decoding its attributes
 *     (the body's own fields, a few dozen bytes, count toward it)
 * @param inboundRate frames per second read from one link, or 0 for no limit
 * @param inboundBurst frames one link may send at once above that rate (ignored without a rate)
 * @param queuedEvents events (values of unique types) that may wait for one link, or for one
 *     watcher; the oldest is dropped to make room for a newer one (not refused: see {@link
 *     EntanglementNode.Builder#maxQueuedEvents})
 * @param queuedAnswers answers (RESPONSE, an ERROR or NO_RESPONSE to a request, WITHDRAW) that may
 *     wait for one link before the node checks that the peer reads them (see {@link
 *     EntanglementNode.Builder#maxQueuedAnswers})
 */
record Limits(
    int pendingRequestsPerPeer,
    int transitionsPerPeer,
    int maxObjectSize,
    int inboundRate,
    int inboundBurst,
    int queuedEvents,
    int queuedAnswers) {
  static final int DEFAULT_PENDING_REQUESTS_PER_PEER = 1_024;
  static final int DEFAULT_TRANSITIONS_PER_PEER = 1_024;
  static final int DEFAULT_MAX_OBJECT_SIZE = 256 * 1024;
  static final int DEFAULT_QUEUED_EVENTS = 1_024;
  static final int DEFAULT_QUEUED_ANSWERS = 4_096;

  /** Counts the bytes of an encoding without keeping them (the CBOR of the wire). */
  private static final ObjectMapper CBOR = CBORMapper.builder().build();

  Limits {
    if (pendingRequestsPerPeer < 1 || transitionsPerPeer < 1 || maxObjectSize < 1 || queuedEvents < 1
        || queuedAnswers < 1) {
      throw new IllegalArgumentException("limits must be positive");
    }
    if (inboundRate < 0 || (inboundRate > 0 && inboundBurst < 1)) {
      throw new IllegalArgumentException("bad inbound rate: " + inboundRate + "/s, burst " + inboundBurst);
    }
  }

  /**
   * Fails with {@link ErrorCode#LIMIT_EXCEEDED} if {@code value} (an object, or its attributes as a
   * tree) encodes to more than {@link #maxObjectSize} bytes. Stops counting at the limit.
   */
  void checkObjectSize(Object value, Object what) {
    checkObjectSize(value, "", what);
  }

  /**
   * As {@link #checkObjectSize(Object, Object)}, the object named {@code prefix} followed by {@code
   * subject}: the name is built only if the check fails, not on every call.
   */
  void checkObjectSize(Object value, String prefix, Object subject) {
    if (value instanceof JsonNode tree && sizeBound(tree, maxObjectSize) <= maxObjectSize) {
      return; // certainly within the limit: no need to encode
    }
    CountingStream counter = new CountingStream(maxObjectSize);
    try {
      CBOR.writeValue(counter, value);
    } catch (JacksonException e) {
      if (!(e.getCause() instanceof TooLarge)) {
        throw e;
      }
    }
    if (counter.count > maxObjectSize) {
      checkEncodedSize(counter.count, prefix + subject);
    }
  }

  /**
   * An upper bound of the CBOR size of {@code n}, or more than {@code limit} once the bound passes
   * it (or for a node whose size it cannot bound cheaply): every header counted at its longest (9
   * bytes), text at 3 bytes per UTF-16 unit.
   */
  static long sizeBound(JsonNode n, long limit) {
    if (n.isContainer()) {
      long total = 9;
      for (Map.Entry<String, JsonNode> e : n.properties()) {
        total += 9 + 3L * e.getKey().length() + sizeBound(e.getValue(), limit);
        if (total > limit) {
          return total;
        }
      }
      if (n.isArray()) {
        for (JsonNode child : n.values()) {
          total += sizeBound(child, limit);
          if (total > limit) {
            return total;
          }
        }
      }
      return total;
    }
    if (n.isString()) {
      return 9 + 3L * n.stringValue().length();
    }
    if (n.isBinary()) {
      return 9 + n.binaryValue().length;
    }
    if (n.isBoolean() || n.isNull() || n.isMissingNode()
        || n.isIntegralNumber() && n.canConvertToLong() || n.isFloatingPointNumber() && !n.isBigDecimal()) {
      return 9;
    }
    return limit + 1; // big numbers, embedded objects: count them by encoding
  }

  /** Fails with {@link ErrorCode#LIMIT_EXCEEDED} if {@code bytes} exceeds {@link #maxObjectSize}. */
  void checkEncodedSize(long bytes, Object what) {
    if (bytes > maxObjectSize) {
      throw new EntanglementException(
          ErrorCode.LIMIT_EXCEEDED,
          what + " encodes to more than the maximum object size of " + maxObjectSize + " bytes");
    }
  }

  /** Thrown by the counter once the limit is passed, to stop encoding early. */
  private static final class TooLarge extends IOException {
    TooLarge() {
      super("over the limit");
    }
  }

  private static final class CountingStream extends OutputStream {
    private final int limit;
    long count;

    CountingStream(int limit) {
      this.limit = limit;
    }

    @Override
    public void write(int b) throws IOException {
      add(1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      add(len);
    }

    private void add(int n) throws IOException {
      count += n;
      if (count > limit) {
        throw new TooLarge();
      }
    }
  }
}
