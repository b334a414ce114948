package dev.entanglement.netty;

import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.jspecify.annotations.Nullable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.NettyInbound;
import reactor.netty.http.client.HttpClient;
import reactor.netty.tcp.TcpClient;

/** Raw peers for transport tests: they speak frames by hand and record the answers. */
final class Raw {
  static final FrameCodec CODEC = new FrameCodec();
  static final Duration WAIT = Duration.ofSeconds(15);

  private Raw() {}

  /** The bodies {@link FrameDecoder} splits from {@code in}, without its markers. */
  static Flux<byte[]> bodies(NettyInbound in) {
    return in.receiveObject().ofType(ByteBuf.class).map(ByteBufUtil::getBytes);
  }

  static byte[] hello(String node) {
    return CODEC.encode(new Message.Hello(FrameCodec.PROTOCOL_VERSION, node, List.of(), 0));
  }

  /** Over TCP (TLS if {@code tls} is given): HELLO, then {@code frame}; answers until close. */
  static List<Message> tcp(int port, @Nullable TlsConfig tls, byte[] frame) {
    TcpClient client = TcpClient.create().host("localhost").port(port);
    if (tls != null) {
      client = client.secure(spec -> spec.sslContext(tls.clientContext()));
    }
    List<Message> got = new CopyOnWriteArrayList<>();
    // The decoder and the reader are in place before the first byte can arrive.
    Connection c =
        client
            .doOnConnected(x -> x.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(1 << 20)))
            .handle(
                (in, out) -> {
                  bodies(in).subscribe(b -> got.add(CODEC.decode(b)), e -> {});
                  return out.send(
                          Flux.just(hello("raw"), frame)
                              .map(b -> Framing.encode(out.alloc(), b)))
                      .then(Mono.never());
                })
            .connect()
            .block(WAIT);
    c.onDispose().block(WAIT);
    return got;
  }

  /** Over WebSocket: HELLO, then {@code frame}, one binary message each; answers until close. */
  static List<Message> webSocket(HttpClient client, String uri, byte[] frame) {
    List<Message> got = new CopyOnWriteArrayList<>();
    client
        .websocket()
        .uri(uri)
        .handle(
            (in, out) -> {
              Mono<Void> inboundDone =
                  in.receiveFrames()
                      .filter(f -> f instanceof BinaryWebSocketFrame)
                      .map(f -> {
                        var content = f.content();
                        byte[] body = new byte[content.readableBytes() - Framing.HEADER_BYTES];
                        content.getBytes(content.readerIndex() + Framing.HEADER_BYTES, body);
                        return body;
                      })
                      .doOnNext(b -> got.add(CODEC.decode(b)))
                      .then();
              out.sendObject(
                      Flux.just(hello("raw"), frame)
                          .map(b -> new BinaryWebSocketFrame(Framing.encode(Unpooled.buffer().alloc(), b))))
                  .then()
                  .subscribe(v -> {}, e -> {});
              return inboundDone;
            })
        .then()
        .onErrorResume(e -> Mono.empty())
        .block(WAIT);
    return got;
  }

  /**
   * Over WebSocket: HELLO and PINGs numbered 1 to {@code pings}, one binary message each, sent at
   * once; returns the nonces of the PONGs read, in order, once all came back or none came for 5 s.
   */
  static List<Long> pingPong(String uri, int pings) {
    List<Long> nonces = new CopyOnWriteArrayList<>();
    HttpClient.create()
        .websocket()
        .uri(uri)
        .handle(
            (in, out) -> {
              Mono<Void> pongs =
                  in.receiveFrames()
                      .filter(f -> f instanceof BinaryWebSocketFrame)
                      .map(f -> CODEC.decode(ByteBufUtil.getBytes(f.content(),
                          f.content().readerIndex() + Framing.HEADER_BYTES,
                          f.content().readableBytes() - Framing.HEADER_BYTES)))
                      .ofType(Message.Pong.class)
                      .doOnNext(p -> nonces.add(p.nonce()))
                      .take(pings)
                      .timeout(Duration.ofSeconds(5))
                      .onErrorResume(java.util.concurrent.TimeoutException.class, e -> Mono.empty())
                      .then();
              out.sendObject(
                      Flux.concat(Flux.just(hello("raw")),
                              Flux.range(1, pings).map(i -> CODEC.encode(new Message.Ping(i))))
                          .map(b -> new BinaryWebSocketFrame(Framing.encode(Unpooled.buffer().alloc(), b))))
                  .then()
                  .subscribe(v -> {}, e -> {});
              return pongs;
            })
        .then()
        .onErrorResume(e -> Mono.empty())
        .block(Duration.ofSeconds(60));
    return nonces;
  }

  /**
   * Over WebSocket: HELLO (so that the handshake timeout does not end the connection), then
   * {@code pings} PINGs of 125 bytes while reading nothing; then reads until no PONG came for a
   * second. Returns the PONGs read: every one the node kept for it.
   */
  static int pingFlood(String uri, int pings) {
    java.util.concurrent.atomic.AtomicInteger pongs = new java.util.concurrent.atomic.AtomicInteger();
    HttpClient.create()
        .websocket(reactor.netty.http.client.WebsocketClientSpec.builder().handlePing(true).build())
        .uri(uri)
        .handle((in, out) -> {
          io.netty.channel.Channel[] ch = new io.netty.channel.Channel[1];
          in.withConnection(c -> ch[0] = c.channel());
          ch[0].config().setAutoRead(false);
          io.netty.handler.codec.http.websocketx.WebSocketFrame hello =
              new BinaryWebSocketFrame(Framing.encode(Unpooled.buffer().alloc(), hello("raw")));
          return out.sendObject(Flux.<io.netty.handler.codec.http.websocketx.WebSocketFrame>just(hello)
                  .concatWith(Flux.range(0, pings)
                      .map(i -> new io.netty.handler.codec.http.websocketx.PingWebSocketFrame(
                          Unpooled.wrappedBuffer(new byte[125])))))
              .then()
              .then(Mono.fromRunnable(() -> ch[0].config().setAutoRead(true)))
              .thenMany(in.receiveFrames()
                  .filter(f -> f instanceof io.netty.handler.codec.http.websocketx.PongWebSocketFrame)
                  .doOnNext(f -> pongs.incrementAndGet())
                  .timeout(Duration.ofSeconds(1))
                  .onErrorResume(java.util.concurrent.TimeoutException.class, e -> Mono.empty()));
        })
        .then()
        .onErrorResume(e -> Mono.empty())
        .block(Duration.ofSeconds(60));
    return pongs.get();
  }

  /**
   * A WebSocket peer on a plain blocking socket, for tests that need a peer that stops reading:
   * nothing reads its socket but {@link #receive()} (a Reactor Netty client reads on while its
   * inbound queue is short, whatever its channel's auto-read). Frames go out as whole binary
   * messages; for the test's thread only.
   */
  static final class BlockingWebSocket implements AutoCloseable {
    private final java.net.Socket socket = new java.net.Socket();
    private final java.io.DataInputStream in;
    private final java.io.OutputStream out;

    /** Upgrades {@code path} on 127.0.0.1:{@code port}, with a receive buffer of {@code receiveBuffer} bytes. */
    BlockingWebSocket(int port, String path, int receiveBuffer) throws java.io.IOException {
      socket.setReceiveBufferSize(receiveBuffer); // before connecting, so the window is small from the start
      socket.connect(new java.net.InetSocketAddress("127.0.0.1", port), (int) WAIT.toMillis());
      socket.setSoTimeout((int) WAIT.toMillis());
      in = new java.io.DataInputStream(new java.io.BufferedInputStream(socket.getInputStream()));
      out = socket.getOutputStream();
      out.write(("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\nUpgrade: websocket\r\n"
              + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              + "Sec-WebSocket-Version: 13\r\n\r\n")
          .getBytes(java.nio.charset.StandardCharsets.US_ASCII));
      String status = line();
      if (!status.startsWith("HTTP/1.1 101")) {
        throw new java.io.IOException("not upgraded: " + status);
      }
      while (!line().isEmpty()) {
        // the response's headers
      }
    }

    /** The status of the server's close frame, once {@link #receive} met it; -1 before. */
    int closeStatus = -1;

    /** Sends {@code body} as one frame in one binary message (masked with a zero key, as a client must). */
    void send(byte[] body) throws java.io.IOException {
      sendMessage(0x2, Framing.withHeader(body));
    }

    /** Sends {@code payload} as one final WebSocket message of {@code opcode}, masked with a zero key. */
    void sendMessage(int opcode, byte[] payload) throws java.io.IOException {
      java.io.ByteArrayOutputStream frame = new java.io.ByteArrayOutputStream();
      frame.write(0x80 | opcode); // FIN
      if (payload.length < 126) {
        frame.write(0x80 | payload.length);
      } else if (payload.length < 65536) {
        frame.write(0x80 | 126);
        frame.write(payload.length >>> 8);
        frame.write(payload.length & 0xff);
      } else {
        frame.write(0x80 | 127);
        frame.writeBytes(java.nio.ByteBuffer.allocate(8).putLong(payload.length).array());
      }
      frame.writeBytes(new byte[4]);
      frame.writeBytes(payload);
      out.write(frame.toByteArray());
      out.flush();
    }

    /** The next frame the server sent, skipping WebSocket control messages; fails at a close or after {@link #WAIT}. */
    Message receive() throws java.io.IOException {
      while (true) {
        int first = in.readUnsignedByte();
        int second = in.readUnsignedByte();
        long length = second & 0x7f;
        if (length == 126) {
          length = in.readUnsignedShort();
        } else if (length == 127) {
          length = in.readLong();
        }
        byte[] payload = new byte[Math.toIntExact(length)];
        in.readFully(payload);
        int opcode = first & 0x0f;
        if (opcode == 0x8) {
          closeStatus = payload.length >= 2 ? (payload[0] & 0xff) << 8 | payload[1] & 0xff : 1005;
          throw new java.io.EOFException("closed by the server");
        }
        if (opcode == 0x2) {
          return CODEC.decode(java.util.Arrays.copyOfRange(payload, Framing.HEADER_BYTES, payload.length));
        }
      }
    }

    /** The frames the server sent up to its close frame, whose status is then {@link #closeStatus}. */
    List<Message> receiveUntilClose() throws java.io.IOException {
      List<Message> got = new java.util.ArrayList<>();
      while (true) {
        try {
          got.add(receive());
        } catch (java.io.EOFException e) {
          if (closeStatus < 0) {
            throw e;
          }
          return got;
        }
      }
    }

    /** Whether the server ended the stream after what was read: true at end of stream, false at more bytes. */
    boolean endOfStream() throws java.io.IOException {
      return in.read() < 0;
    }

    private String line() throws java.io.IOException {
      StringBuilder b = new StringBuilder();
      for (int c = in.read(); c != '\n'; c = in.read()) {
        if (c < 0) {
          throw new java.io.EOFException("closed during the upgrade");
        }
        if (c != '\r') {
          b.append((char) c);
        }
      }
      return b.toString();
    }

    @Override
    public void close() throws java.io.IOException {
      socket.close();
    }
  }
}
