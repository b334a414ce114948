package dev.entanglement.js;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.Outcome;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.TransitionState;
import dev.entanglement.netty.WebSocketServerTransport;
import dev.entanglement.netty.WebSocketServerTransport.Upgrade;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.http.server.HttpServer;
import reactor.test.StepVerifier;

/**
 * The JavaScript client against a real Java node over WebSocket: {@code
 * test-interop/interop.mjs} runs in a Node.js subprocess, takes commands on its standard input and
 * reports events on its standard output, one per line; this test drives it and checks both sides.
 */
class JsClientInteropTest {
  private static final Duration WAIT = Duration.ofSeconds(20);

  record Cursor(String id, double x, double y) {}

  static final SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);

  @Test
  void theJavaScriptClientInteroperatesWithAJavaNode() throws Exception {
    EntanglementNode node =
        EntanglementNode.builder()
            .id("server")
            .owner(OwnerId.of("owner-java"))
            .registry(Registry.builder("interop").type(CURSOR).build())
            .build();
    // The Java owner refuses a negative x and commits anything else.
    Disposable decisions =
        node.proposals(CURSOR)
            .subscribe(p -> {
              if (p.proposed() != null && p.proposed().x() < 0) {
                p.reject(ErrorCode.UNAUTHORIZED, "java says no");
              } else {
                p.commit();
              }
            });
    AtomicBoolean offline = new AtomicBoolean();
    List<Connection> connections = new CopyOnWriteArrayList<>();
    WebSocketServerTransport ws =
        WebSocketServerTransport.builder(node)
            .upgrade(req -> Mono.just(
                offline.get() ? Upgrade.forbidden() : Upgrade.accept(PeerId.of("browser"))))
            .build();
    DisposableServer server =
        HttpServer.create().host("127.0.0.1").port(0)
            .route(r -> r.get("/sync", (req, res) -> {
              req.withConnection(connections::add);
              return ws.handler().apply(req, res);
            }))
            .bindNow(WAIT);
    node.publish(new Cursor("java", 1, 1)).block(WAIT);
    try (NodeScript js = NodeScript.start("ws://127.0.0.1:" + server.port() + "/sync")) {
      // The client's encodings of the golden messages decode, with the Java codec, to what the
      // golden vectors hold.
      FrameCodec codec = new FrameCodec();
      for (String name : List.of("sync", "hello")) {
        String line = js.await(l -> l.startsWith("golden-" + name + " "));
        Message fromJs = codec.decode(HexFormat.of().parseHex(line.split(" ")[1]));
        assertEquals(codec.decode(golden(name)), fromJs, name);
      }

      js.await("connected server");
      // Java -> JS: the state published before the client came, then a live one.
      js.await("seen java 1 1");
      node.publish(new Cursor("java", 2, 1)).block(WAIT);
      js.await("seen java 2 1");

      // JS -> Java: a state the client owns.
      js.send("publish js 1 2");
      Snapshot<Cursor> mine = awaitState(node, "js", c -> c.x() == 1);
      assertEquals(OwnerId.of("owner-js"), mine.owner());
      assertEquals(new Cursor("js", 1, 2), mine.value());

      // JS proposes to the Java owner: committed, and rejected as a value.
      js.send("propose java 5");
      js.await("outcome java committed 5 1");
      awaitState(node, "java", c -> c.x() == 5);
      js.send("propose java -1");
      js.await("outcome java rejected UNAUTHORIZED java says no");

      // Java proposes to the JS owner: the client's decide hook commits (setting y to 99) or refuses.
      Outcome<Cursor> accepted = node.propose(CURSOR, "js", Map.of("x", 7.0)).block(WAIT);
      if (!(accepted instanceof Outcome.Committed<Cursor> committed)) {
        throw new AssertionError("expected a commit, got " + accepted + "\n" + js.diagnostics());
      }
      assertEquals(new Cursor("js", 7, 99), committed.snapshot().value());
      js.await("decide UPDATE js server 7");
      awaitState(node, "js", c -> c.x() == 7 && c.y() == 99);
      Outcome<Cursor> refused = node.propose(CURSOR, "js", Map.of("x", -3.0)).block(WAIT);
      assertEquals(new Outcome.Rejected<Cursor>(ErrorCode.UNAUTHORIZED, "js says no"), refused);

      // A JS transition: tentative on the Java side, then confirmed by the Java owner's commit.
      StepVerifier.create(node.tentative(CURSOR, "java"))
          .then(() -> js.send("transition java 10 11"))
          .expectNextMatches(t -> t.state() == TransitionState.ACTIVE && t.value().x() == 11
              && t.origin().equals("js-node"))
          .then(() -> js.send("transition-commit"))
          .expectNextMatches(t -> t.state() == TransitionState.CONFIRMED)
          .thenCancel()
          .verify(WAIT);
      js.await("outcome java committed 11 1");
      js.await("tentative java CONFIRMED");
      assertEquals(11, node.get(CURSOR, "java").orElseThrow().value().x());

      // The network drops the connection; while the client is away each side changes something;
      // once the upgrade is allowed again the client reconnects and both sides resynchronise.
      offline.set(true);
      connections.forEach(Connection::dispose);
      js.await(l -> l.startsWith("disconnected "));
      js.send("publish js 30 3");
      js.await("published js 30 3");
      node.publish(new Cursor("java", 20, 2)).block(WAIT);
      offline.set(false);
      js.awaitCount("connected server", 2);
      js.await("seen java 20 2");
      Snapshot<Cursor> resynced = awaitState(node, "js", c -> c.x() == 30);
      assertEquals(new Cursor("js", 30, 3), resynced.value());
      assertTrue(resynced.version().serial() > mine.version().serial(), "a newer version of the same epoch");
      assertEquals(mine.version().epoch(), resynced.version().epoch());

      // A publish made right before close() still reaches the node: the client writes what it had
      // queued, then GOAWAY, and only then closes.
      js.send("publish-close js 40 4");
      js.await("closed");
      assertEquals(new Cursor("js", 40, 4), awaitState(node, "js", c -> c.x() == 40).value());

      js.send("quit");
      js.await("bye");
      assertEquals(0, js.exitCode(), js.diagnostics());

      // A later start of the same owner whose clock is a minute behind the first's: its epoch is
      // older than the one the node holds, so the client moves above it, and its states count.
      long behind = mine.version().epoch() - 60_000;
      try (NodeScript restarted = NodeScript.start("ws://127.0.0.1:" + server.port() + "/sync", behind)) {
        restarted.await("connected server");
        restarted.send("publish js 50 5");
        restarted.await("published js 50 5");
        Snapshot<Cursor> after = awaitState(node, "js", c -> c.x() == 50);
        assertTrue(after.version().epoch() > mine.version().epoch(), "an epoch above the first start's");
        restarted.send("quit");
        restarted.await("bye");
      }
    } finally {
      decisions.dispose();
      server.disposeNow(WAIT);
      node.close().block(WAIT);
    }
  }

  private static Snapshot<Cursor> awaitState(EntanglementNode node, String key, Predicate<Cursor> p) {
    return node.watch(CURSOR, key).filter(s -> s.value() != null && p.test(s.value())).blockFirst(WAIT);
  }

  /** A golden vector of the Java codec (entanglement-reactive's test resources). */
  private static byte[] golden(String name) throws IOException {
    Path file = moduleDir().resolveSibling("entanglement-reactive")
        .resolve("src/test/resources/golden/" + name + ".hex");
    String hex = Files.readAllLines(file).stream()
        .filter(l -> !l.startsWith("#"))
        .collect(Collectors.joining())
        .replaceAll("\\s", "");
    return HexFormat.of().parseHex(hex);
  }

  private static Path moduleDir() {
    return Path.of(System.getProperty("basedir", ".")).toAbsolutePath().normalize();
  }

  /** The Node.js process running the script, with its output lines. */
  private static final class NodeScript implements AutoCloseable {
    private final Process process;
    private final Writer stdin;
    private final List<String> lines = new ArrayList<>();
    private final StringBuffer stderr = new StringBuffer();

    private NodeScript(Process process) {
      this.process = process;
      this.stdin = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
      pump(new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8)), true);
      pump(new BufferedReader(new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8)), false);
    }

    static NodeScript start(String url) {
      return start(url, List.of());
    }

    /** A client whose epoch is {@code epoch} instead of its start time. */
    static NodeScript start(String url, long epoch) {
      return start(url, List.of(Long.toString(epoch)));
    }

    private static NodeScript start(String url, List<String> more) {
      Path dir = moduleDir();
      // Node.js 20 exposes WebSocket only behind this flag; later versions accept it and ignore it.
      List<String> command = new java.util.ArrayList<>(
          List.of("node", "--experimental-websocket", "test-interop/interop.mjs", url));
      command.addAll(more);
      ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile());
      try {
        return new NodeScript(pb.start());
      } catch (IOException e) {
        throw new AssertionError(
            "could not run 'node': the JavaScript interop test needs Node.js 20 or later on the PATH"
                + " (and 'npm ci' run in " + dir + ", which mvn does in process-test-resources)", e);
      }
    }

    private void pump(BufferedReader reader, boolean out) {
      Thread t = new Thread(() -> {
        try {
          for (String line; (line = reader.readLine()) != null; ) {
            if (out) {
              synchronized (lines) {
                lines.add(line);
                lines.notifyAll();
              }
            } else {
              stderr.append(line).append('\n');
            }
          }
        } catch (IOException e) {
          stderr.append("reading the script's output failed: ").append(e).append('\n');
        }
      }, out ? "node-stdout" : "node-stderr");
      t.setDaemon(true);
      t.start();
    }

    void send(String command) {
      try {
        stdin.write(command + "\n");
        stdin.flush();
      } catch (IOException e) {
        throw new AssertionError("the script stopped reading commands\n" + diagnostics(), e);
      }
    }

    String await(String line) {
      return await(line::equals);
    }

    String await(Predicate<String> match) {
      return awaitCount(match, 1);
    }

    void awaitCount(String line, int count) {
      awaitCount(line::equals, count);
    }

    /** Waits (at most WAIT) until {@code count} lines match; returns the last of them. */
    private String awaitCount(Predicate<String> match, int count) {
      long deadline = System.nanoTime() + WAIT.toNanos();
      synchronized (lines) {
        while (true) {
          List<String> found = lines.stream().filter(match).toList();
          if (found.size() >= count) {
            return found.get(count - 1);
          }
          long left = deadline - System.nanoTime();
          if (left <= 0) {
            throw new AssertionError("the script did not report the expected line\n" + diagnostics());
          }
          try {
            TimeUnit.NANOSECONDS.timedWait(lines, left);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
          }
        }
      }
    }

    int exitCode() throws InterruptedException {
      assertTrue(process.waitFor(WAIT.toMillis(), TimeUnit.MILLISECONDS), "the script did not exit");
      return process.exitValue();
    }

    String diagnostics() {
      synchronized (lines) {
        return "stdout:\n  " + String.join("\n  ", lines) + "\nstderr:\n" + stderr;
      }
    }

    @Override
    public void close() {
      process.destroy();
      try {
        if (!process.waitFor(5, TimeUnit.SECONDS)) {
          process.destroyForcibly();
        }
      } catch (InterruptedException e) {
        process.destroyForcibly();
        Thread.currentThread().interrupt();
      }
    }
  }
}
