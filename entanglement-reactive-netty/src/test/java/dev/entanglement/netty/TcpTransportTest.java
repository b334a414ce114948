package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.NodeStats;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.PeerStats;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.Link;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.tcp.TcpClient;

@org.junit.jupiter.api.extension.ExtendWith(LeakDetection.class)
class TcpTransportTest {
  record Cursor(String id, double x, double y) {}

  static final SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);
  static final Duration WAIT = Duration.ofSeconds(10);

  private final List<Disposable> cleanup = new ArrayList<>();
  private final TestPki pki = new TestPki("test-ca");

  @AfterEach
  void close() {
    cleanup.forEach(Disposable::dispose);
  }

  private EntanglementNode node(String id) {
    EntanglementNode n =
        EntanglementNode.builder()
            .id(id)
            .owner(OwnerId.of("owner-" + id))
            .registry(Registry.builder("t").type(CURSOR).build())
            .build();
    cleanup.add(() -> n.close().block(WAIT));
    return n;
  }

  @Test
  @DisplayName("a node that closes sends GOAWAY as the last frame of a connection its dialer keeps (the dialer leaves that link to the node's close)")
  void closingSendsGoAwayOnADialledConnection() throws InterruptedException {
    EntanglementNode a = node("a");
    List<Message> got = new java.util.concurrent.CopyOnWriteArrayList<>();
    java.util.concurrent.CountDownLatch helloArrived = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.CountDownLatch ended = new java.util.concurrent.CountDownLatch(1);
    // A peer that says HELLO and CATCH_UP, then records every frame until the node ends the stream.
    DisposableServer peer = reactor.netty.tcp.TcpServer.create().host("127.0.0.1").port(0)
        .doOnConnection(c -> c.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(1 << 20)))
        .handle((in, out) -> out.send(reactor.core.publisher.Flux.just(
                    Raw.hello("raw"), Raw.CODEC.encode(new Message.CatchUp(List.of())))
                .map(b -> Framing.encode(out.alloc(), b)))
            .then()
            .and(Raw.bodies(in)
                .doOnNext(b -> {
                  Message m = Raw.CODEC.decode(b);
                  got.add(m);
                  if (m instanceof Message.Hello) {
                    helloArrived.countDown();
                  }
                })
                .doFinally(signal -> ended.countDown())
                .then()))
        .bindNow(WAIT);
    cleanup.add(peer);
    cleanup.add(TcpClientTransport.builder(a).remote("127.0.0.1", peer.port()).expect(PeerId.of("raw"))
        .build().maintain());
    assertTrue(helloArrived.await(WAIT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS));
    a.close().block(WAIT);
    assertTrue(ended.await(WAIT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS));
    Message last = got.get(got.size() - 1);
    assertTrue(last instanceof Message.GoAway g && g.code().equals("SHUTDOWN"), got.toString());
  }

  private DisposableServer serve(EntanglementNode node, TestPki.Identity id, PeerId... peers) {
    DisposableServer s =
        TcpServerTransport.builder(node).tls(id.tls()).destinations(List.of(peers)).build().bind().block(WAIT);
    cleanup.add(s);
    return s;
  }

  /** Nodes "low" and "high" (by the simultaneous-connect rule), each serving TLS and able to dial the other. */
  private record Pair(
      EntanglementNode low, EntanglementNode high, TcpClientTransport lowDials, TcpClientTransport highDials,
      PeerId lowId, PeerId highId) {}

  private Pair pairThatCanDialEachOther() {
    TestPki.Identity[] ids = lowAndHigh();
    EntanglementNode low = node("low");
    EntanglementNode high = node("high");
    DisposableServer lowServer = serve(low, ids[0], ids[1].fingerprint());
    DisposableServer highServer = serve(high, ids[1], ids[0].fingerprint());
    return new Pair(
        low,
        high,
        TcpClientTransport.builder(low).remote("localhost", highServer.port())
            .expect(ids[1].fingerprint()).tls(ids[0].tls()).build(),
        TcpClientTransport.builder(high).remote("localhost", lowServer.port())
            .expect(ids[0].fingerprint()).tls(ids[1].tls()).build(),
        ids[0].fingerprint(),
        ids[1].fingerprint());
  }

  private static void replicatesBothWays(EntanglementNode low, EntanglementNode high) {
    low.publish(new Cursor("from-low", 1, 1)).block(WAIT);
    await(high, "from-low", 1);
    high.publish(new Cursor("from-high", 1, 1)).block(WAIT);
    await(low, "from-high", 1);
  }

  /** Two identities, the one whose dial wins the simultaneous-connect rule first. */
  private TestPki.Identity[] lowAndHigh() {
    TestPki.Identity x = pki.issue("x");
    TestPki.Identity y = pki.issue("y");
    return PeerOrder.localDialWins(x.fingerprint(), y.fingerprint())
        ? new TestPki.Identity[] {x, y}
        : new TestPki.Identity[] {y, x};
  }

  private static Snapshot<Cursor> await(EntanglementNode n, String key, double x) {
    return n.watch(CURSOR, key).filter(s -> s.value() != null && s.value().x() == x).blockFirst(WAIT);
  }

  @Test
  @DisplayName("mutual TLS: nodes identify each other by certificate fingerprint and replicate")
  void tlsReplication() {
    TestPki.Identity sid = pki.issue("server");
    TestPki.Identity cid = pki.issue("client");
    EntanglementNode server = node("server");
    EntanglementNode client = node("client");
    DisposableServer s = serve(server, sid, cid.fingerprint());
    cleanup.add(
        TcpClientTransport.builder(client)
            .remote("localhost", s.port())
            .expect(sid.fingerprint())
            .tls(cid.tls())
            .build()
            .maintain());
    server.publish(new Cursor("s", 1, 1)).block(WAIT);
    client.publish(new Cursor("c", 2, 2)).block(WAIT);
    assertEquals(OwnerId.of("owner-server"), await(client, "s", 1).owner());
    assertEquals(OwnerId.of("owner-client"), await(server, "c", 2).owner());
    assertTrue(server.isConnected(cid.fingerprint()));
    assertTrue(client.isConnected(sid.fingerprint()));
    assertTrue(
        client.propose(CURSOR, "s", Map.of("x", 5.0)).block(WAIT).isCommitted(),
        "a proposal crosses the TLS link");
  }

  @Test
  @DisplayName("pinned fingerprints: self-signed peers complete the handshake; an unpinned one does not")
  void pinnedSelfSigned() {
    TestPki.Identity sid = TestPki.selfSigned("server");
    TestPki.Identity cid = TestPki.selfSigned("client");
    TestPki.Identity stranger = TestPki.selfSigned("stranger");
    TlsConfig serverTls = TlsConfig.builder().keyCertChain(sid.key(), sid.certificate())
        .trustedFingerprints(List.of(cid.fingerprint())).build();
    EntanglementNode server = node("server");
    EntanglementNode client = node("client");
    // Admit everyone who passes the handshake: the pins alone must keep the stranger out.
    DisposableServer s = TcpServerTransport.builder(server).tls(serverTls)
        .unknownDestination(p -> Mono.just(true)).build().bind().block(WAIT);
    cleanup.add(s);
    for (TestPki.Identity id : List.of(cid, stranger)) {
      TlsConfig tls = TlsConfig.builder().keyCertChain(id.key(), id.certificate())
          .trustedFingerprints(List.of(sid.fingerprint())).build();
      EntanglementNode n = id == cid ? client : node("stranger");
      cleanup.add(TcpClientTransport.builder(n).remote("localhost", s.port())
          .expect(sid.fingerprint()).tls(tls).build().maintain());
    }
    server.publish(new Cursor("pinned", 7, 7)).block(WAIT);
    await(client, "pinned", 7);
    assertTrue(server.isConnected(cid.fingerprint()));
    assertTrue(!server.isConnected(stranger.fingerprint()));
    // A client that pins another fingerprint refuses the server during the handshake.
    TlsConfig pinsOther = TlsConfig.builder().keyCertChain(cid.key(), cid.certificate())
        .trustedFingerprints(List.of(stranger.fingerprint())).build();
    Mono<?> dial = TcpClientTransport.builder(node("wary")).remote("localhost", s.port())
        .expect(sid.fingerprint()).tls(pinsOther).build().connect();
    assertThrows(RuntimeException.class, () -> dial.block(WAIT));
  }

  @Test
  @DisplayName("pinned fingerprints and a CA together: a pinned self-signed peer and a CA-issued one both connect")
  void pinnedAndCa() {
    TestPki.Identity sid = pki.issue("server");
    TestPki.Identity pinnedClient = TestPki.selfSigned("pinned");
    TestPki.Identity caClient = pki.issue("ca-client");
    TlsConfig serverTls = TlsConfig.builder().keyCertChain(sid.key(), sid.certificate())
        .trustedCertificates(pki.ca).trustedFingerprints(List.of(pinnedClient.fingerprint())).build();
    EntanglementNode server = node("server");
    DisposableServer s = TcpServerTransport.builder(server).tls(serverTls)
        .destinations(List.of(pinnedClient.fingerprint(), caClient.fingerprint())).build().bind().block(WAIT);
    cleanup.add(s);
    EntanglementNode a = node("a");
    EntanglementNode b = node("b");
    cleanup.add(TcpClientTransport.builder(a).remote("localhost", s.port()).expect(sid.fingerprint())
        .tls(TlsConfig.builder().keyCertChain(pinnedClient.key(), pinnedClient.certificate())
            .trustedCertificates(pki.ca).build())
        .build().maintain());
    cleanup.add(TcpClientTransport.builder(b).remote("localhost", s.port()).expect(sid.fingerprint())
        .tls(caClient.tls()).build().maintain());
    server.publish(new Cursor("both", 8, 8)).block(WAIT);
    await(a, "both", 8);
    await(b, "both", 8);
  }

  @Test
  @DisplayName("dialing a destination and reaching another fingerprint is refused")
  void wrongFingerprint() {
    TestPki.Identity sid = pki.issue("server");
    TestPki.Identity cid = pki.issue("client");
    TestPki.Identity other = pki.issue("other");
    DisposableServer s = serve(node("server"), sid, cid.fingerprint());
    Mono<?> dial =
        TcpClientTransport.builder(node("client"))
            .remote("localhost", s.port())
            .expect(other.fingerprint())
            .tls(cid.tls())
            .build()
            .connect();
    WrongPeerException e = assertThrows(WrongPeerException.class, () -> dial.block(WAIT));
    assertTrue(e.getMessage().contains(sid.fingerprint().value()), e.getMessage());
  }

  @Test
  @DisplayName("an unknown client fingerprint is refused and logged, unless the unknownDestination hook admits it")
  void unknownClient() throws InterruptedException {
    TestPki.Identity sid = pki.issue("server");
    TestPki.Identity cid = pki.issue("client");
    EntanglementNode server = node("server");
    DisposableServer strict = serve(server, sid);
    EntanglementNode client = node("client");
    try (LogCapture log = LogCapture.warnings(TcpServerTransport.class)) {
      // The refusal arrives as an ERROR frame, then the connection closes; the client has sent
      // frames the server never reads, so a close that did not shut the output first could reset
      // the connection and lose the ERROR.
      List<Message> answers = Raw.tcp(strict.port(), cid.tls(), Raw.CODEC.encode(new Message.Ping(1)));
      assertEquals(List.of(ErrorCode.UNAUTHORIZED.wire()),
          answers.stream().map(m -> ((Message.Error) m).code()).toList());
      assertTrue(!server.isConnected(cid.fingerprint()));
      assertLogged(log, "refused connection from /127.0.0.1:", "unknown peer " + cid.fingerprint().value());
    }

    DisposableServer open =
        TcpServerTransport.builder(server).tls(sid.tls())
            .unknownDestination(peer -> Mono.just(peer.equals(cid.fingerprint())))
            .build().bind().block(WAIT);
    cleanup.add(open);
    cleanup.add(TcpClientTransport.builder(client).remote("localhost", open.port())
        .expect(sid.fingerprint()).tls(cid.tls()).build().maintain());
    server.publish(new Cursor("s", 3, 3)).block(WAIT);
    await(client, "s", 3);
  }

  @Test
  @DisplayName("an unknownDestination hook that throws or returns null refuses the peer, with the ERROR and the log line of any refusal")
  void aHookThatThrowsRefuses() throws InterruptedException {
    EntanglementNode server = node("server");
    java.util.List<java.util.function.Function<PeerId, Mono<Boolean>>> hooks = java.util.List.of(
        peer -> {
          throw new IllegalStateException("the hook's own bug");
        },
        peer -> null);
    for (var hook : hooks) {
      DisposableServer s =
          TcpServerTransport.builder(server).unknownDestination(hook).build().bind().block(WAIT);
      cleanup.add(s);
      try (LogCapture log = LogCapture.warnings(TcpServerTransport.class)) {
        List<Message> answers = Raw.tcp(s.port(), null, Raw.CODEC.encode(new Message.Ping(1)));
        assertEquals(List.of(ErrorCode.UNAUTHORIZED.wire()),
            answers.stream().map(m -> ((Message.Error) m).code()).toList());
        assertLogged(log, "refused connection from /127.0.0.1:", "unknown peer tcp:");
      }
    }
  }

  @Test
  @DisplayName("a client certificate from another CA, an expired one, or none at all is never admitted, and each refusal is logged")
  void badCertificates() throws InterruptedException {
    TestPki.Identity sid = pki.issue("server");
    EntanglementNode server = node("server");
    TestPki stranger = new TestPki("other-ca");
    TestPki.Identity foreign = stranger.issue("foreign");
    TestPki.Identity expired = pki.issue("expired", Instant.now().minus(Duration.ofDays(10)),
        Instant.now().minus(Duration.ofDays(1)));
    DisposableServer s =
        TcpServerTransport.builder(server).tls(sid.tls()).unknownDestination(p -> Mono.just(true))
            .build().bind().block(WAIT);
    cleanup.add(s);
    TlsConfig foreignTrustingUs =
        TlsConfig.builder().keyCertChain(foreign.key(), foreign.certificate()).trustedCertificates(pki.ca).build();
    String refusedTls = "refused TLS connection from /127.0.0.1:";
    // The refusal names the certificate's fingerprint and the reason the JDK or OpenSSL gives.
    handshakeRefused(s, foreignTrustingUs.clientContext(), refusedTls, "certificate " + foreign.fingerprint().value() + ": ");
    handshakeRefused(s, expired.tls().clientContext(), refusedTls, "certificate " + expired.fingerprint().value() + ": ");
    // No client certificate at all: only the address is known.
    handshakeRefused(s, noCertificateContext(), refusedTls, "");
    assertTrue(!server.isConnected(foreign.fingerprint()));
    assertTrue(!server.isConnected(expired.fingerprint()));
    // The refused clients received no state: nothing was ever attached to the node.
    assertEquals(0, server.stats().framesReceived());
  }

  /** Connects with {@code client}, expects the handshake to fail, and the refusal to be logged. */
  private static void handshakeRefused(DisposableServer s, io.netty.handler.ssl.SslContext client, String... logged)
      throws InterruptedException {
    try (LogCapture log = LogCapture.warnings(HandshakeLog.class)) {
      try {
        // The handshake fails, or (TLS 1.3: the client finishes first) the server closes right after.
        Connection c = TcpClient.create().host("localhost").port(s.port())
            .secure(spec -> spec.sslContext(client)).connect().block(WAIT);
        c.onDispose().block(WAIT);
      } catch (RuntimeException expectedFailure) {
        // refused during the handshake
      }
      assertLogged(log, logged);
    }
  }

  /** A frame: header, then {@code body}. */
  static byte[] framed(byte[] body) {
    return java.nio.ByteBuffer.allocate(Framing.HEADER_BYTES + body.length).putInt(body.length).putInt(0).put(body).array();
  }

  /** Waits for a WARN line that contains every one of {@code parts}. */
  static String assertLogged(LogCapture log, String... parts) throws InterruptedException {
    String line = log.await(l -> java.util.Arrays.stream(parts).allMatch(l::contains), WAIT);
    assertTrue(line != null, "no line with " + List.of(parts) + " in " + log.lines());
    return line;
  }

  @Test
  @DisplayName("connections beyond the cap are closed at once and logged; the admitted peers keep syncing")
  void connectionCap() throws Exception {
    EntanglementNode server = node("server");
    DisposableServer s =
        TcpServerTransport.builder(server).maxConnections(2)
            .unknownDestination(p -> Mono.just(true)).build().bind().block(WAIT);
    cleanup.add(s);
    EntanglementNode client = node("client");
    cleanup.add(TcpClientTransport.builder(client).remote("127.0.0.1", s.port()).expect(PeerId.of("server")).build().maintain());
    server.publish(new Cursor("before", 1, 1)).block(WAIT);
    await(client, "before", 1);
    try (LogCapture log = LogCapture.warnings(ConnectionCap.class);
        java.net.Socket second = new java.net.Socket("127.0.0.1", s.port())) {
      // The second connection is admitted: the server answers its HELLO. A third is not.
      second.setSoTimeout((int) WAIT.toMillis());
      second.getOutputStream().write(framed(Raw.hello("second")));
      assertTrue(second.getInputStream().read() >= 0);
      Slowloris.Closed third = Slowloris.until(s.port(), new byte[0], Duration.ofMillis(50), WAIT);
      assertLogged(log, "refused connection from /127.0.0.1:", "2 connections open, the cap");
      assertTrue(third.after().compareTo(Duration.ofSeconds(5)) < 0, third.toString());
      server.publish(new Cursor("after", 2, 2)).block(WAIT);
      await(client, "after", 2);
    }
  }

  @Test
  @DisplayName("slowloris: a peer that sends nothing, or HELLO byte by byte, is closed after the handshake timeout")
  void slowPeersAreClosedAfterTheHandshakeTimeout() throws InterruptedException {
    EntanglementNode server =
        EntanglementNode.builder().id("server").registry(Registry.builder("t").type(CURSOR).build())
            .handshakeTimeout(Duration.ofMillis(400)).build();
    cleanup.add(() -> server.close().block(WAIT));
    DisposableServer plain =
        TcpServerTransport.builder(server).unknownDestination(p -> Mono.just(true)).build().bind().block(WAIT);
    cleanup.add(plain);
    TestPki.Identity sid = pki.issue("server");
    DisposableServer tls =
        TcpServerTransport.builder(server).tls(sid.tls()).tlsHandshakeTimeout(Duration.ofMillis(400))
            .unknownDestination(p -> Mono.just(true)).build().bind().block(WAIT);
    cleanup.add(tls);
    EntanglementNode client = node("client");
    cleanup.add(TcpClientTransport.builder(client).remote("127.0.0.1", plain.port()).expect(PeerId.of("server")).build().maintain());
    byte[] hello = framed(Raw.hello("slow"));
    Duration pace = Duration.ofMillis(100);
    Duration bound = Duration.ofSeconds(5);
    try (LogCapture engine = LogCapture.warnings("dev.entanglement.Engine");
        LogCapture handshake = LogCapture.warnings(HandshakeLog.class)) {
      for (byte[] drip : List.of(new byte[0], hello)) {
        Slowloris.Closed c = Slowloris.until(plain.port(), drip, pace, bound);
        assertTrue(c.after().toMillis() >= 400 && c.bytesSent() < Math.max(1, drip.length), c.toString());
        assertLogged(engine, "protocol error from tcp:/127.0.0.1:", "no HELLO within PT0.4S");
      }
      // TLS: the handshake itself times out, before the node sees the connection.
      Slowloris.Closed c = Slowloris.until(tls.port(), new byte[0], pace, bound);
      assertTrue(c.after().toMillis() >= 400, c.toString());
      assertLogged(handshake, "refused TLS connection from /127.0.0.1:", "handshake timed out");
    }
    server.publish(new Cursor("healthy", 5, 5)).block(WAIT);
    await(client, "healthy", 5);
  }

  @Test
  @DisplayName("inbound rate: a raw client flooding PINGs is read at the node's rate while another client keeps syncing")
  void inboundRateThrottlesAFloodingClient() throws Exception {
    int rate = 100;
    int burst = 20;
    EntanglementNode server =
        EntanglementNode.builder().id("server").owner(OwnerId.of("owner-server"))
            .registry(Registry.builder("t").type(CURSOR).build()).maxInboundRate(rate, burst).build();
    cleanup.add(() -> server.close().block(WAIT));
    DisposableServer s =
        TcpServerTransport.builder(server).unknownDestination(p -> Mono.just(true)).build().bind().block(WAIT);
    cleanup.add(s);
    EntanglementNode client = node("client");
    cleanup.add(TcpClientTransport.builder(client).remote("127.0.0.1", s.port()).expect(PeerId.of("server")).build().maintain());
    server.publish(new Cursor("before", 1, 1)).block(WAIT);
    await(client, "before", 1);
    int frames = 301; // HELLO and 300 PINGs: (301 - 20) / 100 = 2.81 s at the rate
    java.io.ByteArrayOutputStream flood = new java.io.ByteArrayOutputStream();
    flood.write(framed(Raw.hello("flooder")));
    for (int i = 1; i < frames; i++) {
      flood.write(framed(Raw.CODEC.encode(new Message.Ping(i))));
    }
    long start = System.nanoTime(); // before the connection: its bucket starts later
    try (java.net.Socket flooder = new java.net.Socket("127.0.0.1", s.port())) {
      flooder.getOutputStream().write(flood.toByteArray());
      PeerId peer = PeerId.of("tcp:/127.0.0.1:" + flooder.getLocalPort());
      // The other client syncs both ways meanwhile, long before the flood is read.
      server.publish(new Cursor("during", 2, 2)).block(WAIT);
      await(client, "during", 2);
      client.publish(new Cursor("back", 3, 3)).block(WAIT);
      await(server, "back", 3);
      assertTrue(framesFrom(server.stats(), peer) < frames, "the flood was read before the neighbour synced");
      // Every frame is read, never ahead of burst + rate × t.
      NodeStats done =
          server.statsEvery(Duration.ofMillis(20))
              .doOnNext(st -> {
                long read = framesFrom(st, peer);
                double t = (System.nanoTime() - start) / 1e9;
                assertTrue(read <= burst + rate * t + 2, read + " frames read after " + t + " s");
              })
              .filter(st -> framesFrom(st, peer) == frames)
              .blockFirst(WAIT);
      double seconds = (System.nanoTime() - start) / 1e9;
      assertTrue(seconds >= (frames - burst) / (double) rate - 0.05, "read in " + seconds + " s");
      PeerStats stats = done.peers().stream().filter(p -> p.peer().equals(peer)).findFirst().orElseThrow();
      assertTrue(stats.inboundPauses() > 0 && stats.inboundThrottled().toMillis() > 1_000, stats.toString());
    }
    server.publish(new Cursor("after", 4, 4)).block(WAIT);
    await(client, "after", 4);
  }

  /** Records every frame body the decoder emits (retained slices), to check each is released. */
  @io.netty.channel.ChannelHandler.Sharable
  private static final class BodyTap extends io.netty.channel.ChannelInboundHandlerAdapter {
    final List<ByteBuf> bodies = new java.util.concurrent.CopyOnWriteArrayList<>();

    @Override
    public void channelRead(io.netty.channel.ChannelHandlerContext ctx, Object msg) {
      if (msg instanceof ByteBuf b) {
        bodies.add(b);
      }
      ctx.fireChannelRead(msg);
    }

    long unreleased() {
      return bodies.stream().filter(b -> b.refCnt() > 0).count();
    }
  }

  @Test
  @DisplayName("frames a rate-limited link has not read yet are released when the peer closes (review, session 30)")
  void unreadFramesAreReleasedWhenThePeerCloses() throws Exception {
    EntanglementNode server =
        EntanglementNode.builder().id("server").owner(OwnerId.of("owner-server"))
            .registry(Registry.builder("t").type(CURSOR).build()).maxInboundRate(100, 20).build();
    cleanup.add(() -> server.close().block(WAIT));
    BodyTap tap = new BodyTap();
    DisposableServer s =
        TcpServerTransport.builder(server)
            .unknownDestination(p -> Mono.just(true))
            .tcpServer(t -> t.doOnConnection(c -> c.channel().pipeline().addAfter(FrameDecoder.NAME, "tap", tap)))
            .build().bind().block(WAIT);
    cleanup.add(s);
    int frames = 301; // HELLO and 300 PINGs: 2.81 s at the rate, so most wait unread
    java.io.ByteArrayOutputStream flood = new java.io.ByteArrayOutputStream();
    flood.write(framed(Raw.hello("flooder")));
    for (int i = 1; i < frames; i++) {
      flood.write(framed(Raw.CODEC.encode(new Message.Ping(i))));
    }
    PeerId peer;
    try (java.net.Socket flooder = new java.net.Socket("127.0.0.1", s.port())) {
      peer = PeerId.of("tcp:/127.0.0.1:" + flooder.getLocalPort());
      flooder.getOutputStream().write(flood.toByteArray());
      Eventually.until("the decoder split the whole flood", WAIT, () -> tap.bodies.size() == frames);
      assertTrue(framesFrom(server.stats(), peer) < frames, "most of the flood is still unread");
    } // the peer goes away with its flood unread
    Eventually.until("the link detached", WAIT,
        () -> server.stats().peers().stream().noneMatch(p -> p.peer().equals(peer)));
    // Before the fix the engine stopped asking and never cancelled, and the buffers stayed
    // retained in Reactor Netty's inbound queue for good.
    Eventually.until("every body released (" + tap.unreleased() + " of " + frames + " still retained)",
        WAIT, () -> tap.unreleased() == 0);
  }

  private static long framesFrom(NodeStats stats, PeerId peer) {
    return stats.peers().stream().filter(p -> p.peer().equals(peer)).mapToLong(PeerStats::framesReceived).sum();
  }

  @Test
  @DisplayName("the client verifies the server's host name")
  void hostNameVerified() {
    TestPki.Identity sid = pki.issue("server");
    TestPki.Identity cid = pki.issue("client");
    DisposableServer s = serve(node("server"), sid, cid.fingerprint());
    Mono<?> dial =
        TcpClientTransport.builder(node("client"))
            .remote("127.0.0.1", s.port())
            .serverName("not-the-server.example")
            .expect(sid.fingerprint())
            .tls(cid.tls())
            .build()
            .connect();
    assertThrows(RuntimeException.class, () -> dial.block(WAIT));
  }

  @Test
  @DisplayName("a TCP link delivers the frames of each read followed by END_OF_BURST, and never a marker without frames before it")
  void readsAreMarked() {
    byte[][] bodies = {{3, 1}, {3, 2, 2}, {3, 3, 3, 3}};
    DisposableServer s =
        reactor.netty.tcp.TcpServer.create().host("127.0.0.1").port(0)
            .handle((in, out) -> out.send(Mono.fromSupplier(() -> {
              ByteBuf b = out.alloc().buffer();
              for (byte[] body : bodies) {
                Framing.write(b, body);
              }
              return b;
            })).then(Mono.never()))
            .bindNow(WAIT);
    cleanup.add(s);
    Link link = TcpClientTransport.builder(node("client")).remote("127.0.0.1", s.port())
        .expect(PeerId.of("raw")).build().connect().block(WAIT);
    cleanup.add(link);
    List<byte[]> got = new ArrayList<>();
    int[] frames = {0};
    link.receive()
        .doOnNext(got::add)
        .takeUntil(b -> b.length > 0 ? ++frames[0] < 0 : frames[0] == bodies.length)
        .blockLast(WAIT);
    List<byte[]> received = got.stream().filter(b -> b.length > 0).toList();
    assertEquals(bodies.length, received.size());
    for (int i = 0; i < bodies.length; i++) {
      assertArrayEquals(bodies[i], received.get(i));
    }
    for (int i = 0; i < got.size(); i++) {
      if (got.get(i).length == 0) {
        assertTrue(i > 0 && got.get(i - 1).length > 0, "a marker follows a frame, at " + i);
      }
    }
    assertEquals(0, got.get(got.size() - 1).length, "the last read's frames are marked");
  }

  @Test
  @DisplayName("an empty body, an oversize frame or an unknown critical flag gets an ERROR frame and closes only that connection")
  void badFramesCloseTheConnection() {
    EntanglementNode server = node("server");
    DisposableServer s =
        TcpServerTransport.builder(server).maxFrameSize(1024)
            .unknownDestination(p -> Mono.just(true)).build().bind().block(WAIT);
    cleanup.add(s);
    FrameCodec codec = new FrameCodec();
    for (ByteBuf bad : List.of(header(0, 0), header(4096, 0), header(10, 0x2))) {
      List<Message> got = new java.util.concurrent.CopyOnWriteArrayList<>();
      Connection c =
          TcpClient.create().host("127.0.0.1").port(s.port())
              .doOnConnected(x -> x.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(1 << 20)))
              .handle((in, out) -> {
                Raw.bodies(in).subscribe(b -> got.add(codec.decode(b)), e -> {});
                return out.send(Mono.just(bad)).then(Mono.never());
              })
              .connect().block(WAIT);
      c.onDispose().block(WAIT);
      assertTrue(got.stream().anyMatch(m -> m instanceof Message.Error e && e.code().equals("BAD_ENCODING")), got.toString());
    }
    // The server still serves others.
    EntanglementNode client = node("client");
    cleanup.add(TcpClientTransport.builder(client).remote("127.0.0.1", s.port()).expect(PeerId.of("server")).build().maintain());
    server.publish(new Cursor("ok", 7, 7)).block(WAIT);
    assertInstanceOf(Snapshot.class, await(client, "ok", 7));
  }

  @Test
  @DisplayName("maintain(): after the server restarts, the client reconnects and the nodes converge")
  void reconnects() {
    TestPki.Identity sid = pki.issue("server");
    TestPki.Identity cid = pki.issue("client");
    EntanglementNode server = node("server");
    EntanglementNode client = node("client");
    DisposableServer first = serve(server, sid, cid.fingerprint());
    int port = first.port();
    cleanup.add(
        TcpClientTransport.builder(client).remote("localhost", port).expect(sid.fingerprint())
            .tls(cid.tls()).backoff(Duration.ofMillis(50), Duration.ofMillis(200)).build().maintain());
    server.publish(new Cursor("s", 1, 1)).block(WAIT);
    await(client, "s", 1);
    first.disposeNow(WAIT);
    server.publish(new Cursor("s", 2, 2)).block(WAIT);
    DisposableServer second =
        TcpServerTransport.builder(server).port(port).tls(sid.tls()).destination(cid.fingerprint())
            .build().bind().block(WAIT);
    cleanup.add(second);
    await(client, "s", 2);
  }

  private static ByteBuf header(long length, int flags) {
    ByteBuf b = Unpooled.buffer(8);
    b.writeInt((int) length);
    b.writeInt(flags);
    return b;
  }

  private io.netty.handler.ssl.SslContext noCertificateContext() {
    try {
      return io.netty.handler.ssl.SslContextBuilder.forClient().trustManager(pki.ca).build();
    } catch (javax.net.ssl.SSLException e) {
      throw new IllegalStateException(e);
    }
  }

  @Test
  @DisplayName("OpenSSL is used when available, the JDK provider otherwise; the two interoperate")
  void tlsProviders() {
    TestPki.Identity sid = pki.issue("server");
    TestPki.Identity cid = pki.issue("client");
    assertEquals(io.netty.handler.ssl.OpenSsl.isAvailable() ? "OPENSSL" : "JDK", sid.tls().provider());
    TlsConfig jdk = TlsConfig.builder().keyCertChain(cid.key(), cid.certificate())
        .trustedCertificates(pki.ca).jdkProvider().build();
    assertEquals("JDK", jdk.provider());
    EntanglementNode server = node("server");
    EntanglementNode client = node("client");
    DisposableServer s = serve(server, sid, cid.fingerprint());
    cleanup.add(TcpClientTransport.builder(client).remote("localhost", s.port())
        .expect(sid.fingerprint()).tls(jdk).build().maintain());
    server.publish(new Cursor("p", 6, 6)).block(WAIT);
    await(client, "p", 6);
  }

  @Test
  @DisplayName("simultaneous dials: both sides keep the connection dialed by the lower fingerprint, and it stays")
  void simultaneousConnects() {
    TestPki.Identity aid = pki.issue("a");
    TestPki.Identity bid = pki.issue("b");
    EntanglementNode a = node("a");
    EntanglementNode b = node("b");
    DisposableServer sa = serve(a, aid, bid.fingerprint());
    DisposableServer sb = serve(b, bid, aid.fingerprint());
    cleanup.add(TcpClientTransport.builder(a).remote("localhost", sb.port()).expect(bid.fingerprint())
        .tls(aid.tls()).backoff(Duration.ofMillis(20), Duration.ofMillis(200)).build().maintain());
    cleanup.add(TcpClientTransport.builder(b).remote("localhost", sa.port()).expect(aid.fingerprint())
        .tls(bid.tls()).backoff(Duration.ofMillis(20), Duration.ofMillis(200)).build().maintain());
    a.publish(new Cursor("x", 1, 1)).block(WAIT);
    await(b, "x", 1);
    // Over the next second the pair must stay connected: no flapping between the two connections.
    for (int i = 0; i < 20; i++) {
      reactor.core.publisher.Mono.delay(Duration.ofMillis(50)).block(WAIT);
      a.publish(new Cursor("x", 2 + i, 1)).block(WAIT);
      await(b, "x", 2 + i);
    }
    assertTrue(a.isConnected(bid.fingerprint()) && b.isConnected(aid.fingerprint()));
  }

  @Test
  @DisplayName("a peer's new connection replaces its old one at once, even where this node's dial would win: only an open dial of its own is kept")
  void aReconnectReplacesTheOldConnection() {
    TestPki.Identity[] ids = lowAndHigh();
    TestPki.Identity lowId = ids[0];
    TestPki.Identity highId = ids[1];
    EntanglementNode server = node("low"); // its own dial would win, but it dials nothing
    EntanglementNode client = node("high");
    DisposableServer s = serve(server, lowId, highId.fingerprint());
    TcpClientTransport dial = TcpClientTransport.builder(client).remote("localhost", s.port())
        .expect(lowId.fingerprint()).tls(highId.tls()).build();
    cleanup.add(dial.connectAndAttach().subscribe());
    server.publish(new Cursor("s", 1, 1)).block(WAIT);
    await(client, "s", 1);
    // A second connection while the server still holds the first: as after the client's side of
    // the first died without the server noticing.
    Link second = dial.connect().block(WAIT);
    TransportConformance.awaitTrue(
        () -> !client.isConnected(lowId.fingerprint()) || second.isDisposed(), "the server decided");
    assertFalse(second.isDisposed(), "refused: the server kept the old connection");
    cleanup.add(client.attach(second).subscribe());
    server.publish(new Cursor("s", 2, 2)).block(WAIT);
    await(client, "s", 2);
  }

  @Test
  @DisplayName("dials that cross: the losing side drops its own after the handshake, so one connection stays")
  void crossedDialsKeepTheWinningOne() {
    Pair pair = pairThatCanDialEachOther();
    EntanglementNode low = pair.low();
    EntanglementNode high = pair.high();
    TcpClientTransport lowDials = pair.lowDials();
    TcpClientTransport highDials = pair.highDials();
    // Both handshakes finish before either side attaches its own dial: each server has accepted
    // the other's dial by then, the order in which crossed dials drop both without the rule.
    Link highLink = highDials.connect().block(WAIT);
    TransportConformance.awaitTrue(() -> low.isConnected(pair.highId()), "low accepted high's dial");
    Link lowLink = lowDials.connect().block(WAIT);
    TransportConformance.awaitTrue(() -> high.isConnected(pair.lowId()), "high accepted low's dial");
    cleanup.add(highDials.attachDialled(highLink).subscribe());
    cleanup.add(lowDials.attachDialled(lowLink).subscribe());
    TransportConformance.awaitTrue(highLink::isDisposed, "high dropped its losing dial");
    replicatesBothWays(low, high);
    assertFalse(lowLink.isDisposed(), "the winning dial stays");
  }

  @Test
  @DisplayName("dials that cross: accepting the winning dial closes the losing one, so a late attach of it replaces nothing")
  void acceptingTheWinningDialClosesTheLosingOne() {
    Pair pair = pairThatCanDialEachOther();
    EntanglementNode low = pair.low();
    EntanglementNode high = pair.high();
    TcpClientTransport lowDials = pair.lowDials();
    TcpClientTransport highDials = pair.highDials();
    Link highLink = highDials.connect().block(WAIT);
    TransportConformance.awaitTrue(() -> low.isConnected(pair.highId()), "low accepted high's dial");
    Link lowLink = lowDials.connect().block(WAIT);
    TransportConformance.awaitTrue(highLink::isDisposed, "high's server closed its own losing dial");
    // As when high's client checked for a crossing just before low's dial was accepted, and
    // attached its own just after.
    cleanup.add(high.attach(highLink).subscribe());
    cleanup.add(lowDials.attachDialled(lowLink).subscribe());
    replicatesBothWays(low, high);
    assertFalse(lowLink.isDisposed(), "the winning dial stays");
  }

  @Test
  @DisplayName("a winning dial that the peer refuses (it admits us only on its own dials) does not replace the peer's working dial")
  void aWinningDialThePeerRefusesKeepsThePeersDial() {
    TestPki.Identity[] ids = lowAndHigh();
    EntanglementNode low = node("low");
    EntanglementNode high = node("high");
    DisposableServer lowServer = serve(low, ids[0], ids[1].fingerprint());
    DisposableServer highServer = serve(high, ids[1]); // low is not among its destinations
    TcpClientTransport highDials = TcpClientTransport.builder(high).remote("localhost", lowServer.port())
        .expect(ids[0].fingerprint()).tls(ids[1].tls()).build();
    TcpClientTransport lowDials = TcpClientTransport.builder(low).remote("localhost", highServer.port())
        .expect(ids[1].fingerprint()).tls(ids[0].tls()).build();
    Link highLink = highDials.connect().block(WAIT);
    cleanup.add(highDials.attachDialled(highLink).subscribe());
    TransportConformance.awaitTrue(() -> low.isConnected(ids[1].fingerprint()), "low accepted high's dial");
    Link lowLink = lowDials.connect().block(WAIT);
    lowDials.attachDialled(lowLink).block(WAIT);
    assertTrue(lowLink.isDisposed(), "the refused dial is closed");
    replicatesBothWays(low, high);
    assertFalse(highLink.isDisposed(), "high's dial is kept");
  }

  @Test
  @DisplayName("a winning dial that the peer admits replaces the peer's dial once its HELLO came, and carries every frame after it")
  void aWinningDialThePeerAdmitsReplacesItsDial() {
    Pair pair = pairThatCanDialEachOther();
    Link highLink = pair.highDials().connect().block(WAIT);
    cleanup.add(pair.highDials().attachDialled(highLink).subscribe());
    TransportConformance.awaitTrue(() -> pair.low().isConnected(pair.highId()), "low accepted high's dial");
    pair.high().publish(new Cursor("before", 1, 1)).block(WAIT);
    await(pair.low(), "before", 1);
    Link lowLink = pair.lowDials().connect().block(WAIT);
    cleanup.add(pair.lowDials().attachDialled(lowLink).subscribe());
    TransportConformance.awaitTrue(highLink::isDisposed, "high's dial was replaced");
    for (int i = 0; i < 50; i++) {
      pair.high().publish(new Cursor("k" + i, i, 1)).block(WAIT);
    }
    await(pair.low(), "k49", 49);
    replicatesBothWays(pair.low(), pair.high());
    assertFalse(lowLink.isDisposed(), "the winning dial stays");
  }

  @Test
  @DisplayName("a dialer stops when its node closes, instead of dialling for it for ever")
  void aDialerStopsWhenItsNodeCloses() {
    EntanglementNode lonely = node("lonely");
    reactor.core.Disposable dialer = TcpClientTransport.builder(lonely).remote("127.0.0.1", 1) // refused
        .expect(pki.issue("peer").fingerprint()).tls(pki.issue("lonely").tls())
        .backoff(Duration.ofMillis(20), Duration.ofMillis(100)).build().maintain();
    cleanup.add(dialer);
    assertFalse(dialer.isDisposed());
    lonely.close().block(WAIT);
    TransportConformance.awaitTrue(dialer::isDisposed, "the dialer stopped");
  }

  @Test
  @DisplayName("a winning dial that waits for the peer's HELLO ends its wait when the node closes, instead of holding the connection for the whole wait")
  void aDialWaitingForHelloEndsWhenTheNodeCloses() throws InterruptedException {
    TestPki.Identity[] ids = lowAndHigh();
    EntanglementNode low = node("low");
    DisposableServer lowServer = serve(low, ids[0], ids[1].fingerprint());
    // The peer dialled low, and low accepted it: low's own dial, which wins, must wait for the
    // peer's HELLO before it replaces that connection. The peer never says HELLO on either.
    Connection peersDial = TcpClient.create().host("localhost").port(lowServer.port())
        .secure(spec -> spec.sslContext(ids[1].tls().clientContext()))
        .connectNow(WAIT);
    cleanup.add(peersDial);
    TransportConformance.awaitTrue(() -> low.isConnected(ids[1].fingerprint()), "low accepted the peer's dial");
    java.util.concurrent.CountDownLatch dialArrived = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.CountDownLatch dialEnded = new java.util.concurrent.CountDownLatch(1);
    DisposableServer silentPeer = reactor.netty.tcp.TcpServer.create().host("127.0.0.1").port(0)
        .secure(spec -> spec.sslContext(ids[1].tls().serverContext()))
        .doOnConnection(c -> {
          dialArrived.countDown();
          c.onDispose(dialEnded::countDown);
        })
        .handle((in, out) -> in.receive().then())
        .bindNow(WAIT);
    cleanup.add(silentPeer);
    cleanup.add(TcpClientTransport.builder(low).remote("localhost", silentPeer.port())
        .expect(ids[1].fingerprint()).tls(ids[0].tls()).build().maintain());
    assertTrue(dialArrived.await(WAIT.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS));
    low.close().block(WAIT);
    // The close itself waits at most 2 s for links; the wait it must end lasts 10 s.
    assertTrue(
        dialEnded.await(TcpClientTransport.HELLO_WAIT.toMillis() / 2, java.util.concurrent.TimeUnit.MILLISECONDS),
        "the dial waiting for HELLO was closed with the node");
  }

  @Test
  @DisplayName("bad input never reaches Reactor's global error hooks")
  void badInputStaysOffGlobalHooks() {
    java.util.List<Throwable> dropped = new java.util.concurrent.CopyOnWriteArrayList<>();
    reactor.core.publisher.Hooks.onErrorDropped(dropped::add);
    reactor.core.publisher.Hooks.onNextDropped(o -> dropped.add(new IllegalStateException("next dropped " + o)));
    try {
      badFramesCloseTheConnection();
      assertTrue(dropped.isEmpty(), dropped.toString());
    } finally {
      reactor.core.publisher.Hooks.resetOnErrorDropped();
      reactor.core.publisher.Hooks.resetOnNextDropped();
    }
  }
}
