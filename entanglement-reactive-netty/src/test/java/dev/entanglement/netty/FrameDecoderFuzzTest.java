package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.fail;

import dev.entanglement.EntanglementNode;
import dev.entanglement.transport.Link;
import dev.entanglement.PeerId;
import dev.entanglement.netty.TransportConformance.Cursor;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import dev.entanglement.protocol.ProtocolException;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame;
import io.netty.handler.codec.http.websocketx.ContinuationWebSocketFrame;
import io.netty.handler.codec.http.websocketx.TextWebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Hooks;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.http.client.HttpClient;
import reactor.netty.tcp.TcpClient;

/**
 * Fuzzes the transports' framing with raw bytes over real connections (127.0.0.1): TCP with writes
 * split at random points, and WebSocket with messages fragmented at random points. Headers lie
 * about lengths, announce oversize frames or set critical flags; bodies are mutated; some streams
 * are garbage. A bad header gets ERROR then close; every connection ends with the node's answer
 * (PONG to a trailing PING) or an ERROR then close, or is abandoned by the client mid-frame;
 * Netty reports no leaked buffer (paranoid detection); and another client of the same node, {@code
 * a}, keeps getting every state published meanwhile. {@code -Dfuzz.iterations=N} scales the number
 * of connections (the default build opens a few dozen).
 */
@ExtendWith(LeakDetection.class)
class FrameDecoderFuzzTest {
  private static final Duration WAIT = Duration.ofSeconds(10);
  private static final FrameCodec CODEC = new FrameCodec();
  /** Small, so that oversize frames cost little. */
  private static final int MAX_FRAME = 4096;
  private static final long DEFAULT_SEED = 20261129L;

  private static EntanglementNode a;
  private static EntanglementNode b;
  private static DisposableServer tcp;
  private static DisposableServer ws;
  private static Link healthy;
  private static final List<Object> dropped = new CopyOnWriteArrayList<>();

  @BeforeAll
  static void start() {
    Hooks.onErrorDropped(dropped::add);
    Hooks.onNextDropped(v -> dropped.add("onNextDropped " + v));
    a = TransportConformance.node("a");
    b = TransportConformance.node("b");
    tcp = TcpServerTransport.builder(b).maxFrameSize(MAX_FRAME)
        .unknownDestination(p -> Mono.just(true)).build().bind().block(WAIT);
    ws = WebSocketServerTransport.builder(b).maxFrameSize(MAX_FRAME)
        .upgrade(req -> Mono.just(WebSocketServerTransport.Upgrade.accept(PeerId.of("ws-fuzz"))))
        .build().bind().block(WAIT);
    healthy = TcpClientTransport.builder(a).remote("127.0.0.1", tcp.port()).expect(PeerId.of("b"))
        .build().connect().block(WAIT);
    a.attach(healthy).subscribe();
    TransportConformance.awaitTrue(() -> a.isConnected(PeerId.of("b")), "a connected to b");
  }

  @AfterAll
  static void stop() {
    Hooks.resetOnErrorDropped();
    Hooks.resetOnNextDropped();
    healthy.dispose();
    tcp.disposeNow(WAIT);
    ws.disposeNow(WAIT);
    a.close().block(WAIT);
    b.close().block(WAIT);
  }

  /** What a case sends, and what the node must answer. */
  enum Kind {
    VALID, // a valid frame: the node answers the trailing PING
    NON_CRITICAL_FLAG, // a valid body with unknown non-critical flags: ignored, PING answered
    OVERSIZE, // a header announcing more than the maximum: ERROR, close
    CRITICAL_FLAG, // an unknown critical flag: ERROR, close
    MUTATED_BODY, // a mutated body under a true header: PING answered, or ERROR then close
    SHORT_LENGTH, // a header announcing fewer bytes than follow: the rest is read as frames
    LONG_LENGTH, // a header announcing more bytes than come: the client leaves mid-frame
    GARBAGE // random bytes
  }

  @Test
  @DisplayName("TCP: random headers, bodies and split points; ERROR then close, no leak, the node keeps serving")
  void tcp() {
    long seed = seed();
    long n = iterations(60);
    List<String> failures = new ArrayList<>();
    long only = Long.getLong("fuzz.case", -1L);
    for (long i = Math.max(0, only); i < (only >= 0 ? only + 1 : n) && failures.size() < 10; i++) {
      Random r = new Random(seed * 31 + i);
      Kind kind = Kind.values()[r.nextInt(Kind.values().length)];
      byte[] sent = caseFrame(r, kind);
      byte[] stream = concat(frame(hello(), 0), sent, frame(CODEC.encode(new Message.Ping(i)), 0));
      Outcome o = overTcp(split(r, stream), i, kind == Kind.LONG_LENGTH || kind == Kind.SHORT_LENGTH || kind == Kind.GARBAGE);
      String problem = judge(kind, o, i, saysGoAway(sent));
      if (problem != null) {
        failures.add("tcp seed=" + seed + ", case=" + i + " " + kind + ": " + problem
            + "\n  stream " + java.util.HexFormat.of().formatHex(stream, 0, Math.min(stream.length, 160)));
      }
      if (i % 10 == 9) {
        checkHealthy("tcp-" + i, failures);
      }
    }
    System.out.printf("FrameDecoderFuzzTest.tcp: seed=%d, %d connections%n", seed, n);
    finish(failures);
  }

  @Test
  @DisplayName("WebSocket: random headers and bodies, messages fragmented at random points; ERROR then close")
  void webSocket() {
    long seed = seed();
    long n = iterations(30);
    List<String> failures = new ArrayList<>();
    long only = Long.getLong("fuzz.case", -1L);
    for (long i = Math.max(0, only); i < (only >= 0 ? only + 1 : n) && failures.size() < 10; i++) {
      Random r = new Random(seed * 37 + i);
      Kind kind = Kind.values()[r.nextInt(Kind.values().length)];
      boolean text = kind == Kind.GARBAGE && r.nextBoolean();
      byte[] message = kind == Kind.LONG_LENGTH || kind == Kind.SHORT_LENGTH
          ? lengthLie(r, kind) : caseFrame(r, kind);
      Outcome o = overWebSocket(r, message, text, i);
      // On WebSocket a message is one frame: a length that disagrees with it is refused at once.
      Kind expect = kind == Kind.LONG_LENGTH || kind == Kind.SHORT_LENGTH || text ? Kind.OVERSIZE : kind;
      String problem = judge(expect, o, i, !text && saysGoAway(message));
      if (problem != null) {
        failures.add("ws seed=" + seed + ", case=" + i + " " + kind + (text ? " (text)" : "") + ": " + problem);
      }
      if (i % 10 == 9) {
        checkHealthy("ws-" + i, failures);
      }
    }
    System.out.printf("FrameDecoderFuzzTest.webSocket: seed=%d, %d connections%n", seed, n);
    finish(failures);
  }

  private static void finish(List<String> failures) {
    if (b.stats().tasksFailed() > 0) {
      failures.add(b.stats().tasksFailed() + " engine tasks failed on b (see the log)");
    }
    if (!dropped.isEmpty()) {
      failures.add("dropped by Reactor: " + dropped);
    }
    if (!failures.isEmpty()) {
      fail(failures.size() + " failures (-Dfuzz.seed reproduces them):\n" + String.join("\n", failures));
    }
  }

  private static void checkHealthy(String key, List<String> failures) {
    b.publish(new Cursor(key, 1, 1)).block(WAIT);
    if (TransportConformance.await(a, key, 1) == null) {
      failures.add("the healthy client did not get " + key);
    }
  }

  /** What came back on one connection. */
  record Outcome(List<Message> answers, boolean closed, boolean abandoned, String client) {}

  /**
   * Whether {@code frame}, header included, is a whole frame whose body is a GOAWAY: the node then
   * answers nothing more, and the connection closes without an ERROR (PROTOCOL.md §3 item 5).
   */
  private static boolean saysGoAway(byte[] frame) {
    if (frame.length < Framing.HEADER_BYTES
        || java.nio.ByteBuffer.wrap(frame).getInt() != frame.length - Framing.HEADER_BYTES) {
      return false;
    }
    try {
      return CODEC.decode(java.util.Arrays.copyOfRange(frame, Framing.HEADER_BYTES, frame.length))
          instanceof Message.GoAway;
    } catch (RuntimeException e) {
      return false;
    }
  }

  /** Null if the outcome is what {@code kind} calls for; {@code saidGoAway}: the client's frame was a GOAWAY. */
  private static String judge(Kind kind, Outcome o, long nonce, boolean saidGoAway) {
    boolean ponged = o.answers.stream().anyMatch(m -> m instanceof Message.Pong p && p.nonce() == nonce);
    int firstError = -1;
    for (int k = 0; k < o.answers.size(); k++) {
      if (o.answers.get(k) instanceof Message.Error) {
        firstError = k;
        break;
      }
    }
    switch (kind) {
      case VALID, NON_CRITICAL_FLAG:
        return ponged && !o.closed ? null : "expected PONG on an open connection, got " + o;
      case OVERSIZE, CRITICAL_FLAG:
        if (firstError < 0 || !o.closed || ponged) {
          return "expected ERROR then close, got " + o;
        }
        Message.Error e = (Message.Error) o.answers.get(firstError);
        return e.code().equals("BAD_ENCODING") ? null : "expected BAD_ENCODING, got " + e;
      default:
        if (o.abandoned || ponged) {
          return null;
        }
        if (o.closed && (firstError >= 0 || saidGoAway
            || o.answers.stream().anyMatch(m -> m instanceof Message.GoAway))) {
          return null;
        }
        return o.closed ? "closed without an ERROR: " + o : "neither answered nor closed: " + o;
    }
  }

  // ------------------------------------------------------------------ cases

  private static byte[] hello() {
    return CODEC.encode(new Message.Hello(FrameCodec.PROTOCOL_VERSION, "fuzz", List.of(), 0));
  }

  private static final List<byte[]> BODIES = List.of(
      CODEC.encode(new Message.Ping(7)),
      CODEC.encode(new Message.Routes(java.util.Map.of("owner-z", 1))),
      CODEC.encode(new Message.CatchUp(List.of())),
      CODEC.encode(new Message.Error(0, "UNAUTHORIZED", "no")),
      CODEC.encode(new Message.Sync("Cursor", "k", "owner-z", 1, 1, 0, false,
          tools.jackson.databind.node.JsonNodeFactory.instance.objectNode().put("id", "k").put("x", 1).put("y", 2))));

  /** One frame, header included, of the given kind. */
  private static byte[] caseFrame(Random r, Kind kind) {
    byte[] body = BODIES.get(r.nextInt(BODIES.size())).clone();
    switch (kind) {
      case VALID:
        return frame(body, 0);
      case NON_CRITICAL_FLAG:
        return frame(body, (1 + r.nextInt(0xffff)) << 16);
      case OVERSIZE: {
        long length = r.nextBoolean() ? MAX_FRAME + 1 + r.nextInt(1000) : 0x80000000L + r.nextInt(1 << 30);
        return header(length, 0);
      }
      case CRITICAL_FLAG:
        return frame(body, (1 << r.nextInt(16)) | (r.nextBoolean() ? r.nextInt() & 0xffff0000 : 0));
      case MUTATED_BODY: {
        int flips = 1 + r.nextInt(4);
        for (int k = 0; k < flips; k++) {
          int at = r.nextInt(body.length * 8);
          body[at / 8] ^= (byte) (1 << (at % 8));
        }
        return frame(body, 0);
      }
      case SHORT_LENGTH:
      case LONG_LENGTH:
        return lengthLie(r, kind);
      default: {
        byte[] g = new byte[1 + r.nextInt(64)];
        r.nextBytes(g);
        return g;
      }
    }
  }

  private static byte[] lengthLie(Random r, Kind kind) {
    byte[] body = BODIES.get(r.nextInt(BODIES.size()));
    int length = kind == Kind.SHORT_LENGTH
        ? r.nextInt(body.length)
        : body.length + 1 + r.nextInt(MAX_FRAME - body.length);
    return concat(header(length, 0), body);
  }

  private static byte[] frame(byte[] body, int flags) {
    return concat(header(body.length, flags), body);
  }

  private static byte[] header(long length, int flags) {
    return ByteBuffer.allocate(8).putInt((int) length).putInt(flags).array();
  }

  private static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] p : parts) {
      out.write(p, 0, p.length);
    }
    return out.toByteArray();
  }

  private static List<byte[]> split(Random r, byte[] stream) {
    List<byte[]> chunks = new ArrayList<>();
    int at = 0;
    while (at < stream.length) {
      int n = 1 + r.nextInt(Math.min(stream.length - at, r.nextBoolean() ? 3 : 40));
      chunks.add(java.util.Arrays.copyOfRange(stream, at, at + n));
      at += n;
    }
    return chunks;
  }

  // ------------------------------------------------------------------ clients

  /**
   * Writes {@code chunks} (each flushed on its own) and collects the answers until the node closes
   * or answers the PING; if {@code mayStall}, the node may rightly wait for bytes that never come,
   * and the client leaves after a short while.
   */
  private static Outcome overTcp(List<byte[]> chunks, long nonce, boolean mayStall) {
    List<Message> got = new CopyOnWriteArrayList<>();
    CountDownLatch done = new CountDownLatch(1);
    Connection c =
        TcpClient.create().host("127.0.0.1").port(tcp.port())
            .doOnConnected(x -> x.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(1 << 20)))
            .handle((in, out) -> {
              Raw.bodies(in).subscribe(bytes -> {
                Message m = decode(bytes);
                got.add(m);
                if (m instanceof Message.Pong p && p.nonce() == nonce) {
                  done.countDown();
                }
              }, e -> {});
              return out.send(Flux.fromIterable(chunks).map(Unpooled::wrappedBuffer), buf -> true)
                  .then(Mono.never());
            })
            .connect().block(WAIT);
    c.onDispose().subscribe(null, null, done::countDown);
    boolean ended = await(done, mayStall ? Duration.ofMillis(300) : WAIT);
    boolean closed = c.isDisposed();
    String client = String.valueOf(c.channel().localAddress());
    c.disposeNow(WAIT);
    return new Outcome(List.copyOf(got), closed, !ended, client);
  }

  /** Sends HELLO, then {@code message} (fragmented at random points), then a PING. */
  private static Outcome overWebSocket(Random r, byte[] message, boolean text, long nonce) {
    List<Message> got = new CopyOnWriteArrayList<>();
    CountDownLatch done = new CountDownLatch(1);
    List<WebSocketFrame> frames = new ArrayList<>();
    frames.add(new BinaryWebSocketFrame(Unpooled.wrappedBuffer(frame(hello(), 0))));
    List<byte[]> parts = split(r, message);
    for (int k = 0; k < parts.size(); k++) {
      ByteBuf part = Unpooled.wrappedBuffer(parts.get(k));
      boolean last = k == parts.size() - 1;
      frames.add(k == 0
          ? (text ? new TextWebSocketFrame(last, 0, part) : new BinaryWebSocketFrame(last, 0, part))
          : new ContinuationWebSocketFrame(last, 0, part));
    }
    frames.add(new BinaryWebSocketFrame(Unpooled.wrappedBuffer(frame(CODEC.encode(new Message.Ping(nonce)), 0))));
    boolean[] closedByServer = {false};
    reactor.core.Disposable client = HttpClient.create()
        .websocket()
        .uri("ws://127.0.0.1:" + ws.port() + "/entanglement")
        .handle((in, out) -> {
          Mono<Void> inbound = in.receiveFrames()
              .filter(f -> f instanceof BinaryWebSocketFrame)
              .map(f -> {
                ByteBuf content = f.content();
                byte[] body = new byte[content.readableBytes() - Framing.HEADER_BYTES];
                content.getBytes(content.readerIndex() + Framing.HEADER_BYTES, body);
                return body;
              })
              .doOnNext(bytes -> {
                Message m = decode(bytes);
                got.add(m);
                if (m instanceof Message.Pong p && p.nonce() == nonce) {
                  done.countDown();
                }
              })
              .then()
              .doFinally(s -> {
                closedByServer[0] = done.getCount() > 0;
                done.countDown();
              });
          out.sendObject(Flux.fromIterable(frames)).then().subscribe(v -> {}, e -> {});
          return inbound;
        })
        .then()
        .onErrorResume(e -> Mono.empty())
        .subscribe();
    boolean ended = await(done, WAIT);
    client.dispose();
    return new Outcome(List.copyOf(got), closedByServer[0], !ended, "ws");
  }

  private static Message decode(byte[] body) {
    try {
      return CODEC.decode(body);
    } catch (ProtocolException e) {
      throw new AssertionError("the node sent an undecodable frame", e);
    }
  }

  private static boolean await(CountDownLatch latch, Duration d) {
    try {
      return latch.await(d.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  private static long seed() {
    String v = System.getProperty("fuzz.seed", "");
    return v.isBlank() ? DEFAULT_SEED : v.trim().equals("random") ? System.nanoTime() : Long.parseLong(v.trim());
  }

  private static long iterations(long regressionDefault) {
    String v = System.getProperty("fuzz.iterations", "");
    // A campaign's iteration count is sized for the in-JVM levels; connections cost more.
    return v.isBlank() ? regressionDefault : Math.max(regressionDefault, Long.parseLong(v.trim()) / 100);
  }
}
