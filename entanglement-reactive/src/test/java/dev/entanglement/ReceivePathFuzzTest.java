package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.fail;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.WireBehaviourTest.RawPeer;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.FrameMutator;
import dev.entanglement.protocol.Message;
import dev.entanglement.protocol.ProtocolException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Hooks;

/**
 * Fuzzes a node's whole receive path: a node {@code a} with a healthy neighbour {@code b} and a
 * fuzzing peer that sends generated frames (after its HELLO, and sometimes before it). For every
 * frame the node applies it, ignores it, or answers ERROR and closes that link only; no engine task
 * fails, nothing reaches Reactor's global hooks, the neighbour still gets every fresh publish, and
 * no error message carries a stack trace or a local path.
 */
class ReceivePathFuzzTest {
  private static final FrameCodec CODEC = new FrameCodec();
  private static final int BATCH = 50;

  private final List<Object> dropped = new CopyOnWriteArrayList<>();

  @BeforeEach
  void recordDrops() {
    Hooks.onErrorDropped(e -> dropped.add(e));
    Hooks.onNextDropped(v -> dropped.add("onNextDropped " + v));
  }

  @AfterEach
  void resetHooks() {
    Hooks.resetOnErrorDropped();
    Hooks.resetOnNextDropped();
  }

  @Test
  @DisplayName("the committed corpus, through a node's receive path")
  void corpus() {
    List<Map.Entry<String, byte[]>> corpus = FrameMutator.corpus();
    assertFalse(corpus.isEmpty());
    List<String> names = corpus.stream().map(Map.Entry::getKey).toList();
    List<byte[]> inputs = corpus.stream().map(Map.Entry::getValue).toList();
    // Each input twice: after a HELLO, and as the first frame of a connection.
    run(2L * inputs.size(), i -> inputs.get((int) (i / 2)),
        i -> "corpus " + names.get((int) (i / 2)) + (i % 2 == 1 ? " before HELLO" : ""), i -> i % 2 == 1, -1);
  }

  @Test
  @DisplayName("generated frames, through a node's receive path")
  void generated() {
    FrameMutator gen = new FrameMutator();
    long seed = FrameMutator.seed();
    long n = FrameMutator.iterations(2_000);
    long started = System.nanoTime();
    run(n, i -> gen.body(seed, i), i -> "seed=" + seed + ", case=" + i, i -> i % 16 == 7, seed);
    System.out.printf(
        "ReceivePathFuzzTest: seed=%d, %d frames in %d ms%n",
        seed, n, (System.nanoTime() - started) / 1_000_000);
  }

  interface Input {
    byte[] get(long index);
  }

  interface Label {
    String of(long index);
  }

  interface BeforeHello {
    boolean test(long index);
  }

  /** Runs {@code n} frames; {@code seed} names saved failures (-1: inputs of the corpus, not saved). */
  private void run(long n, Input input, Label label, BeforeHello beforeHello, long seed) {
    List<String> failures = new ArrayList<>();
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementNode b = mesh.node("b");
      mesh.connect("a", "b");
      int[] peers = {0};
      for (long start = 0; start < n && failures.size() < 20; start += BATCH) {
        long from = start;
        assertTimeoutPreemptively(
            Duration.ofSeconds(60),
            () -> batch(mesh, a, from, Math.min(n, from + BATCH), input, label, beforeHello, seed, peers, failures),
            () -> "a batch from " + label.of(from) + " hung");
        String key = "health-" + start;
        a.publish(new Cursor(key, start, 0)).block(Duration.ofSeconds(5));
        mesh.settle();
        if (b.get(CURSOR, key).isEmpty()) {
          failures.add("after " + label.of(start) + ": the healthy neighbour did not get " + key);
        }
      }
      if (a.stats().tasksFailed() > 0) {
        failures.add(a.stats().tasksFailed() + " engine tasks failed (see the log)");
      }
    }
    if (!dropped.isEmpty()) {
      failures.add("dropped by Reactor: " + dropped);
    }
    if (!failures.isEmpty()) {
      fail(failures.size() + " failures:\n" + String.join("\n", failures));
    }
  }

  private static void batch(
      TestMesh mesh, EntanglementNode a, long from, long to, Input input, Label label,
      BeforeHello beforeHello, long seed, int[] peers, List<String> failures) {
    RawPeer peer = null;
    boolean greeted = false;
    for (long i = from; i < to; i++) {
      byte[] frame = input.get(i);
      if (peer == null || peer.closed) {
        peer = new RawPeer(mesh, "a", "fuzz-" + peers[0]++);
        greeted = !beforeHello.test(i);
        if (greeted) {
          peer.send(new Message.Hello(
              FrameCodec.PROTOCOL_VERSION, "x", List.of(new Message.OwnerAd("owner-x", 1)), 0));
        }
      }
      long failedBefore = a.stats().tasksFailed();
      int answered = peer.received.size();
      peer.sendRaw(frame);
      mesh.settle();
      String problem = judge(a, peer, frame, answered, failedBefore, greeted);
      if (problem != null) {
        Object file = seed >= 0 ? FrameMutator.saveFailure("engine", seed, i, frame) : "";
        failures.add(label.of(i) + " " + file + ": " + problem
            + "\n  input " + HexFormat.of().formatHex(frame, 0, Math.min(frame.length, 64)));
      }
      if (decodeOrNull(frame) instanceof Message.GoAway) {
        // The node now waits for this peer to end the link and answers nothing more on it: the
        // rest of the batch goes to a new peer, as after a frame that closed the link.
        peer.connection.close();
        mesh.settle();
        peer = null;
      }
    }
    if (peer != null) {
      peer.connection.close();
    }
  }

  /** Whether an ERROR text sent to a peer carries a stack trace, a class, a local path, or too much. */
  static boolean disclosesInternals(String text) {
    return text.contains("\n") || text.contains("\tat ") || text.contains("Exception")
        || text.matches("(?s).*(/home/|/tmp/|/usr/|[A-Za-z]:\\\\|file:).*") || text.length() > 300;
  }

  /** Null if the node handled {@code frame} as the protocol requires, else what went wrong. */
  private static String judge(
      EntanglementNode a, RawPeer peer, byte[] frame, int answered, long failedBefore, boolean greeted) {
    if (a.stats().tasksFailed() != failedBefore) {
      return "an engine task failed (see the log above)";
    }
    List<Message> answers = peer.received.subList(answered, peer.received.size());
    Message sent = decodeOrNull(frame);
    for (Message m : answers) {
      if (m instanceof Message.Error e) {
        String text = e.message();
        if (disclosesInternals(text)) {
          return "ERROR message carries a stack trace, a path or too much: " + text;
        }
        if (sent instanceof Message.Error) {
          return "an ERROR was answered with an ERROR: " + e;
        }
      }
    }
    // A GOAWAY, or an ERROR before HELLO (the peer refusing the link), closes without an answer.
    boolean closesSilently = sent instanceof Message.GoAway || sent instanceof Message.Error && !greeted;
    if (peer.closed && !closesSilently
        && answers.stream().noneMatch(m -> m instanceof Message.Error)) {
      return "the link was closed without an ERROR";
    }
    return null;
  }

  private static Message decodeOrNull(byte[] frame) {
    try {
      return CODEC.decode(frame);
    } catch (ProtocolException e) {
      return null;
    }
  }
}
