package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.PeerId;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import io.netty.handler.ssl.SslContext;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Sinks;
import reactor.netty.Connection;
import reactor.netty.tcp.TcpClient;
import tools.jackson.databind.json.JsonMapper;

/**
 * Nodes in separate JVMs ({@link NodeProcess}), over mutual TLS on 127.0.0.1, with certificates
 * from one test CA: relaying through a middle node, a middle node killed with SIGKILL and
 * restarted, certificates that are not admitted, and an impersonated owner.
 */
@Timeout(60)
class MultiProcessTest {
  private static final String NO_SERVER = "0";
  private static final String ANY_PORT = "any";
  private static final Duration WAIT = Duration.ofSeconds(20);
  private static final FrameCodec CODEC = new FrameCodec();
  private static final JsonMapper JSON = JsonMapper.builder().build();

  @TempDir static Path classpathCopy;
  private static String classpath;

  @TempDir Path dir;

  private final TestPki pki = new TestPki("multi-process-ca");
  private final List<ChildNode> children = new ArrayList<>();
  private final List<Disposable> cleanup = new ArrayList<>();

  @BeforeAll
  static void copyClasspath() {
    classpath = ChildNode.snapshotClasspath(classpathCopy);
  }

  private final long started = System.nanoTime();

  /** Progress on stderr, with the time since the test started: where the wall time goes. */
  private void step(String what) {
    System.err.printf("[MultiProcessTest] %6.2f s  %s%n", (System.nanoTime() - started) / 1e9, what);
  }

  @AfterEach
  void stopChildren() {
    cleanup.forEach(Disposable::dispose);
    children.forEach(ChildNode::kill);
  }

  // ------------------------------------------------------------------ scenarios

  @Test
  @DisplayName("A–B–C in three JVMs: A's commits reach C through B, C's proposal commits at A, "
      + "and after B is killed and restarted on the same port the clients reconnect and commits flow again")
  void lineThroughRelayAndRelayRestart() {
    TestPki.Identity a = pki.issue("node-a");
    TestPki.Identity b = pki.issue("node-b");
    TestPki.Identity c = pki.issue("node-c");
    String fb = b.fingerprint().value();
    List<String> bArgs = List.of("admit=" + fp(a), "admit=" + fp(c));

    ChildNode nodeB = start("B", "B", ANY_PORT, b.writePem(dir, "b"), bArgs);
    int port = nodeB.awaitReady(WAIT);
    step("B ready on port " + port);
    String toB = "connect=" + fb + "@127.0.0.1:" + port;
    ChildNode nodeA = start("A", "A", NO_SERVER, a.writePem(dir, "a"), List.of(toB));
    ChildNode nodeC = start("C", "C", NO_SERVER, c.writePem(dir, "c"), List.of(toB));
    nodeA.awaitReady(WAIT);
    nodeC.awaitReady(WAIT);
    step("A and C ready");

    // A commits; B relays; C receives it with A as owner.
    nodeA.send("publish k1 1");
    nodeA.awaitLine("PUBLISHED k1 1.0", WAIT);
    nodeC.awaitLine("SYNC k1 1.0 owner-A", WAIT);
    nodeB.awaitLine("SYNC k1 1.0 owner-A", WAIT);
    step("A's commit reached C");

    // C proposes a change to A's object; A (the owner) commits it, and everyone sees it.
    nodeC.send("propose k1 5");
    nodeC.awaitLine("OUTCOME COMMITTED 5.0", WAIT);
    nodeA.awaitLine("SYNC k1 5.0 owner-A", WAIT);
    nodeC.awaitLine("SYNC k1 5.0 owner-A", WAIT);
    step("C's proposal committed by A");

    // Kill the relay outright (SIGKILL: no goodbye, no close_notify).
    nodeA.awaitLine("CONNECTED " + fb, WAIT);
    nodeC.awaitLine("CONNECTED " + fb, WAIT);
    int markA = nodeA.mark();
    int markC = nodeC.mark();
    nodeB.kill();
    assertTrue(!nodeB.isAlive());
    nodeA.awaitLineFrom(markA, "DISCONNECTED " + fb, WAIT);
    nodeC.awaitLineFrom(markC, "DISCONNECTED " + fb, WAIT);
    step("B killed; A and C saw the link drop");

    // A commits while the relay is down; C cannot have it yet.
    nodeA.send("publish k1 7");
    nodeA.awaitLine("PUBLISHED k1 7.0", WAIT);

    // The relay comes back on the same port, as a fresh process; nobody tells the clients.
    ChildNode nodeB2 = start("B", "B-restarted", Integer.toString(port), b.writePem(dir, "b"), bArgs);
    assertEquals(port, nodeB2.awaitReady(WAIT), "the restarted relay binds the same port");
    step("B restarted");
    nodeA.awaitLineFrom(markA, "CONNECTED " + fb, WAIT);
    nodeC.awaitLineFrom(markC, "CONNECTED " + fb, WAIT);
    step("A and C reconnected");

    // The commit made during the outage arrives, and new commits and proposals flow again.
    nodeC.awaitLine("SYNC k1 7.0 owner-A", WAIT);
    nodeA.send("publish k1 8");
    nodeC.awaitLine("SYNC k1 8.0 owner-A", WAIT);
    nodeC.send("propose k1 9");
    nodeC.awaitLine("OUTCOME COMMITTED 9.0", WAIT);
    nodeA.awaitLine("SYNC k1 9.0 owner-A", WAIT);
    step("commits and proposals flow again");
  }

  @Test
  @DisplayName("a client with a certificate from another CA, or with a fingerprint B does not admit, "
      + "is never connected and never receives or injects states, while an admitted client is served")
  void wrongCertificatesAreRefused() {
    TestPki.Identity a = pki.issue("node-a");
    TestPki.Identity b = pki.issue("node-b");
    TestPki.Identity unadmitted = pki.issue("node-u");
    TestPki.Identity foreign = new TestPki("other-ca").issue("node-f");
    String fu = fp(unadmitted);
    String ff = fp(foreign);

    ChildNode nodeB =
        start("B", "B", ANY_PORT, b.writePem(dir, "b"), List.of("admit=" + fp(a), "observe=" + fu, "observe=" + ff));
    int port = nodeB.awaitReady(WAIT);
    nodeB.send("publish b1 1");
    nodeB.awaitLine("PUBLISHED b1 1.0", WAIT);
    step("B ready on port " + port);

    String toB = "connect=" + b.fingerprint().value() + "@127.0.0.1:" + port;
    ChildNode nodeA = start("A", "A", NO_SERVER, a.writePem(dir, "a"), List.of(toB));
    ChildNode nodeU = start("U", "U", NO_SERVER, unadmitted.writePem(dir, "u"), List.of(toB));
    // F trusts B's CA, so the client side accepts B: only B's own check can keep F out.
    ChildNode nodeF = start("F", "F", NO_SERVER, foreign.writePem(dir, "f", pki.ca), List.of(toB));
    for (ChildNode n : List.of(nodeA, nodeU, nodeF)) {
      n.awaitReady(WAIT);
    }
    nodeU.send("publish intruder-U 6");
    nodeF.send("publish intruder-F 6");
    nodeU.awaitLine("PUBLISHED intruder-U 6.0", WAIT);
    nodeF.awaitLine("PUBLISHED intruder-F 6.0", WAIT);
    step("A, U and F ready");

    // The admitted client is served...
    nodeA.awaitLine("SYNC b1 1.0 owner-B", WAIT);
    step("A served");
    // ...while the others keep dialing: three dials mean at least two attempts have ended.
    nodeU.awaitCount("DIAL ", 3, WAIT);
    nodeF.awaitCount("DIAL ", 3, WAIT);
    step("U and F dialed three times");

    for (String fp : List.of(fu, ff)) {
      nodeB.send("status " + fp);
      nodeB.awaitLine("STATUS " + fp + " false", WAIT);
    }
    for (String key : List.of("intruder-U", "intruder-F")) {
      nodeB.send("get " + key);
      nodeB.awaitLine("VALUE " + key + " none", WAIT);
      nodeA.send("get " + key);
      nodeA.awaitLine("VALUE " + key + " none", WAIT);
    }
    List<String> bLines = nodeB.lines();
    assertTrue(
        bLines.stream().noneMatch(l -> l.equals("CONNECTED " + fu) || l.equals("CONNECTED " + ff)),
        "B never had a refused client connected" + nodeB.diagnostics());
    assertEquals(List.of(), foreignStates(nodeU, "owner-U"), "U received states" + nodeU.diagnostics());
    assertEquals(List.of(), foreignStates(nodeF, "owner-F"), "F received states" + nodeF.diagnostics());
  }

  @Test
  @DisplayName("an admitted peer that sends a state claiming B's own owner gets ERROR BAD_OWNER, "
      + "and B keeps its own state")
  void impersonatedOwnerGetsBadOwner() {
    TestPki.Identity b = pki.issue("node-b");
    TestPki.Identity x = pki.issue("impersonator");
    ChildNode nodeB = start("B", "B", ANY_PORT, b.writePem(dir, "b"), List.of("admit=" + fp(x)));
    // While B boots: this JVM's first TLS context (loading the TLS provider takes a while).
    SslContext clientContext = x.tls().clientContext();
    int port = nodeB.awaitReady(WAIT);
    nodeB.send("publish b1 1");
    nodeB.awaitLine("PUBLISHED b1 1.0", WAIT);
    step("B ready on port " + port);

    // A raw mutual-TLS connection with an admitted certificate: frames written by hand.
    Sinks.Many<Message> received = Sinks.many().replay().all();
    Connection c =
        TcpClient.create()
            .host("127.0.0.1")
            .port(port)
            .secure(spec -> spec.sslContext(clientContext))
            .doOnConnected(conn -> conn.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(1 << 20)))
            .connect()
            .block(WAIT);
    assertNotNull(c);
    cleanup.add(c);
    step("raw TLS connection to B open");
    Raw.bodies(c.inbound())
        .map(CODEC::decode)
        .subscribe(received::tryEmitNext, received::tryEmitError, received::tryEmitComplete);

    Message.Hello hello =
        new Message.Hello(
            FrameCodec.PROTOCOL_VERSION, "impersonator", List.of(new Message.OwnerAd("owner-X", 1)), 0);
    // Newer than anything B committed, were it accepted: only the owner check can refuse it.
    long epoch = System.currentTimeMillis() + Duration.ofDays(1).toMillis();
    Message.Sync forged =
        new Message.Sync("Cursor", "b1", "owner-B", epoch, 99, System.currentTimeMillis(), false,
            JSON.valueToTree(Map.of("id", "b1", "x", 666.0, "y", 0.0)));
    c.outbound()
        .send(Flux.just(hello, forged).map(m -> Framing.encode(c.channel().alloc(), CODEC.encode(m))))
        .then()
        .block(WAIT);

    step("HELLO and forged SYNC sent");
    Message first = received.asFlux().next().block(WAIT);
    Message.Hello bHello = assertInstanceOf(Message.Hello.class, first, "B speaks first with HELLO");
    assertTrue(
        bHello.owners().stream().anyMatch(o -> o.owner().equals("owner-B")), "B announces owner-B: " + bHello);

    Message.Error error =
        received
            .asFlux()
            .filter(m -> m instanceof Message.Error)
            .cast(Message.Error.class)
            .blockFirst(WAIT);
    assertNotNull(error, "B answered no ERROR" + nodeB.diagnostics());
    assertEquals("BAD_OWNER", error.code(), error + nodeB.diagnostics());
    assertEquals(0, error.inReplyTo());
    step("BAD_OWNER received");

    nodeB.send("get b1");
    nodeB.awaitLine("VALUE b1 1.0 owner-B", WAIT);
    assertTrue(
        nodeB.lines().stream().noneMatch(l -> l.startsWith("SYNC b1 666.0")),
        "B applied the forged state" + nodeB.diagnostics());
  }

  // ------------------------------------------------------------------ helpers

  /** Starts a child running node {@code id} (owner {@code owner-<id>}), known in messages as {@code label}. */
  private ChildNode start(String id, String label, String port, TestPki.PemFiles pem, List<String> peers) {
    List<String> args =
        Stream.concat(
                Stream.of(
                    id,
                    port,
                    pem.certificate().getPath(),
                    pem.key().getPath(),
                    pem.ca().getPath()),
                peers.stream())
            .collect(Collectors.toList());
    ChildNode child = ChildNode.start(label, label, classpath, dir, args);
    children.add(child);
    return child;
  }

  private static String fp(TestPki.Identity id) {
    PeerId p = id.fingerprint();
    return p.value();
  }

  /** The SYNC lines of a child about objects that are not its own. */
  private static List<String> foreignStates(ChildNode n, String ownOwner) {
    return n.lines().stream()
        .filter(l -> l.startsWith("SYNC ") && !l.endsWith(" " + ownOwner))
        .collect(Collectors.toList());
  }
}
