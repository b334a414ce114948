package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.protocol.Message;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;
import reactor.netty.http.client.HttpClient;
import reactor.netty.http.server.HttpServer;

@ExtendWith(LeakDetection.class)
class WebSocketTransportTest {
  private static final Duration WAIT = Duration.ofSeconds(15);

  @Test
  @org.junit.jupiter.api.DisplayName("a message split in fragments that add up to more than the maximum frame gets an ERROR, then a close frame with status 1009")
  void anOversizeFragmentedMessageGetsAnError() {
    EntanglementNode b = TransportConformance.node("b");
    WebSocketServerTransport ws = WebSocketServerTransport.builder(b).maxFrameSize(1_000)
        .upgrade(req -> Mono.just(WebSocketServerTransport.Upgrade.accept(PeerId.of("raw")))).build();
    DisposableServer server = HttpServer.create().host("127.0.0.1").port(0)
        .route(r -> r.get("/sync", ws.handler())).bindNow(WAIT);
    try {
      java.util.List<dev.entanglement.protocol.Message> got = new java.util.concurrent.CopyOnWriteArrayList<>();
      java.util.concurrent.atomic.AtomicReference<io.netty.handler.codec.http.websocketx.WebSocketCloseStatus>
          closeStatus = new java.util.concurrent.atomic.AtomicReference<>();
      HttpClient.create().websocket().uri("ws://127.0.0.1:" + server.port() + "/sync")
          .handle((in, out) -> {
            Mono<Void> closed = in.receiveCloseStatus().doOnNext(closeStatus::set).then();
            Mono<Void> answers = in.receiveFrames()
                .filter(f -> f instanceof io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame)
                .map(f -> io.netty.buffer.ByteBufUtil.getBytes(
                    f.content(), f.content().readerIndex() + Framing.HEADER_BYTES,
                    f.content().readableBytes() - Framing.HEADER_BYTES))
                .doOnNext(body -> got.add(Raw.CODEC.decode(body)))
                .then();
            // Two fragments of 800 bytes: each under the maximum, together over it.
            out.sendObject(reactor.core.publisher.Flux.just(
                    new io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame(
                        false, 0, io.netty.buffer.Unpooled.wrappedBuffer(new byte[800])),
                    new io.netty.handler.codec.http.websocketx.ContinuationWebSocketFrame(
                        true, 0, io.netty.buffer.Unpooled.wrappedBuffer(new byte[800]))))
                .then().subscribe(v -> {}, e -> {});
            return answers.and(closed);
          })
          .then().onErrorResume(e -> Mono.empty()).block(WAIT);
      assertTrue(got.stream().anyMatch(m -> m instanceof dev.entanglement.protocol.Message.Error e
          && e.code().equals("BAD_ENCODING")), got.toString());
      assertEquals(1009, closeStatus.get() == null ? -1 : closeStatus.get().code());
    } finally {
      server.disposeNow(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  @org.junit.jupiter.api.DisplayName("a peer that floods PINGs and reads nothing does not get its PONGs queued without bound")
  void pingsFromAPeerThatDoesNotReadAreNotQueued() {
    EntanglementNode b = TransportConformance.node("b");
    DisposableServer server = serveAcceptingRaw(b);
    int pings = 200_000; // 125-byte payloads: about 27 MB of PONGs, more than the sockets hold
    try {
      int pongs = Raw.pingFlood("ws://127.0.0.1:" + server.port() + "/sync", pings);
      assertTrue(pongs > 0, "a peer that reads gets answers");
      assertTrue(pongs < pings, "answers dropped while the connection was not writable: " + pongs
          + " of " + pings + " kept");
    } finally {
      server.disposeNow(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  @org.junit.jupiter.api.DisplayName("messages that arrive while the engine asks for none (its inbound rate paused it) reach it intact and in order")
  void messagesHeldWhileTheEngineIsPausedArriveIntact() {
    EntanglementNode b = rateLimitedNode("b");
    DisposableServer server = serveAcceptingRaw(b);
    int pings = 60; // with HELLO, 51 beyond the burst of 10: about 0.5 s at 100 frames/s
    try {
      assertEquals(java.util.stream.LongStream.rangeClosed(1, pings).boxed().toList(),
          Raw.pingPong("ws://127.0.0.1:" + server.port() + "/sync", pings));
    } finally {
      server.disposeNow(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  @org.junit.jupiter.api.DisplayName("a closing node sends GOAWAY as its last frame, then a close frame with status 1000, then ends the stream (no abnormal close, 1006)")
  void aClosingNodeSendsGoAwayThenACloseFrame() throws java.io.IOException {
    EntanglementNode b = TransportConformance.node("b");
    DisposableServer server = serveAcceptingRaw(b);
    try (Raw.BlockingWebSocket peer = new Raw.BlockingWebSocket(server.port(), "/sync", 64 * 1024)) {
      peer.send(Raw.hello("raw"));
      peer.send(Raw.CODEC.encode(new Message.CatchUp(java.util.List.of())));
      assertInstanceOf(Message.Hello.class, peer.receive());
      Mono<Void> closing = b.close().cache();
      closing.subscribe(v -> {}, e -> {});
      java.util.List<Message> rest = peer.receiveUntilClose();
      Message.GoAway bye = assertInstanceOf(Message.GoAway.class, rest.get(rest.size() - 1), rest.toString());
      assertEquals("SHUTDOWN", bye.code());
      assertEquals(1000, peer.closeStatus);
      assertTrue(peer.endOfStream(), "nothing follows the close frame");
      peer.close();
      closing.block(WAIT);
    } finally {
      server.disposeNow(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  @org.junit.jupiter.api.DisplayName("a text message gets an ERROR, then a close frame with status 1003, and nothing follows the close frame")
  void aTextMessageGetsAnErrorThenACloseFrame() throws java.io.IOException {
    ClosedAfterCatchUp closed =
        sendAfterCatchUp(0x1, "hello".getBytes(java.nio.charset.StandardCharsets.UTF_8));
    assertTrue(closed.got().stream().anyMatch(m -> m instanceof Message.Error e && e.code().equals("BAD_ENCODING")),
        "an ERROR before the close frame");
    assertEquals(1003, closed.status());
    assertTrue(closed.endOfStream(), "nothing follows the close frame");
  }

  /** What a raw peer read up to the node's close frame, the frame's status, and whether the stream then ended. */
  private record ClosedAfterCatchUp(java.util.List<Message> got, int status, boolean endOfStream) {}

  /**
   * Has a raw peer that holds nothing catch up on 100 states and send the message {@code opcode,
   * payload} right after its CATCH_UP; then reads up to the node's close frame. The node reads that
   * message only once the catch-up is written (measured: every state, then the WATERMARK, came
   * before the ERROR of a text message even with 2.4 MB of states), so this checks the answer and
   * that nothing follows the close frame, not a refusal in the middle of a catch-up.
   */
  private static ClosedAfterCatchUp sendAfterCatchUp(int opcode, byte[] payload) throws java.io.IOException {
    EntanglementNode b = TransportConformance.node("b");
    for (int i = 0; i < 100; i++) {
      b.publish(TransportConformance.CURSOR, new TransportConformance.Cursor("k" + i, i, i)).block(WAIT);
    }
    DisposableServer server = serveAcceptingRaw(b);
    try (Raw.BlockingWebSocket peer = new Raw.BlockingWebSocket(server.port(), "/sync", 16 * 1024)) {
      peer.send(Raw.hello("raw"));
      peer.send(Raw.CODEC.encode(new Message.CatchUp(java.util.List.of())));
      peer.sendMessage(opcode, payload);
      java.util.List<Message> got = peer.receiveUntilClose();
      return new ClosedAfterCatchUp(got, peer.closeStatus, peer.endOfStream());
    } finally {
      server.disposeNow(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  @org.junit.jupiter.api.DisplayName("a node whose peer says GOAWAY and then closes answers the peer's close frame (1000), instead of cutting the connection")
  void aNodeAnswersTheCloseFrameThatFollowsAGoAway() {
    EntanglementNode a = TransportConformance.node("a");
    reactor.core.publisher.Sinks.One<Integer> answer = reactor.core.publisher.Sinks.one();
    // A peer that says HELLO, waits for the node's, then says GOAWAY and sends its close frame as a
    // plain frame (Reactor Netty's sendClose would close the connection without reading the answer).
    DisposableServer peer = HttpServer.create().host("127.0.0.1").port(0)
        .route(r -> r.ws("/sync", (in, out) -> {
          in.receiveCloseStatus().subscribe(
              s -> answer.tryEmitValue(s.code()), e -> answer.tryEmitEmpty(), answer::tryEmitEmpty);
          reactor.core.publisher.Sinks.Empty<Void> heard = reactor.core.publisher.Sinks.empty();
          in.receiveFrames().subscribe(f -> heard.tryEmitEmpty()); // reads on: a cancel would close
          reactor.core.publisher.Flux<Object> frames = reactor.core.publisher.Flux.concat(
              reactor.core.publisher.Flux.just(Raw.hello("raw"), Raw.CODEC.encode(new Message.CatchUp(java.util.List.of()))),
              heard.asMono().thenMany(reactor.core.publisher.Flux.just(
                  Raw.CODEC.encode(new Message.GoAway("SHUTDOWN", "raw is closing")), new byte[0])))
              .map(b -> b.length == 0
                  ? new io.netty.handler.codec.http.websocketx.CloseWebSocketFrame(1000, "bye")
                  : new io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame(Framing.encode(out.alloc(), b)));
          return out.sendObject(frames).then(Mono.never());
        }))
        .bindNow(WAIT);
    try {
      WebSocketClientTransport.builder(a).uri("ws://127.0.0.1:" + peer.port() + "/sync")
          .expect(PeerId.of("raw")).build().connectAndAttach().subscribe(v -> {}, e -> {});
      assertEquals(1000, answer.asMono().block(WAIT), "the node answered the close frame");
    } finally {
      peer.disposeNow(WAIT);
      a.close().block(WAIT);
    }
  }

  @Test
  @org.junit.jupiter.api.DisplayName("a peer that closes first gets the answer to its close frame, with its status, as the last frame")
  void aPeersCloseFrameIsAnsweredAndNothingFollowsTheAnswer() throws java.io.IOException {
    ClosedAfterCatchUp closed = sendAfterCatchUp(0x8, new byte[] {0x03, (byte) 0xe9}); // 1001
    assertEquals(1001, closed.status(), "Reactor Netty answers with the peer's status");
    assertTrue(closed.endOfStream(), "nothing follows the answer");
  }

  /** A Reactor Netty server mounting {@code b} at /sync, accepting every upgrade as the peer "raw". */
  private static DisposableServer serveAcceptingRaw(EntanglementNode b) {
    WebSocketServerTransport ws = WebSocketServerTransport.builder(b)
        .upgrade(req -> Mono.just(WebSocketServerTransport.Upgrade.accept(PeerId.of("raw")))).build();
    return HttpServer.create().host("127.0.0.1").port(0)
        .route(r -> r.get("/sync", ws.handler())).bindNow(WAIT);
  }

  /** A node that reads at most 100 frames a second from a link, 10 at once. */
  static EntanglementNode rateLimitedNode(String id) {
    return EntanglementNode.builder().id(id).owner(dev.entanglement.OwnerId.of("owner-" + id))
        .registry(dev.entanglement.Registry.builder("conformance").type(TransportConformance.CURSOR).build())
        .maxInboundRate(100, 10).build();
  }

  @Test
  void mountsOnAnExistingServerAndRefusesWithoutUpgrading() {
    EntanglementNode b = TransportConformance.node("b");
    EntanglementNode a = TransportConformance.node("a");
    WebSocketServerTransport ws =
        WebSocketServerTransport.builder(b)
            .upgrade(req -> {
              String token = req.requestHeaders().get("Authorization");
              if (token == null) {
                return Mono.just(WebSocketServerTransport.Upgrade.unauthorized());
              }
              return Mono.just(token.equals("Bearer good")
                  ? WebSocketServerTransport.Upgrade.accept(PeerId.of("a"))
                  : WebSocketServerTransport.Upgrade.forbidden());
            })
            .build();
    DisposableServer server =
        HttpServer.create().host("127.0.0.1").port(0)
            .route(r -> r.get("/health", (req, res) -> res.sendString(Mono.just("ok")))
                .get("/sync", ws.handler()))
            .bindNow(WAIT);
    try {
      String base = "127.0.0.1:" + server.port();
      assertEquals("ok", HttpClient.create().get().uri("http://" + base + "/health")
          .responseContent().aggregate().asString().block(WAIT));
      assertEquals(401, status(HttpClient.create(), "http://" + base + "/sync"));
      assertEquals(403, status(HttpClient.create().headers(h -> h.set("Authorization", "Bearer bad")),
          "http://" + base + "/sync"));
      assertTrue(!b.isConnected(PeerId.of("a")));

      WebSocketClientTransport.builder(a).uri("ws://" + base + "/sync").expect(PeerId.of("b"))
          .headers(h -> h.set("Authorization", "Bearer good")).build().connectAndAttach().subscribe();
      a.publish(new TransportConformance.Cursor("w", 8, 8)).block(WAIT);
      TransportConformance.await(b, "w", 8);
      assertTrue(b.isConnected(PeerId.of("a")));
    } finally {
      server.disposeNow(WAIT);
      a.close().block(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  void bindCapsConnectionsAndClosesSilentOnesAfterTheHandshakeTimeout() throws Exception {
    EntanglementNode b = TransportConformance.node("b");
    EntanglementNode a = TransportConformance.node("a");
    DisposableServer server =
        WebSocketServerTransport.builder(b)
            .upgrade(req -> Mono.just(WebSocketServerTransport.Upgrade.accept(PeerId.of("a"))))
            .maxConnections(2)
            // Not shorter: the first upgrade in a fresh JVM on a busy machine may take a second.
            .handshakeTimeout(Duration.ofSeconds(2))
            .build().bind().block(WAIT);
    try (LogCapture log = LogCapture.warnings(ConnectionCap.class)) {
      WebSocketClientTransport.builder(a).uri("ws://127.0.0.1:" + server.port() + "/entanglement")
          .expect(PeerId.of("b")).build().connectAndAttach().subscribe();
      a.publish(new TransportConformance.Cursor("w", 1, 1)).block(WAIT);
      TransportConformance.await(b, "w", 1);
      // A connection that sends its upgrade request byte by byte is closed after the timeout.
      Slowloris.Closed silent =
          Slowloris.until(server.port(), "GET /entanglement HTTP/1.1\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII),
              Duration.ofMillis(200), Duration.ofSeconds(8));
      assertTrue(silent.after().toMillis() >= 2000 && silent.bytesSent() < 28, silent.toString());
      // While a second connection is open, a third is closed at once and logged.
      try (java.net.Socket second = new java.net.Socket("127.0.0.1", server.port())) {
        second.setSoTimeout((int) WAIT.toMillis());
        second.getOutputStream().write("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
        assertTrue(second.getInputStream().read() >= 0); // admitted: it got an answer (404)
        Slowloris.Closed third = Slowloris.until(server.port(), new byte[0], Duration.ofMillis(50), WAIT);
        assertTrue(third.after().toMillis() < 2000, third.toString()); // at once, not at the deadline
        String line = log.await(l -> l.contains("2 connections open, the cap"), WAIT);
        assertTrue(line != null, log.lines().toString());
      }
      a.publish(new TransportConformance.Cursor("w", 2, 2)).block(WAIT);
      TransportConformance.await(b, "w", 2);
    } finally {
      server.disposeNow(WAIT);
      a.close().block(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  void theUpgradeHookLimitsTheBandwidthOfOneConnection() {
    EntanglementNode b = TransportConformance.node("b");
    EntanglementNode a = TransportConformance.node("a");
    long bytesPerSecond = 2_000;
    WebSocketServerTransport ws =
        WebSocketServerTransport.builder(b)
            .upgrade(req -> Mono.just(WebSocketServerTransport.Upgrade.accept(PeerId.of("a"), bytesPerSecond)))
            .build();
    DisposableServer server =
        HttpServer.create().host("127.0.0.1").port(0).route(r -> r.get("/sync", ws.handler())).bindNow(WAIT);
    try {
      // Ten objects whose frames exceed 400 bytes each (the key is in the frame twice: as key and
      // as id): at 2,000 B/s the last one leaves at least 9 x 400 / 2,000 = 1.8 s after the first.
      String padding = "p".repeat(200);
      for (int i = 0; i < 10; i++) {
        b.publish(new TransportConformance.Cursor("slow-" + i + "-" + padding, i, i)).block(WAIT);
      }
      long start = System.nanoTime();
      WebSocketClientTransport.builder(a).uri("ws://127.0.0.1:" + server.port() + "/sync")
          .expect(PeerId.of("b")).build().connectAndAttach().subscribe();
      for (int i = 0; i < 10; i++) {
        String key = "slow-" + i + "-" + padding;
        TransportConformance.awaitTrue(
            () -> a.get(TransportConformance.CURSOR, key).isPresent(), "received " + key);
      }
      Duration elapsed = Duration.ofNanos(System.nanoTime() - start);
      assertTrue(elapsed.compareTo(Duration.ofMillis(1_800)) >= 0,
          "4 KB at 2,000 B/s arrived in " + elapsed.toMillis() + " ms: the limit was not applied");
    } finally {
      server.disposeNow(WAIT);
      a.close().block(WAIT);
      b.close().block(WAIT);
    }
  }

  @Test
  void anAcceptedBandwidthMustNotBeNegative() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> WebSocketServerTransport.Upgrade.accept(PeerId.of("a"), -1));
    assertTrue(e.getMessage().contains("negative"), e.getMessage());
  }

  @Test
  void cancellingConnectClosesTheConnectionBeingOpened() throws InterruptedException {
    EntanglementNode node = TransportConformance.node("a");
    java.util.concurrent.CountDownLatch opened = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.CountDownLatch closed = new java.util.concurrent.CountDownLatch(1);
    DisposableServer server = HttpServer.create().host("127.0.0.1").port(0)
        .doOnConnection(c -> {
          opened.countDown();
          c.onDispose(closed::countDown);
        })
        .handle((req, res) -> Mono.never()) // never answers the upgrade
        .bindNow(WAIT);
    try {
      reactor.core.Disposable connecting = WebSocketClientTransport.builder(node)
          .uri("ws://127.0.0.1:" + server.port() + "/sync").expect(PeerId.of("b")).build()
          .connect().subscribe();
      assertTrue(opened.await(10, java.util.concurrent.TimeUnit.SECONDS));
      connecting.dispose();
      assertTrue(closed.await(10, java.util.concurrent.TimeUnit.SECONDS), "the connection being opened is closed");
    } finally {
      server.disposeNow(WAIT);
      node.close().block(WAIT);
    }
  }

  @Test
  void aTlsClientRefusesAPlainWsUri() {
    EntanglementNode node = TransportConformance.node("a");
    try {
      TlsConfig tls = TestPki.selfSigned("a").tls();
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> WebSocketClientTransport.builder(node).uri("ws://127.0.0.1:1/sync").expect(PeerId.of("b"))
              .tls(tls).build());
      assertTrue(e.getMessage().contains("wss://"), e.getMessage());
      WebSocketClientTransport.builder(node).uri("WSS://127.0.0.1:1/sync").expect(PeerId.of("b")).tls(tls).build();
    } finally {
      node.close().block(WAIT);
    }
  }

  /** The status of a WebSocket upgrade request. */
  private static int status(HttpClient client, String uri) {
    return client
        .headers(h -> h.set("Upgrade", "websocket").set("Connection", "Upgrade")
            .set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==").set("Sec-WebSocket-Version", "13"))
        .get().uri(uri).response().map(r -> r.status().code()).block(WAIT);
  }
}
