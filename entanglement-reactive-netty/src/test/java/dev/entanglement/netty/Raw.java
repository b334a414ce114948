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
}
