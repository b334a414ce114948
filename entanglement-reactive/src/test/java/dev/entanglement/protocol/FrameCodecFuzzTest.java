package dev.entanglement.protocol;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Fuzzes {@link FrameCodec#decode}: whatever the bytes, it returns a message or throws {@link
 * ProtocolException}, within a bounded time; and what it returns encodes and decodes to itself.
 * The default build replays the committed corpus and a few thousand generated cases; {@code
 * -Pfuzz} (or {@code -Dfuzz.iterations=N -Dfuzz.seed=S|random}) runs long campaigns.
 */
class FrameCodecFuzzTest {
  private static final FrameCodec CODEC = new FrameCodec();
  /** Far above the worst case seen (a few ms); a decoder that loops or explodes exceeds it. */
  private static final long MAX_NANOS_PER_INPUT = 2_000_000_000L;

  @Test
  @DisplayName("every valid message of every type round-trips through the codec")
  void validMessagesRoundTrip() {
    List<byte[]> seeds = FrameMutator.validBodies();
    java.util.Set<MessageType> types = java.util.EnumSet.noneOf(MessageType.class);
    for (byte[] body : seeds) {
      Message m = CODEC.decode(body);
      types.add(m.type());
      assertEquals(m, CODEC.decode(CODEC.encode(m)), m.toString());
    }
    assertEquals(java.util.EnumSet.allOf(MessageType.class), types, "seeds cover every type");
  }

  @Test
  @DisplayName("the committed corpus: decode returns a message or throws ProtocolException")
  void corpus() {
    List<Map.Entry<String, byte[]>> corpus = FrameMutator.corpus();
    assertFalse(corpus.isEmpty(), "the corpus is on the test class path");
    List<String> failures = new ArrayList<>();
    for (var e : corpus) {
      String problem = check(e.getValue());
      if (problem != null) {
        failures.add(e.getKey() + ": " + problem);
      }
    }
    if (!failures.isEmpty()) {
      fail(String.join("\n", failures));
    }
  }

  @Test
  @DisplayName("generated inputs: decode returns a message or throws ProtocolException, in bounded time")
  void generated() {
    FrameMutator gen = new FrameMutator();
    long seed = FrameMutator.seed();
    long n = FrameMutator.iterations(5_000);
    long only = Long.getLong("fuzz.case", -1L);
    List<String> failures = new ArrayList<>();
    long decoded = 0;
    long tried = 0;
    long started = System.nanoTime();
    for (long i = only >= 0 ? only : 0; i < (only >= 0 ? only + 1 : n); i++) {
      tried++;
      byte[] body = gen.body(seed, i);
      String problem = check(body);
      if (problem == null) {
        decoded++;
      } else {
        var file = FrameMutator.saveFailure("codec", seed, i, body);
        failures.add("seed=" + seed + ", case=" + i + " (" + file + "): " + problem
            + "\n  input " + HexFormat.of().formatHex(body, 0, Math.min(body.length, 64)));
        if (failures.size() >= 20) {
          break;
        }
      }
    }
    System.out.printf(
        "FrameCodecFuzzTest: seed=%d, %d inputs in %d ms, %d failures%n",
        seed, tried, (System.nanoTime() - started) / 1_000_000, failures.size());
    if (!failures.isEmpty()) {
      fail(failures.size() + " failing inputs (-Dfuzz.seed=" + seed + " -Dfuzz.case=N reproduces one):\n"
          + String.join("\n", failures));
    }
    assertFalse(decoded == 0);
  }

  /** Null if the codec behaved, else what went wrong. */
  private static String check(byte[] body) {
    long t0 = System.nanoTime();
    Message m;
    try {
      m = CODEC.decode(body);
    } catch (ProtocolException e) {
      return slow(t0);
    } catch (Throwable t) {
      return "decode threw " + t + stackTop(t);
    }
    String s = slow(t0);
    if (s != null) {
      return s;
    }
    try {
      Message again = CODEC.decode(CODEC.encode(m));
      if (!again.equals(m)) {
        return "decoded " + m + " but its encoding decodes to " + again;
      }
    } catch (Throwable t) {
      return "decoded " + m.type() + " does not round-trip: " + t + stackTop(t);
    }
    return null;
  }

  private static String slow(long t0) {
    long took = System.nanoTime() - t0;
    return took > MAX_NANOS_PER_INPUT ? "decode took " + took / 1_000_000 + " ms" : null;
  }

  private static String stackTop(Throwable t) {
    StackTraceElement[] st = t.getStackTrace();
    return st.length > 0 ? " at " + st[0] : "";
  }
}
