package dev.entanglement.samples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.PeerId;
import dev.entanglement.Snapshot;
import dev.entanglement.netty.Fingerprints;
import dev.entanglement.samples.cli.DemoTypes.Cursor;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.net.http.WebSocketHandshakeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/** Nodes started by the command line, on ephemeral ports. */
class NodeCommandTest {
  static final Duration WAIT = Duration.ofSeconds(20);

  @TempDir Path dir;

  private final HttpClient http = HttpClient.newBuilder().connectTimeout(WAIT).build();
  private final Cli a = new Cli();
  private final Cli b = new Cli();

  @AfterEach
  void close() throws Exception {
    a.close();
    b.close();
  }

  private HttpResponse<String> get(HostPort address, String path) throws Exception {
    return http.send(
        HttpRequest.newBuilder(URI.create("http://" + address + path)).timeout(WAIT).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  /** Opens a WebSocket; fails with the handshake's status if the node refuses the upgrade. */
  private WebSocket websocket(HostPort address, String query) {
    return http.newWebSocketBuilder()
        .connectTimeout(WAIT)
        .buildAsync(URI.create("ws://" + address + "/ws" + query), new WebSocket.Listener() {})
        .orTimeout(WAIT.toSeconds(), TimeUnit.SECONDS)
        .join();
  }

  private static int refusal(Runnable open) {
    CompletionException e = assertThrows(CompletionException.class, open::run);
    WebSocketHandshakeException handshake = (WebSocketHandshakeException) e.getCause();
    return handshake.getResponse().statusCode();
  }

  @Test
  @DisplayName("--metrics logs a statistics line per period, and stops with the node")
  void metricsLine() throws Exception {
    ch.qos.logback.classic.Logger logger =
        (ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(NodeCommand.class);
    java.util.concurrent.BlockingQueue<String> lines = new java.util.concurrent.LinkedBlockingQueue<>();
    ch.qos.logback.core.AppenderBase<ch.qos.logback.classic.spi.ILoggingEvent> capture =
        new ch.qos.logback.core.AppenderBase<>() {
          @Override
          protected void append(ch.qos.logback.classic.spi.ILoggingEvent e) {
            if (e.getFormattedMessage().startsWith("metrics: ")) {
              lines.add(e.getFormattedMessage());
            }
          }
        };
    capture.start();
    logger.addAppender(capture);
    try {
      a.start("--http", "127.0.0.1:0", "--store", "mem", "--data", dir.toString(), "--metrics", "1");
      String first = lines.poll(WAIT.toSeconds(), TimeUnit.SECONDS);
      assertNotNull(first, "no metrics line within " + WAIT);
      assertTrue(first.startsWith("metrics: sent "), first);
      assertNotNull(lines.poll(WAIT.toSeconds(), TimeUnit.SECONDS), "a second line a period later");
      a.close();
      lines.clear();
      assertEquals(null, lines.poll(1_500, TimeUnit.MILLISECONDS), "no line once the node has closed");
    } finally {
      logger.detachAppender(capture);
    }
  }

  @Test
  @DisplayName("--http on port 0: prints the bound address and demo URL, serves /, /api/node, /api/stats, the JS client at /js/ and static files")
  void servesDemoAndNodeJson() throws Exception {
    RunningNode node = a.start("--http", "127.0.0.1:0", "--store", "mem", "--data", dir.toString(), "--id", "alpha");
    HostPort address = node.httpAddress();
    assertNotNull(address);
    assertTrue(address.port() > 0);
    Cli.Result out = a.output();
    assertEquals("alpha", out.line("node").orElseThrow());
    assertEquals(node.identity().fingerprint().value(), out.line("fingerprint").orElseThrow());
    assertEquals(address.toString(), out.line("http").orElseThrow());
    assertEquals("http://" + address + "/", out.line("demo").orElseThrow());

    HttpResponse<String> index = get(address, "/");
    assertEquals(200, index.statusCode());
    assertTrue(index.headers().firstValue("content-type").orElseThrow().startsWith("text/html"));
    assertTrue(index.body().contains("demo.js") && index.body().contains("/js/vendor/cbor-x/index.js"), index.body());
    assertEquals(index.body(), get(address, "/index.html").body());
    HttpResponse<String> demo = get(address, "/demo.js");
    assertEquals(200, demo.statusCode());
    assertTrue(demo.body().contains("/api/stats") && demo.body().contains("/js/src/index.js"), demo.body());

    // The JavaScript client, from the entanglement-js jar.
    HttpResponse<String> client = get(address, "/js/src/index.js");
    assertEquals(200, client.statusCode());
    assertTrue(client.headers().firstValue("content-type").orElseThrow().startsWith("text/javascript"));
    assertTrue(client.body().contains("EntanglementClient"), client.body());
    assertEquals(200, get(address, "/js/src/client.js").statusCode());
    assertEquals(200, get(address, "/js/vendor/cbor-x/index.js").statusCode());
    assertEquals(404, get(address, "/js/pom.xml").statusCode());
    assertEquals(404, get(address, "/js/src/nothing.js").statusCode());

    HttpResponse<String> stats = get(address, "/api/stats");
    assertEquals(200, stats.statusCode());
    assertEquals("application/json", stats.headers().firstValue("content-type").orElseThrow());
    JsonNode statsJson = JsonMapper.builder().build().readTree(stats.body());
    assertEquals("alpha", statsJson.get("node").asString());
    assertTrue(statsJson.get("peers").isArray(), stats.body());

    HttpResponse<String> api = get(address, "/api/node");
    assertEquals(200, api.statusCode());
    assertEquals("application/json", api.headers().firstValue("content-type").orElseThrow());
    JsonNode json = JsonMapper.builder().build().readTree(api.body());
    assertEquals("alpha", json.get("id").asString());
    assertEquals(node.identity().fingerprint().value(), json.get("fingerprint").asString());
    assertEquals("open", json.get("policy").asString());
    assertEquals(address.toString(), json.get("addresses").get("http").asString());
    assertTrue(json.get("addresses").get("tls").isNull());
    assertEquals("/ws", json.get("websocket").asString());

    assertEquals(404, get(address, "/missing.js").statusCode());
    assertEquals(404, get(address, "/%2e%2e/logback.xml").statusCode());
    assertEquals(404, get(address, "/logback").statusCode());
    assertEquals(405, http.send(HttpRequest.newBuilder(URI.create("http://" + address + "/"))
        .POST(HttpRequest.BodyPublishers.ofString("x")).timeout(WAIT).build(),
        HttpResponse.BodyHandlers.ofString()).statusCode());

    WebSocket open = websocket(address, "?client=browser-1");
    open.sendClose(WebSocket.NORMAL_CLOSURE, "bye").join();
    assertEquals(0, a.stop());
  }

  @Test
  @DisplayName("--policy teams: a WebSocket without a valid team, or without a valid client id, is refused with 403")
  void teamsRefuseWebSocketWithoutTeam() throws Exception {
    RunningNode node = a.start("--http", "127.0.0.1:0", "--store", "mem", "--data", dir.toString(), "--policy", "teams");
    HostPort address = node.httpAddress();
    assertEquals(403, refusal(() -> websocket(address, "")));
    assertEquals(403, refusal(() -> websocket(address, "?client=bob")));
    assertEquals(403, refusal(() -> websocket(address, "?client=bob&team=green")));
    assertEquals(403, refusal(() -> websocket(address, "?client=bob&team=RED")));
    assertEquals(403, refusal(() -> websocket(address, "?client=bob&team=red&team=blue")));
    assertEquals(403, refusal(() -> websocket(address, "?team=red")), "no client id: no owner to speak for");
    assertEquals(403, refusal(() -> websocket(address, "?client=" + "x".repeat(65) + "&team=red")));
    assertEquals(403, refusal(() -> websocket(address, "?client=a%20b&team=red")));
    // With a team the upgrade succeeds (the client would fail with the handshake's status otherwise).
    WebSocket accepted = websocket(address, "?client=bob&team=red");
    accepted.sendClose(WebSocket.NORMAL_CLOSURE, "bye").join();
    assertEquals("teams", JsonMapper.builder().build().readTree(get(address, "/api/node").body()).get("policy").asString());
  }

  @Test
  @DisplayName("the generated self-signed identity is kept in the data directory and reused; the key is private")
  void identityIsReused() throws Exception {
    RunningNode first = a.start("--http", "127.0.0.1:0", "--data", dir.toString());
    PeerId fingerprint = first.identity().fingerprint();
    assertEquals(0, a.stop());
    assertTrue(Files.exists(dir.resolve("node.mv.db")), "the default store is H2 under the data directory");
    assertEquals(Set.of(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE),
        Files.getPosixFilePermissions(dir.resolve("node.key")));
    assertEquals(fingerprint, Fingerprints.of(Certificates.readCertificates(dir.resolve("node.crt")).get(0)));

    RunningNode second = b.start("--http", "127.0.0.1:0", "--data", dir.toString());
    assertEquals(fingerprint, second.identity().fingerprint());
    assertEquals(first.node().id(), second.node().id(), "the default id derives from the fingerprint");
    assertEquals(first.node().owner(), second.node().owner());
  }

  @Test
  @DisplayName("two nodes over TLS with pki certificates: --ca admits the dialer, and publishes cross both ways")
  void tlsWithCa() throws Exception {
    Path pki = dir.resolve("pki");
    assertEquals(0, Cli.run("pki", "init", "--dir", pki.toString()).exitCode());
    Cli.Result issuedA = Cli.run("pki", "issue", "--dir", pki.toString(), "--name", "a");
    Cli.Result issuedB = Cli.run("pki", "issue", "--dir", pki.toString(), "--name", "b");
    PeerId fpA = PeerId.of(issuedA.out().split("\\s+")[0]);
    PeerId fpB = PeerId.of(issuedB.out().split("\\s+")[0]);
    RunningNode nodeA = a.start("--id", "a", "--listen", "127.0.0.1:0", "--ca", pki.resolve("ca.crt").toString(),
        "--cert", pki.resolve("a.crt").toString(), "--key", pki.resolve("a.key").toString(),
        "--store", "mem", "--data", dir.resolve("a").toString());
    assertEquals(fpA, nodeA.identity().fingerprint());
    HostPort listening = nodeA.tlsAddress();
    assertNotNull(listening);
    assertEquals(listening.toString(), a.output().line("tls").orElseThrow());
    RunningNode nodeB = b.start("--id", "b", "--connect", fpA + "@" + listening,
        "--cert", pki.resolve("b.crt").toString(), "--key", pki.resolve("b.key").toString(),
        "--store", "mem", "--data", dir.resolve("b").toString());
    assertEquals(fpB, nodeB.identity().fingerprint());

    nodeA.node().publish(DemoTypes.CURSOR, new Cursor("from-a", "a", "red", 1.0, 2.0, "#f00", "A")).block(WAIT);
    Snapshot<Cursor> atB = nodeB.node().watch(DemoTypes.CURSOR, "from-a").blockFirst(WAIT);
    assertEquals(new Cursor("from-a", "a", "red", 1.0, 2.0, "#f00", "A"), atB.value());
    nodeB.node().publish(DemoTypes.CURSOR, new Cursor("from-b", "b", "blue", 3.0, 4.0, null, null)).block(WAIT);
    assertEquals(3.0, nodeA.node().watch(DemoTypes.CURSOR, "from-b").blockFirst(WAIT).value().x());
    assertTrue(nodeA.node().isConnected(fpB));
    assertEquals(0, b.stop());
    assertEquals(0, a.stop());
  }

  @Test
  @DisplayName("two nodes over TLS without a CA: a generated self-signed certificate, admitted by --allow and --connect fingerprints")
  void tlsPinnedSelfSigned() throws Exception {
    Path pki = dir.resolve("pki");
    assertEquals(0, Cli.run("pki", "init", "--dir", pki.toString()).exitCode());
    PeerId fpB = PeerId.of(Cli.run("pki", "issue", "--dir", pki.toString(), "--name", "b").out().split("\\s+")[0]);
    RunningNode nodeA = a.start("--listen", "127.0.0.1:0", "--allow", fpB.value(), "--policy", "teams",
        "--data", dir.resolve("a").toString());
    PeerId fpA = nodeA.identity().fingerprint();
    RunningNode nodeB = b.start("--connect", fpA + "@localhost:" + nodeA.tlsAddress().port(),
        "--cert", pki.resolve("b.crt").toString(), "--key", pki.resolve("b.key").toString(),
        "--store", "mem", "--data", dir.resolve("b").toString());
    nodeB.node().publish(DemoTypes.SHAPE,
        new DemoTypes.Shape("s1", "b", "blue", "rect", 0.0, 0.0, 10.0, 5.0, "#00f", false)).block(WAIT);
    Snapshot<DemoTypes.Shape> atA = nodeA.node().watch(DemoTypes.SHAPE, "s1").blockFirst(WAIT);
    assertEquals(10.0, atA.value().w(), "a node peer writes any team under the teams policy");
    assertEquals(0, b.stop());
  }
}
