package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.benchmarks.Payload.Item;
import dev.entanglement.netty.TcpClientTransport;
import dev.entanglement.netty.TcpServerTransport;
import dev.entanglement.netty.TlsConfig;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.transport.Link;
import io.netty.buffer.ByteBufUtil;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.OpenSsl;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.tcp.TcpClient;
import reactor.netty.tcp.TcpServer;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.ObjectReader;
import tools.jackson.databind.json.JsonMapper;

/**
 * B2, end-to-end throughput: how many distinct object states per second an owner node gets to a
 * receiver node over loopback TCP (plain and mutual TLS), against raw Reactor Netty length-prefixed
 * frames carrying the same SYNC bodies in the same run.
 *
 * <p>Two processes: this one sends (owner node, raw client), a child process started from the same
 * jar receives (receiver node, raw server). A round publishes {@code objects} distinct objects
 * (about 100 bytes of CBOR each; the same keys every round, with a new serial) as fast as one thread
 * can, and ends when the receiver has counted all of them: {@code watchAll} emissions for ours,
 * decoded frames for raw. Rate = objects ÷ (arrival of the last at the receiver − first publish),
 * both on {@code System.nanoTime()} (CLOCK_MONOTONIC on Linux, shared by the two processes). Designs
 * and modes alternate round by round, so drift on a noisy machine hits them alike.
 *
 * <ul>
 *   <li><b>ours</b>: one {@code owner.publishAll(type, Flux)} per round, a stream of the round's
 *       values as raw sends one; the receiver node (behind {@link TcpServerTransport}) decodes,
 *       stores, and emits to a counting {@code watchAll} subscriber. The target is this design's;
 *   <li><b>ours-each</b>: the same nodes, but {@code owner.publish(item)} for every object on one
 *       thread, each call with its own {@code Mono}; reported beside it;
 *   <li><b>raw</b>: {@code NettyOutbound.send(Flux<ByteBuf>)} of {@code [len][flags][body]} frames,
 *       each body a SYNC encoded per message by {@link FrameCodec#encodeSync} straight from the
 *       value (as an owner node does); the receiver splits frames with a {@code
 *       LengthFieldBasedFrameDecoder}, copies the body out and decodes it with {@link
 *       FrameCodec#decodeSync}, binding the attributes to the record as they are read (as a
 *       receiving node does).
 * </ul>
 *
 * <p>Run: {@code java -cp benchmarks/target/benchmarks.jar
 * dev.entanglement.benchmarks.ThroughputBenchmark}. Options ({@code name=value}): {@code objects}
 * (100000), {@code warmup} rounds per design and mode (6), {@code rounds} measured (8), {@code
 * modes} (plain,tls), {@code designs} (raw,ours,ours-each), {@code tlsProvider} (openssl|jdk;
 * openssl falls back to jdk when netty-tcnative is missing), {@code gc} between rounds (true),
 * {@code timeout} s per round (60), {@code target} ratio (0.60). Smoke run: {@code objects=10000
 * warmup=2 rounds=2}.
 */
public final class ThroughputBenchmark {
  private static final Duration CALL = Duration.ofSeconds(30);

  private ThroughputBenchmark() {}

  public static void main(String[] args) throws Exception {
    for (String a : args) {
      if (a.equals("role=child")) {
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        ChildProcess.serve(new Receivers()::handle);
        return;
      }
    }
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    Options o =
        Options.parse(
            args, "objects", "warmup", "rounds", "modes", "designs", "tlsProvider", "gc", "timeout",
            "target");
    int objects = o.integer("objects", 100_000);
    int warmup = o.integer("warmup", 6);
    int rounds = o.integer("rounds", 8);
    List<String> modes = o.list("modes", "plain,tls");
    List<String> designs = o.list("designs", "raw,ours,ours-each");
    boolean jdk = o.string("tlsProvider", "openssl").equals("jdk");
    boolean gc = o.bool("gc", true);
    Duration timeout = Duration.ofSeconds(o.integer("timeout", 60));
    double target = o.decimal("target", 0.60);

    System.out.println(Measure.header("B2 throughput"));
    System.out.printf(
        Locale.ROOT,
        "objects=%d warmup=%d rounds=%d modes=%s designs=%s tlsProvider=%s (OpenSSL available: %s) gc=%s%n",
        objects, warmup, rounds, modes, designs, jdk ? "jdk" : "openssl", OpenSsl.isAvailable(), gc);

    // Throw-away PKI; the child reads the server identity from PEM files.
    BenchPki pki = new BenchPki("throughput-ca");
    BenchPki.Identity serverId = pki.issue("receiver");
    BenchPki.Identity clientId = pki.issue("owner");
    Path pem = Files.createTempDirectory("entanglement-bench-pki");
    serverId.writePem(pem, "server");
    TlsConfig clientTls = clientId.tls(jdk);
    if (modes.contains("tls")) {
      System.out.println("TLS provider: " + clientTls.provider());
    }

    try (ChildProcess child = ChildProcess.start(ThroughputBenchmark.class, List.of(), List.of())) {
      System.out.println("receiver process pid " + child.pid() + ", sender pid " + ProcessHandle.current().pid());
      String ports =
          child.call(
              "START modes=" + String.join(",", modes) + " designs=" + String.join(",", designs)
                  + " pem=" + pem + " jdk=" + jdk,
              CALL);
      Map<String, Integer> portOf = new LinkedHashMap<>();
      for (String w : ports.split(" ")) {
        int eq = w.indexOf('=');
        if (eq > 0) {
          portOf.put(w.substring(0, eq), Integer.parseInt(w.substring(eq + 1)));
        }
      }

      String[] ids = Payload.ids(objects, 42);
      String[] labels = Payload.labels(objects);
      List<Sender> senders = new ArrayList<>();
      for (String mode : modes) {
        boolean tls = mode.equals("tls");
        for (String design : designs) {
          String name = design + "-" + mode;
          int port = portOf.get(name);
          Sender s =
              design.startsWith("ours")
                  ? new OursSender(name, design.equals("ours"), port, tls ? clientTls : null,
                      tls ? serverId.fingerprint() : null, ids, labels)
                  : new RawSender(name, port, tls ? rawClientContext(clientId, jdk) : null, ids, labels);
          senders.add(s);
        }
      }

      long[] expected = new long[senders.size()];
      int total = warmup + rounds;
      for (int r = 0; r < total; r++) {
        boolean measured = r >= warmup;
        // Alternate the order every round so that neither design always runs first.
        List<Integer> order = new ArrayList<>();
        for (int i = 0; i < senders.size(); i++) {
          order.add(r % 2 == 0 ? i : senders.size() - 1 - i);
        }
        StringBuilder line = new StringBuilder(String.format(Locale.ROOT, "%s %2d:", measured ? "round " : "warmup", measured ? r - warmup + 1 : r + 1));
        for (int i : order) {
          Sender s = senders.get(i);
          if (gc) {
            child.call("GC", CALL);
            System.gc();
          }
          expected[i] += objects;
          child.call("ARM design=" + s.name + " target=" + expected[i], CALL);
          long cpu0 = Measure.processCpuNanos();
          Map<String, Long> threads0 = Measure.osThreadCpu();
          long t0 = System.nanoTime();
          s.round(r + 1);
          String done = child.call("WAIT design=" + s.name + " timeout=" + timeout.toSeconds(), timeout.plusSeconds(10));
          long cpu1 = Measure.processCpuNanos();
          Map<String, Long> threads1 = Measure.osThreadCpu();
          long now = System.nanoTime();
          if (!done.startsWith("DONE")) {
            throw new IllegalStateException(s.name + " round " + (r + 1) + ": " + done + " (" + s.details() + ")");
          }
          String[] answer = done.split(" ");
          long last = Long.parseLong(ChildProcess.word(answer, "last", "0"));
          long childCpu = Long.parseLong(ChildProcess.word(answer, "cpu", "0"));
          if (last < t0 || last > now) {
            throw new IllegalStateException("clocks of the two processes disagree: " + done);
          }
          double seconds = (last - t0) / 1e9;
          double rate = objects / seconds;
          line.append(String.format(Locale.ROOT, "  %s %,.0f/s", s.name, rate));
          if (measured) {
            s.rates.add(rate);
            s.senderCpuUs.add((cpu1 - cpu0) / 1e3 / objects);
            s.receiverCpuUs.add(childCpu / 1e3 / objects);
            Measure.minus(threads1, threads0).forEach((k, v) -> s.senderThreads.merge(k, v, Long::sum));
            decodeThreads(ChildProcess.word(answer, "threads", ""))
                .forEach((k, v) -> s.receiverThreads.merge(k, v, Long::sum));
          }
        }
        System.out.println(line);
      }

      // Report.
      System.out.println();
      System.out.println("=".repeat(100));
      System.out.printf(
          Locale.ROOT,
          "%-16s %14s %14s %14s %12s %12s %10s%n",
          "design", "median /s", "min /s", "max /s", "CPU µs snd", "CPU µs rcv", "frame B");
      for (Sender s : senders) {
        double[] r = s.rates.stream().mapToDouble(Double::doubleValue).toArray();
        double min = java.util.Arrays.stream(r).min().orElse(0);
        double max = java.util.Arrays.stream(r).max().orElse(0);
        System.out.printf(
            Locale.ROOT,
            "%-16s %14s %14s %14s %12.2f %12.2f %10.1f%n",
            s.name,
            Measure.fmt(Measure.median(r), 0),
            Measure.fmt(min, 0),
            Measure.fmt(max, 0),
            Measure.median(s.senderCpuUs.stream().mapToDouble(Double::doubleValue).toArray()),
            Measure.median(s.receiverCpuUs.stream().mapToDouble(Double::doubleValue).toArray()),
            s.meanFrameBytes());
      }
      System.out.println();
      System.out.println("CPU µs per state by thread, over the measured rounds (kernel counts, 10 ms resolution):");
      for (Sender s : senders) {
        long states = (long) s.rates.size() * objects;
        System.out.println("  " + s.name + " sender:   " + Measure.perOperation(s.senderThreads, states, 8));
        System.out.println("  " + s.name + " receiver: " + Measure.perOperation(s.receiverThreads, states, 8));
      }
      System.out.println();
      for (Sender s : senders) {
        System.out.println("  " + s.name + ": " + s.details());
        System.out.println("  " + s.name + " receiver: " + child.call("STATS design=" + s.name, CALL));
      }
      System.out.println();
      System.out.println("targets:");
      for (String mode : modes) {
        Sender raw = find(senders, "raw-" + mode);
        for (String design : List.of("ours", "ours-each")) {
          Sender ours = find(senders, design + "-" + mode);
          if (ours == null || raw == null) {
            continue;
          }
          double ratio =
              Measure.median(ours.rates.stream().mapToDouble(Double::doubleValue).toArray())
                  / Measure.median(raw.rates.stream().mapToDouble(Double::doubleValue).toArray());
          double[] paired = new double[ours.rates.size()];
          for (int i = 0; i < paired.length; i++) {
            paired[i] = ours.rates.get(i) / raw.rates.get(i);
          }
          // The target is the stream's, as raw sends one stream a round; a publish per object is
          // reported beside it.
          String verdict = design.equals("ours") ? (ratio >= target ? "PASS" : "FAIL") : "info";
          System.out.printf(
              Locale.ROOT,
              "  [%s] %s: %s ≥ %.0f %% of raw (ratio of medians %.2f; median of per-round ratios %.2f, range %.2f–%.2f)%n",
              verdict,
              mode,
              design,
              target * 100,
              ratio,
              Measure.median(paired),
              java.util.Arrays.stream(paired).min().orElse(0),
              java.util.Arrays.stream(paired).max().orElse(0));
        }
      }
      for (Sender s : senders) {
        s.close();
      }
    }
    System.out.flush();
    System.exit(0);
  }

  /** Thread groups as one word of a child's answer: {@code name:ns,name:ns}. */
  static String encodeThreads(Map<String, Long> cpu) {
    StringBuilder sb = new StringBuilder();
    cpu.forEach((k, v) -> sb.append(sb.length() == 0 ? "" : ",").append(k).append(':').append(v));
    return sb.toString();
  }

  static Map<String, Long> decodeThreads(String word) {
    Map<String, Long> m = new java.util.TreeMap<>();
    for (String e : word.split(",")) {
      int colon = e.lastIndexOf(':');
      if (colon > 0) {
        m.put(e.substring(0, colon), Long.parseLong(e.substring(colon + 1)));
      }
    }
    return m;
  }

  private static Sender find(List<Sender> senders, String name) {
    return senders.stream().filter(s -> s.name.equals(name)).findFirst().orElse(null);
  }

  static SslContext rawClientContext(BenchPki.Identity id, boolean jdk) throws Exception {
    return SslContextBuilder.forClient()
        .keyManager(id.key(), id.certificate())
        .trustManager(id.ca())
        .protocols("TLSv1.3", "TLSv1.2")
        .sslProvider(jdk || !OpenSsl.isAvailable() ? SslProvider.JDK : SslProvider.OPENSSL)
        .endpointIdentificationAlgorithm(null)
        .build();
  }

  static SslContext rawServerContext(Path pem, boolean jdk) throws Exception {
    return SslContextBuilder.forServer(pem.resolve("server.crt").toFile(), pem.resolve("server.key").toFile())
        .trustManager(pem.resolve("ca.crt").toFile())
        .clientAuth(ClientAuth.REQUIRE)
        .protocols("TLSv1.3", "TLSv1.2")
        .sslProvider(jdk || !OpenSsl.isAvailable() ? SslProvider.JDK : SslProvider.OPENSSL)
        .build();
  }

  // ------------------------------------------------------------------ senders (this process)

  abstract static class Sender {
    final String name;
    final String[] ids;
    final String[] labels;
    final List<Double> rates = new ArrayList<>();
    final List<Double> senderCpuUs = new ArrayList<>();
    final List<Double> receiverCpuUs = new ArrayList<>();
    /** CPU per thread group over the measured rounds, in ns: this process, and the receiver's. */
    final Map<String, Long> senderThreads = new java.util.TreeMap<>();
    final Map<String, Long> receiverThreads = new java.util.TreeMap<>();

    Sender(String name, String[] ids, String[] labels) {
      this.name = name;
      this.ids = ids;
      this.labels = labels;
    }

    /** Starts sending every object once with serial {@code serial}; may return before they left. */
    abstract void round(long serial);

    abstract double meanFrameBytes();

    abstract String details();

    abstract void close();
  }

  /** Ours: an owner node dialing the receiver node. */
  static final class OursSender extends Sender {
    private final EntanglementNode owner;
    /** A round is one {@code publishAll}; else a {@code publish} per object. */
    private final boolean stream;
    private final AtomicLong publishErrors = new AtomicLong();

    OursSender(String name, boolean stream, int port, TlsConfig tls, PeerId serverPeer, String[] ids,
        String[] labels) {
      super(name, ids, labels);
      this.stream = stream;
      owner = EntanglementNode.builder().id("owner-" + name).registry(Payload.registry()).build();
      PeerId expect = serverPeer != null ? serverPeer : PeerId.of("receiver-" + name);
      TcpClientTransport.Builder b =
          TcpClientTransport.builder(owner).remote("127.0.0.1", port).expect(expect);
      if (tls != null) {
        b.tls(tls);
      }
      Link link = b.build().connect().block(Duration.ofSeconds(10));
      owner.attach(link).subscribe();
      long deadline = System.nanoTime() + 10_000_000_000L;
      while (!owner.isConnected(expect) && System.nanoTime() < deadline) {
        Measure.sleepMillis(5);
      }
      if (!owner.isConnected(expect)) {
        throw new IllegalStateException(name + ": not connected");
      }
    }

    @Override
    void round(long serial) {
      if (stream) {
        owner.publishAll(Payload.ITEM,
                Flux.range(0, ids.length).map(i -> Payload.item(ids[i], serial, i, labels[i])))
            .subscribe(null, e -> publishErrors.incrementAndGet());
        return;
      }
      for (int i = 0; i < ids.length; i++) {
        owner.publish(Payload.ITEM, Payload.item(ids[i], serial, i, labels[i]))
            .subscribe(s -> {}, e -> publishErrors.incrementAndGet());
      }
    }

    @Override
    double meanFrameBytes() {
      NodeStats s = owner.stats();
      return (double) s.bytesSent() / Math.max(1, s.framesSent()) + Payload.HEADER_BYTES;
    }

    @Override
    String details() {
      NodeStats s = owner.stats();
      return String.format(
          Locale.ROOT,
          "owner framesSent=%d bytesSent=%d statesEncoded=%d updatesOffered=%d updatesCoalesced=%d queued=%d publishErrors=%d",
          s.framesSent(), s.bytesSent(), s.statesEncoded(), s.updatesOffered(), s.updatesCoalesced(),
          s.queuedEntries(), publishErrors.get());
    }

    @Override
    void close() {
      owner.close().block(Duration.ofSeconds(5));
    }
  }

  /** Raw: NettyOutbound.send(Flux<ByteBuf>) of length-prefixed SYNC frames. */
  static final class RawSender extends Sender {
    private final Connection connection;
    private final FrameCodec codec = new FrameCodec();
    private final JsonMapper json = JsonMapper.builder().build();
    private final String owner = OwnerId.random().value();
    private final long epoch = System.currentTimeMillis();
    private final AtomicLong frames = new AtomicLong();
    private final AtomicLong bytes = new AtomicLong();
    private final AtomicLong errors = new AtomicLong();

    RawSender(String name, int port, SslContext ssl, String[] ids, String[] labels) {
      super(name, ids, labels);
      TcpClient c = TcpClient.create().host("127.0.0.1").port(port);
      if (ssl != null) {
        c = c.secure(spec -> spec.sslContext(ssl));
      }
      connection = c.connectNow(Duration.ofSeconds(10));
    }

    @Override
    void round(long serial) {
      var alloc = connection.channel().alloc();
      connection
          .outbound()
          .send(
              Flux.range(0, ids.length)
                  .map(
                      i -> {
                        byte[] body =
                            Payload.syncBody(codec, json, Payload.item(ids[i], serial, i, labels[i]), owner, epoch, serial);
                        frames.incrementAndGet();
                        bytes.addAndGet(body.length + Payload.HEADER_BYTES);
                        return Payload.frame(alloc, body);
                      }))
          .then()
          .subscribe(v -> {}, e -> errors.incrementAndGet());
    }

    @Override
    double meanFrameBytes() {
      return (double) bytes.get() / Math.max(1, frames.get());
    }

    @Override
    String details() {
      return "raw frames=" + frames.get() + " bytes=" + bytes.get() + " sendErrors=" + errors.get();
    }

    @Override
    void close() {
      connection.dispose();
    }
  }

  // ------------------------------------------------------------------ receivers (child process)

  /** Counts arrivals of one design; completes when a target count is reached. */
  static final class Counter {
    final AtomicLong count = new AtomicLong();
    volatile long target = Long.MAX_VALUE;
    volatile long reachedNanos;
    volatile CompletableFuture<Void> reached = new CompletableFuture<>();
    long cpuAtArm;
    Map<String, Long> threadsAtArm = Map.of();

    void hit() {
      if (count.incrementAndGet() == target) {
        reachedNanos = System.nanoTime();
        reached.complete(null);
      }
    }
  }

  static final class Receivers {
    private final Map<String, Counter> counters = new LinkedHashMap<>();
    private final Map<String, EntanglementNode> nodes = new LinkedHashMap<>();
    private final List<DisposableServer> servers = new ArrayList<>();
    private final AtomicLong decodeErrors = new AtomicLong();
    private volatile Object sink;

    String handle(String[] w) {
      try {
        return switch (w[0]) {
          case "START" -> start(
              List.of(ChildProcess.word(w, "modes", "plain").split(",")),
              List.of(ChildProcess.word(w, "designs", "raw,ours").split(",")),
              Path.of(ChildProcess.word(w, "pem", ".")),
              Boolean.parseBoolean(ChildProcess.word(w, "jdk", "false")));
          case "GC" -> {
            System.gc();
            yield "OK";
          }
          case "ARM" -> {
            Counter c = counters.get(ChildProcess.word(w, "design", ""));
            c.reached = new CompletableFuture<>();
            c.target = Long.parseLong(ChildProcess.word(w, "target", "0"));
            c.cpuAtArm = Measure.processCpuNanos();
            c.threadsAtArm = Measure.osThreadCpu();
            if (c.count.get() >= c.target) {
              yield "ERROR count " + c.count.get() + " already at or past target " + c.target;
            }
            yield "ARMED";
          }
          case "WAIT" -> {
            Counter c = counters.get(ChildProcess.word(w, "design", ""));
            long timeout = Long.parseLong(ChildProcess.word(w, "timeout", "60"));
            try {
              c.reached.get(timeout, TimeUnit.SECONDS);
            } catch (java.util.concurrent.TimeoutException e) {
              yield "TIMEOUT count=" + c.count.get() + " target=" + c.target;
            }
            long cpu = Measure.processCpuNanos() - c.cpuAtArm;
            yield "DONE count=" + c.count.get() + " last=" + c.reachedNanos + " cpu=" + cpu
                + " threads=" + encodeThreads(Measure.minus(Measure.osThreadCpu(), c.threadsAtArm));
          }
          case "STATS" -> {
            String d = ChildProcess.word(w, "design", "");
            EntanglementNode n = nodes.get(d);
            if (n == null) {
              yield "counted=" + counters.get(d).count.get() + " rawDecodeErrors=" + decodeErrors.get();
            }
            NodeStats s = n.stats();
            yield String.format(
                Locale.ROOT,
                "framesReceived=%d watchAllEmissions=%d errorsReceived=%d",
                s.framesReceived(), counters.get(d).count.get(), s.errorsReceived());
          }
          default -> "ERROR unknown command " + w[0];
        };
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }

    private String start(List<String> modes, List<String> designs, Path pem, boolean jdk) throws Exception {
      StringBuilder ports = new StringBuilder("PORTS");
      for (String mode : modes) {
        boolean tls = mode.equals("tls");
        for (String design : designs) {
          String name = design + "-" + mode;
          Counter counter = new Counter();
          counters.put(name, counter);
          DisposableServer server;
          if (design.startsWith("ours")) {
            EntanglementNode node =
                EntanglementNode.builder().id("receiver-" + name).registry(Payload.registry()).build();
            nodes.put(name, node);
            node.watchAll(Payload.ITEM).subscribe(s -> counter.hit());
            TcpServerTransport.Builder b =
                TcpServerTransport.builder(node).port(0).unknownDestination(p -> Mono.just(true));
            if (tls) {
              b.tls(BenchPki.readTls(pem, "server", jdk));
            }
            server = b.build().bind().block(Duration.ofSeconds(10));
          } else {
            FrameCodec codec = new FrameCodec();
            // Binds each SYNC's attributes as it is read, as a receiving node does.
            ObjectReader items = JsonMapper.builder().build().readerFor(Item.class)
                .without(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
            FrameCodec.AttributeBinder binder = (type, key, owner) -> items;
            TcpServer s = TcpServer.create().host("127.0.0.1").port(0);
            if (tls) {
              SslContext ctx = rawServerContext(pem, jdk);
              s = s.secure(spec -> spec.sslContext(ctx));
            }
            server =
                s.doOnConnection(c -> c.addHandlerLast("frames", Payload.decoder()))
                    .handle(
                        (in, out) ->
                            in.receive()
                                .doOnNext(
                                    buf -> {
                                      try {
                                        byte[] body = ByteBufUtil.getBytes(buf);
                                        Object item = codec.decodeSync(body, binder).value();
                                        if (item == null) {
                                          throw new IllegalStateException("not bound");
                                        }
                                        sink = item;
                                        counter.hit();
                                      } catch (RuntimeException e) {
                                        decodeErrors.incrementAndGet();
                                      }
                                    })
                                .then())
                    .bindNow(Duration.ofSeconds(10));
          }
          servers.add(server);
          ports.append(' ').append(name).append('=').append(server.port());
        }
      }
      return ports.toString();
    }
  }
}
