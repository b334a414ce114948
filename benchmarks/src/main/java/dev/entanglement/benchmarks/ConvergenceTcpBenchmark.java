package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.benchmarks.ConvergenceBenchmark.Config;
import dev.entanglement.benchmarks.ConvergenceBenchmark.Design;
import dev.entanglement.benchmarks.ConvergenceBenchmark.Position;
import dev.entanglement.netty.TcpClientTransport;
import dev.entanglement.netty.TcpServerTransport;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.transport.Link;
import io.netty.buffer.ByteBufUtil;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;
import reactor.netty.tcp.TcpServer;

/**
 * B1 over real TCP: the constrained-link test of {@link ConvergenceBenchmark} (same workload,
 * procedure, measurements and report), with the nodes connected by {@link TcpServerTransport} and
 * {@link TcpClientTransport} over loopback, each side with {@code .bandwidth(bandwidth)}, instead
 * of the in-JVM {@code LocalTransport}. Both ends run in this JVM (one process), connected through
 * the kernel's loopback TCP.
 *
 * <ul>
 *   <li><b>ours</b>: owner node (client transport, limited) → receiver node (server transport,
 *       limited), observed through {@code watchAll} and {@code get};
 *   <li><b>naive</b> (a naive TCP sender): every update is encoded as a SYNC frame with the same
 *       {@link FrameCodec} and appended to an unbounded FIFO ({@link UnboundedFramePublisher}) given
 *       to the {@link Link} that {@link TcpClientTransport#connect()} returns, with the same
 *       bandwidth limit (the transport's own limiter); the receiver is a raw Reactor Netty TCP server
 *       that splits, decodes and keeps every frame.
 * </ul>
 *
 * <p>"Bytes over link" is counted on the wire at the receiving socket (frame headers included,
 * first handler of the pipeline); the floor uses the mean SYNC body, as in the in-JVM benchmark.
 *
 * <p>Run: {@code java -cp benchmarks/target/benchmarks.jar
 * dev.entanglement.benchmarks.ConvergenceTcpBenchmark}; options as for {@link
 * ConvergenceBenchmark} except {@code latency} (must be 0). Smoke run: {@code duration=5}.
 */
public final class ConvergenceTcpBenchmark {
  private ConvergenceTcpBenchmark() {}

  public static void main(String[] args) throws Exception {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    Config c = Config.parse(args);
    if (c.latencyMs != 0) {
      throw new IllegalArgumentException("latency is not simulated over TCP; leave it at 0");
    }
    System.out.println(Measure.header("B1 over TCP: convergence under a constrained link"));
    System.out.printf(
        Locale.ROOT,
        "objects=%d rate=%.0f updates/s duration=%.1f s bandwidth=%d B/s (both TCP transports) window=%.2f s"
            + " sample=%d ms keys=%s; both nodes in this JVM over loopback TCP%n",
        c.objects, c.rate, c.durationS, c.bandwidth, c.windowS, c.sampleMs, c.keys);
    List<ConvergenceBenchmark.Result> results = new ArrayList<>();
    if (!c.design.equals("naive")) {
      results.add(ConvergenceBenchmark.run(c, new TcpOurs(c)));
    }
    if (!c.design.equals("ours")) {
      results.add(ConvergenceBenchmark.run(c, new TcpNaive(c)));
    }
    System.out.println(ConvergenceBenchmark.report(c, results));
    System.out.flush();
    System.exit(0);
  }

  private static Registry registry() {
    return Registry.builder("bench").type(ConvergenceBenchmark.TYPE).build();
  }

  /** Ours: two nodes over bandwidth-limited TCP transports. */
  static final class TcpOurs extends Design {
    private final Payload.ByteCounter wire = new Payload.ByteCounter();
    private final List<Disposable> disposables = new ArrayList<>();
    private final AtomicLong publishErrors = new AtomicLong();
    private EntanglementNode owner;
    private EntanglementNode receiver;
    private DisposableServer server;

    TcpOurs(Config c) {
      super(c);
    }

    @Override
    String name() {
      return "ours";
    }

    @Override
    void start() {
      owner = EntanglementNode.builder().id("owner").registry(registry()).build();
      receiver = EntanglementNode.builder().id("receiver").registry(registry()).build();
      disposables.add(
          receiver
              .watchAll(ConvergenceBenchmark.TYPE)
              .subscribe(
                  s -> {
                    if (!s.deleted()) {
                      received(s.committedAt());
                    }
                  }));
      server =
          TcpServerTransport.builder(receiver)
              .port(0)
              .bandwidth(config.bandwidth)
              .unknownDestination(p -> Mono.just(true))
              .tcpServer(s -> s.doOnConnection(conn -> conn.channel().pipeline().addFirst("wire-bytes", wire)))
              .build()
              .bind()
              .block(Duration.ofSeconds(10));
      Link link =
          TcpClientTransport.builder(owner)
              .remote("127.0.0.1", server.port())
              .expect(PeerId.of("receiver"))
              .bandwidth(config.bandwidth)
              .build()
              .connect()
              .block(Duration.ofSeconds(10));
      disposables.add(owner.attach(link).subscribe());
    }

    @Override
    void publish(Position p) {
      owner.publish(p).subscribe(s -> {}, e -> publishErrors.incrementAndGet());
    }

    @Override
    long heldCommittedAt(int index) {
      Optional<Snapshot<Position>> s = receiver.get(ConvergenceBenchmark.TYPE, ids[index]);
      return s.isPresent() && !s.get().deleted() ? s.get().committedAt() : -1;
    }

    @Override
    long heldSeq(int index) {
      Optional<Snapshot<Position>> s = receiver.get(ConvergenceBenchmark.TYPE, ids[index]);
      return s.isPresent() && !s.get().deleted() ? s.get().value().seq() : -1;
    }

    @Override
    long linkBytes() {
      return wire.bytes.get();
    }

    @Override
    double meanFrameBytes() {
      NodeStats st = owner.stats();
      return st.framesSent() == 0 ? 0 : (double) st.bytesSent() / st.framesSent();
    }

    @Override
    long backlogBytes() {
      return -1;
    }

    @Override
    String details() {
      NodeStats o = owner.stats();
      NodeStats r = receiver.stats();
      return String.format(
          Locale.ROOT,
          "owner: framesSent=%d bytesSent=%d (bodies) statesEncoded=%d updatesOffered=%d"
              + " updatesCoalesced=%d queuedEntries=%d errorsReceived=%d publishErrors=%d%n"
              + "    receiver: framesReceived=%d framesSent=%d errorsReceived=%d; wire bytes in=%d"
              + " (bodies + 8-byte headers)",
          o.framesSent(), o.bytesSent(), o.statesEncoded(), o.updatesOffered(), o.updatesCoalesced(),
          o.queuedEntries(), o.errorsReceived(), publishErrors.get(),
          r.framesReceived(), r.framesSent(), r.errorsReceived(), wire.bytes.get());
    }

    @Override
    void close() {
      disposables.forEach(Disposable::dispose);
      owner.close().block(Duration.ofSeconds(5));
      receiver.close().block(Duration.ofSeconds(5));
      server.disposeNow(Duration.ofSeconds(5));
    }
  }

  /** Naive: an unbounded FIFO of every encoded update over the same limited TCP client link. */
  static final class TcpNaive extends ConvergenceBenchmark.NaiveDesign {
    private final Payload.ByteCounter wire = new Payload.ByteCounter();
    private EntanglementNode unused;
    private DisposableServer server;
    private Link link;
    private Disposable sending;

    TcpNaive(Config c) {
      super(c);
    }

    @Override
    void start() {
      server =
          TcpServer.create()
              .host("127.0.0.1")
              .port(0)
              .doOnConnection(
                  conn -> {
                    conn.channel().pipeline().addFirst("wire-bytes", wire);
                    conn.addHandlerLast("frames", Payload.decoder());
                  })
              .handle((in, out) -> in.receive().doOnNext(b -> onFrame(ByteBufUtil.getBytes(b))).then())
              .bindNow(Duration.ofSeconds(10));
      // The transport needs a node to build; connect() does not attach the link to it.
      unused = EntanglementNode.builder().id("naive-sender").registry(registry()).build();
      link =
          TcpClientTransport.builder(unused)
              .remote("127.0.0.1", server.port())
              .expect(PeerId.of("receiver"))
              .bandwidth(config.bandwidth)
              .build()
              .connect()
              .block(Duration.ofSeconds(10));
      sending = link.send(fifo).subscribe();
    }

    @Override
    long linkBytes() {
      return wire.bytes.get();
    }

    @Override
    String details() {
      return super.details() + "; wire bytes in=" + wire.bytes.get() + " (bodies + 8-byte headers)";
    }

    @Override
    void close() {
      sending.dispose();
      link.dispose();
      server.disposeNow(Duration.ofSeconds(5));
      unused.close().block(Duration.ofSeconds(5));
    }
  }
}
