package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.netty.WebSocketServerTransport;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.EventLoop;
import io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.http.client.HttpClient;
import reactor.netty.http.client.WebsocketClientSpec;
import reactor.netty.http.server.HttpServer;
import reactor.netty.resources.ConnectionProvider;
import tools.jackson.databind.json.JsonMapper;

/**
 * B3, fan-out: one server node serves {@code clients} WebSocket subscribers, all receiving the same
 * {@code objects} objects updated at {@code rate} updates per second in total (round robin).
 *
 * <p>Two processes: this one is the server (its CPU time and heap are what is measured); a child
 * process started from the same jar runs the subscribers as lightweight raw WebSocket clients that
 * speak the protocol (docs/PROTOCOL.md): each sends HELLO first, answers PING with PONG, and counts
 * the SYNC frames it receives without decoding them. Reported for the server:
 *
 * <ul>
 *   <li><b>heap per idle connection</b>: used heap after full GCs with the subscribers connected
 *       and idle, minus before they connected, ÷ clients — with an empty store; and, separately, the
 *       extra heap per connection once every subscriber holds the objects (the server's per-peer
 *       record of what each holds), measured against the heap after the subscribers disconnected;
 *   <li><b>CPU per delivered update</b>: process CPU time over the measured window ÷ SYNC frames the
 *       subscribers counted in it;
 *   <li><b>delivery rate</b>: frames per second delivered in total and per subscriber, against
 *       what was offered (updates × subscribers); latest-state delivery may coalesce;
 *   <li><b>encodings per version</b>: server {@code statesEncoded} ÷ versions committed in the
 *       window (≤ 1 means each version is encoded once at most, not once per subscriber); ours'
 *       count is read on the engine after it ran every publish of the window ({@code
 *       statsConsistent}), so a backlog at either end of the window does not move it.
 * </ul>
 *
 * <p>Baseline in the same run (<b>raw</b>): a Reactor Netty WebSocket server with the same
 * subscribers; each update is encoded once with {@link FrameCodec} and written to every subscriber
 * whose channel is writable (otherwise dropped), one task per event loop per update, one flush per
 * channel per update. Options ({@code name=value}): {@code clients} (1000), {@code objects}
 * (1000), {@code rate} (1000), {@code duration} s (30), {@code warmup} s (10), {@code designs}
 * (ours,raw), {@code heapTarget} KB (20), {@code histogram} (true: print the classes behind the heap figures). Smoke run: {@code clients=100 duration=5 warmup=2}.
 */
public final class FanOutBenchmark {
  private static final Duration CALL = Duration.ofSeconds(120);
  private static final String PATH = "/entanglement";

  private FanOutBenchmark() {}

  public static void main(String[] args) throws Exception {
    for (String a : args) {
      if (a.equals("role=child")) {
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        ChildProcess.serve(new Subscribers()::handle);
        return;
      }
    }
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    Options o =
        Options.parse(
            args, "clients", "objects", "rate", "duration", "warmup", "designs", "heapTarget", "histogram");
    Config c = new Config();
    c.clients = o.integer("clients", 1000);
    c.objects = o.integer("objects", 1000);
    c.rate = o.decimal("rate", 1000);
    c.durationS = o.decimal("duration", 30);
    c.warmupS = o.decimal("warmup", 10);
    c.histogram = o.bool("histogram", true);
    List<String> designs = o.list("designs", "ours,raw");
    double heapTargetKb = o.decimal("heapTarget", 20);

    System.out.println(Measure.header("B3 fan-out"));
    System.out.printf(
        Locale.ROOT,
        "clients=%d objects=%d rate=%.0f updates/s duration=%.0f s warmup=%.0f s designs=%s%n",
        c.clients, c.objects, c.rate, c.durationS, c.warmupS, designs);

    List<Result> results = new ArrayList<>();
    try (ChildProcess child = ChildProcess.start(FanOutBenchmark.class, List.of(), List.of())) {
      System.out.println("server pid " + ProcessHandle.current().pid() + ", subscribers pid " + child.pid());
      for (String d : designs) {
        Server s = d.equals("ours") ? new OursServer(c) : new RawServer(c);
        results.add(run(c, s, child));
      }
    }
    report(c, results, heapTargetKb);
    System.out.flush();
    System.exit(0);
  }

  static final class Config {
    int clients;
    int objects;
    double rate;
    double durationS;
    double warmupS;
    boolean histogram;
  }

  record Result(
      String name,
      double heapPerConnEmpty,
      double heapPerConnHolding,
      long heapObjectsOnly,
      long heapBase,
      double connectS,
      double initialSyncS,
      long published,
      long delivered,
      long minPerClient,
      long maxPerClient,
      double cpuNanos,
      double seconds,
      long encoded,
      long gcMillis,
      String threads,
      String details) {}

  // ------------------------------------------------------------------ one design

  static Result run(Config c, Server s, ChildProcess child) {
    System.out.printf(Locale.ROOT, "%n[%s] starting the server...%n", s.name());
    int port = s.start();
    long heap0 = Measure.usedHeapAfterGc(3);
    Map<String, Long> histo0 = c.histogram ? Measure.classHistogram() : Map.of();

    long t0 = System.nanoTime();
    String conn =
        child.call("CONNECT port=" + port + " path=" + PATH + " n=" + c.clients, CALL);
    System.out.printf(Locale.ROOT, "[%s] %s%n", s.name(), conn);
    long deadline = System.nanoTime() + 60_000_000_000L;
    while (s.helloCount() < c.clients && System.nanoTime() < deadline) {
      Measure.sleepMillis(10);
    }
    double connectS = (System.nanoTime() - t0) / 1e9;
    Measure.sleepMillis(1000);
    long heap1 = Measure.usedHeapAfterGc(3);
    if (c.histogram) {
      System.out.printf(
          Locale.ROOT,
          "[%s] live heap growth per idle connection, top classes (class histogram after full GC):%n%s",
          s.name(), Measure.histogramDelta(histo0, Measure.classHistogram(), c.clients, 15));
    }
    System.out.printf(
        Locale.ROOT,
        "[%s] %d connections idle (server saw %d HELLO) after %.1f s; heap %,d → %,d B%n",
        s.name(), c.clients, s.helloCount(), connectS, heap0, heap1);

    // Initial state: every object once, delivered to every subscriber.
    String[] ids = Payload.ids(c.objects, 7);
    String[] labels = Payload.labels(c.objects);
    long[] serial = new long[c.objects];
    long t1 = System.nanoTime();
    for (int i = 0; i < c.objects; i++) {
      s.publish(Payload.item(ids[i], ++serial[i], i, labels[i]));
    }
    long want = (long) c.objects * c.clients;
    deadline = System.nanoTime() + 60_000_000_000L;
    long total = 0;
    while (System.nanoTime() < deadline) {
      total = Long.parseLong(ChildProcess.word(child.call("COUNTS", CALL).split(" "), "total", "0"));
      if (total >= want) {
        break;
      }
      Measure.sleepMillis(100);
    }
    double initialS = (System.nanoTime() - t1) / 1e9;
    System.out.printf(
        Locale.ROOT, "[%s] initial %d objects: %,d of %,d frames delivered in %.1f s%n",
        s.name(), c.objects, total, want, initialS);
    Measure.sleepMillis(500);
    long heap2 = Measure.usedHeapAfterGc(3);
    Map<String, Long> histo2 = c.histogram ? Measure.classHistogram() : Map.of();

    // Warm-up, then the measured window, with the producer paced on nanoTime.
    Producer p = new Producer(c, s, ids, labels, serial);
    p.runFor(c.warmupS);
    child.call("MARK", CALL);
    long pub0 = p.published;
    long enc0 = s.encoded();
    long gc0 = Measure.gcMillis();
    var threads0 = Measure.threadCpu();
    long cpu0 = Measure.processCpuNanos();
    long w0 = System.nanoTime();
    p.runFor(c.durationS);
    long cpu1 = Measure.processCpuNanos();
    double seconds = (System.nanoTime() - w0) / 1e9;
    String counts = child.call("COUNTS", CALL);
    long enc1 = s.encoded();
    long gc1 = Measure.gcMillis();
    String threads = Measure.threadCpuDelta(threads0, 6);
    String[] cw = counts.split(" ");
    long delivered = Long.parseLong(ChildProcess.word(cw, "sinceMark", "0"));
    long min = Long.parseLong(ChildProcess.word(cw, "min", "0"));
    long max = Long.parseLong(ChildProcess.word(cw, "max", "0"));
    System.out.printf(
        Locale.ROOT, "[%s] measured %.1f s: published %,d, delivered %,d (%s)%n",
        s.name(), seconds, p.published - pub0, delivered, counts);
    String details = s.details();

    // Disconnect everyone; what stays is the objects (and anything leaked).
    System.out.printf(Locale.ROOT, "[%s] %s%n", s.name(), child.call("CLOSE", CALL));
    deadline = System.nanoTime() + 30_000_000_000L;
    while (s.openConnections() > 0 && System.nanoTime() < deadline) {
      Measure.sleepMillis(10);
    }
    Measure.sleepMillis(2000);
    long heap3 = Measure.usedHeapAfterGc(3);
    if (c.histogram) {
      Map<String, Long> histo3 = Measure.classHistogram();
      System.out.printf(
          Locale.ROOT,
          "[%s] live heap per connection holding the objects (before − after disconnect), top classes:%n%s",
          s.name(), Measure.histogramDelta(histo3, histo2, c.clients, 10));
      System.out.printf(
          Locale.ROOT,
          "[%s] live heap after everyone disconnected − base (total bytes), top classes:%n%s",
          s.name(), Measure.histogramDelta(histo0, histo3, 1, 12));
    }
    System.out.printf(
        Locale.ROOT,
        "[%s] after disconnect: open=%d heap %,d B (base %,d, with subscribers holding the objects %,d)%n",
        s.name(), s.openConnections(), heap3, heap0, heap2);
    s.close();
    return new Result(
        s.name(),
        (double) (heap1 - heap0) / c.clients,
        (double) (heap2 - heap3) / c.clients,
        heap3 - heap0,
        heap0,
        connectS,
        initialS,
        p.published - pub0,
        delivered,
        min,
        max,
        cpu1 - cpu0,
        seconds,
        enc1 - enc0,
        gc1 - gc0,
        threads,
        details);
  }

  static final class Producer {
    private final Config c;
    private final Server s;
    private final String[] ids;
    private final String[] labels;
    private final long[] serial;
    /** Written by the producing thread only; read by others for reporting. */
    volatile long published;

    Producer(Config c, Server s, String[] ids, String[] labels, long[] serial) {
      this.c = c;
      this.s = s;
      this.ids = ids;
      this.labels = labels;
      this.serial = serial;
    }

    void runFor(double seconds) {
      long start = System.nanoTime();
      long end = start + (long) (seconds * 1e9);
      long done = 0;
      while (true) {
        long now = System.nanoTime();
        if (now >= end) {
          return;
        }
        long due = (long) ((now - start) / 1e9 * c.rate);
        while (done < due && System.nanoTime() < end) { // behind: catch up, but stop on time
          int i = (int) (published % c.objects);
          s.publish(Payload.item(ids[i], ++serial[i], i, labels[i]));
          published++;
          done++;
        }
        LockSupport.parkNanos(200_000);
      }
    }
  }

  // ------------------------------------------------------------------ servers (this process)

  interface Server {
    String name();

    /** Binds on 127.0.0.1 and returns the port. */
    int start();

    void publish(Payload.Item item);

    /** HELLO frames (or WebSocket sessions, for raw) seen so far. */
    long helloCount();

    int openConnections();

    /** States encoded so far (raw: one per update). */
    long encoded();

    String details();

    void close();
  }

  /** Ours: an EntanglementNode behind WebSocketServerTransport. */
  static final class OursServer implements Server {
    private final EntanglementNode node =
        EntanglementNode.builder().id("server").registry(Payload.registry()).build();
    private final AtomicLong publishErrors = new AtomicLong();
    private final AtomicInteger open = new AtomicInteger();
    /** Each subscriber's current connection, by its X-Client header (SoakBenchmark drops them). */
    private final Map<String, Channel> byClient = new ConcurrentHashMap<>();
    private DisposableServer server;

    OursServer(Config c) {}

    @Override
    public String name() {
      return "ours";
    }

    @Override
    public int start() {
      server =
          WebSocketServerTransport.builder(node)
              .upgrade(
                  req -> {
                    String client = req.requestHeaders().get("X-Client");
                    open.incrementAndGet();
                    req.withConnection(
                        conn -> {
                          conn.onDispose(open::decrementAndGet);
                          Channel ch = conn.channel();
                          byClient.put(client, ch);
                          ch.closeFuture().addListener(f -> byClient.remove(client, ch));
                        });
                    return Mono.just(
                        WebSocketServerTransport.Upgrade.accept(PeerId.of("client-" + client)));
                  })
              .build()
              .bind()
              .block(Duration.ofSeconds(10));
      return server.port();
    }

    @Override
    public void publish(Payload.Item item) {
      node.publish(Payload.ITEM, item).subscribe(x -> {}, e -> publishErrors.incrementAndGet());
    }

    @Override
    public long helloCount() {
      return node.stats().framesReceived();
    }

    @Override
    public int openConnections() {
      return open.get();
    }

    /** Closes subscriber {@code client}'s connection abruptly (no close frame); false if it has none. */
    boolean drop(int client) {
      Channel ch = byClient.get(Integer.toString(client));
      if (ch == null || !ch.isActive()) {
        return false;
      }
      ch.close();
      return true;
    }

    EntanglementNode node() {
      return node;
    }

    /**
     * Read on the engine once it ran every publish submitted so far, so that a window's count
     * covers exactly the versions published in it, however far behind the engine runs.
     */
    @Override
    public long encoded() {
      return node.statsConsistent().block(Duration.ofSeconds(60)).statesEncoded();
    }

    @Override
    public String details() {
      NodeStats s = node.stats();
      return String.format(
          Locale.ROOT,
          "server: framesSent=%d bytesSent=%d framesReceived=%d statesEncoded=%d updatesOffered=%d"
              + " updatesCoalesced=%d queuedEntries=%d errorsReceived=%d publishErrors=%d",
          s.framesSent(), s.bytesSent(), s.framesReceived(), s.statesEncoded(), s.updatesOffered(),
          s.updatesCoalesced(), s.queuedEntries(), s.errorsReceived(), publishErrors.get());
    }

    @Override
    public void close() {
      node.close().block(Duration.ofSeconds(10));
      server.disposeNow(Duration.ofSeconds(10));
    }
  }

  /** Raw: encode once, write to every writable subscriber channel. */
  static final class RawServer implements Server {
    private final FrameCodec codec = new FrameCodec();
    private final JsonMapper json = JsonMapper.builder().build();
    private final String owner = OwnerId.random().value();
    private final long epoch = System.currentTimeMillis();
    private final Map<EventLoop, List<Channel>> byLoop = new ConcurrentHashMap<>();
    private final AtomicLong sessions = new AtomicLong();
    private final AtomicInteger open = new AtomicInteger();
    private final AtomicLong written = new AtomicLong();
    private final AtomicLong dropped = new AtomicLong();
    private long serial;
    private long encodedCount;
    private DisposableServer server;

    RawServer(Config c) {}

    @Override
    public String name() {
      return "raw";
    }

    @Override
    public int start() {
      server =
          HttpServer.create()
              .host("127.0.0.1")
              .port(0)
              .route(
                  r ->
                      r.ws(
                          PATH,
                          (in, out) -> {
                            Connection[] conn = new Connection[1];
                            in.withConnection(x -> conn[0] = x);
                            Channel ch = conn[0].channel();
                            List<Channel> group =
                                byLoop.computeIfAbsent(ch.eventLoop(), l -> new CopyOnWriteArrayList<>());
                            group.add(ch);
                            open.incrementAndGet();
                            sessions.incrementAndGet();
                            ch.closeFuture()
                                .addListener(
                                    f -> {
                                      group.remove(ch);
                                      open.decrementAndGet();
                                    });
                            return in.receive().then();
                          }))
              .bindNow(Duration.ofSeconds(10));
      return server.port();
    }

    @Override
    public void publish(Payload.Item item) {
      byte[] body = Payload.syncBody(codec, json, item, owner, epoch, ++serial);
      encodedCount++;
      ByteBuf frame = Unpooled.buffer(Payload.HEADER_BYTES + body.length);
      frame.writeInt(body.length).writeInt(0).writeBytes(body);
      for (Map.Entry<EventLoop, List<Channel>> e : byLoop.entrySet()) {
        List<Channel> group = e.getValue();
        frame.retain();
        e.getKey()
            .execute(
                () -> {
                  try {
                    for (Channel ch : group) {
                      if (ch.isActive() && ch.isWritable()) {
                        ch.writeAndFlush(new BinaryWebSocketFrame(frame.retainedDuplicate()), ch.voidPromise());
                        written.incrementAndGet();
                      } else {
                        dropped.incrementAndGet();
                      }
                    }
                  } finally {
                    frame.release();
                  }
                });
      }
      frame.release();
    }

    @Override
    public long helloCount() {
      return sessions.get();
    }

    @Override
    public int openConnections() {
      return open.get();
    }

    @Override
    public long encoded() {
      return encodedCount;
    }

    @Override
    public String details() {
      return "raw server: written=" + written.get() + " dropped (not writable)=" + dropped.get()
          + " encoded=" + encodedCount;
    }

    @Override
    public void close() {
      server.disposeNow(Duration.ofSeconds(10));
    }
  }

  // ------------------------------------------------------------------ subscribers (child process)

  /** N raw WebSocket clients that speak just enough of the protocol. */
  static final class Subscribers {
    private final FrameCodec codec = new FrameCodec();
    private final List<Connection> connections = new CopyOnWriteArrayList<>();
    private final AtomicInteger failed = new AtomicInteger();
    private final AtomicLong pings = new AtomicLong();
    private final AtomicLong others = new AtomicLong();
    private AtomicLongArray counts = new AtomicLongArray(0);
    private long[] mark = new long[0];
    private ConnectionProvider provider;

    String handle(String[] w) {
      return switch (w[0]) {
        case "CONNECT" -> connect(
            Integer.parseInt(ChildProcess.word(w, "port", "0")),
            ChildProcess.word(w, "path", PATH),
            Integer.parseInt(ChildProcess.word(w, "n", "1")));
        case "MARK" -> {
          mark = new long[counts.length()];
          for (int i = 0; i < mark.length; i++) {
            mark[i] = counts.get(i);
          }
          yield "OK";
        }
        case "COUNTS" -> {
          long total = 0;
          long since = 0;
          long min = Long.MAX_VALUE;
          long max = 0;
          for (int i = 0; i < counts.length(); i++) {
            long v = counts.get(i);
            long d = v - (i < mark.length ? mark[i] : 0);
            total += v;
            since += d;
            min = Math.min(min, d);
            max = Math.max(max, d);
          }
          yield String.format(
              Locale.ROOT,
              "COUNTS total=%d sinceMark=%d min=%d max=%d open=%d pings=%d otherFrames=%d",
              total, since, min == Long.MAX_VALUE ? 0 : min, max,
              connections.stream().filter(c -> !c.isDisposed()).count(), pings.get(), others.get());
        }
        case "CLOSE" -> {
          connections.forEach(Connection::dispose);
          long deadline = System.nanoTime() + 30_000_000_000L;
          while (connections.stream().anyMatch(c -> !c.channel().closeFuture().isDone())
              && System.nanoTime() < deadline) {
            Measure.sleepMillis(10);
          }
          int n = connections.size();
          connections.clear();
          yield "CLOSED " + n;
        }
        default -> "ERROR unknown command " + w[0];
      };
    }

    private String connect(int port, String path, int n) {
      counts = new AtomicLongArray(n);
      mark = new long[n];
      failed.set(0);
      if (provider != null) {
        provider.dispose();
      }
      provider = ConnectionProvider.newConnection();
      byte[] hello =
          codec.encode(new Message.Hello(FrameCodec.PROTOCOL_VERSION, "subscriber", List.of(), 0));
      long t0 = System.nanoTime();
      Flux.range(0, n)
          .flatMap(i -> open(port, path, i, hello).onErrorResume(e -> {
            failed.incrementAndGet();
            return Mono.empty();
          }), 100)
          .then()
          .block(Duration.ofSeconds(120));
      return String.format(
          Locale.ROOT,
          "CONNECTED ok=%d failed=%d in %.1f s",
          connections.size(), failed.get(), (System.nanoTime() - t0) / 1e9);
    }

    /** Opens subscriber {@code i}; completes once its HELLO is written. */
    private Mono<Void> open(int port, String path, int i, byte[] hello) {
      return Mono.create(
          sink ->
              HttpClient.create(provider)
                  .headers(h -> h.set("X-Client", Integer.toString(i)))
                  .websocket(WebsocketClientSpec.builder().maxFramePayloadLength(Payload.MAX_FRAME + 8).build())
                  .uri("ws://127.0.0.1:" + port + path)
                  .handle(
                      (in, out) -> {
                        Connection[] conn = new Connection[1];
                        in.withConnection(x -> conn[0] = x);
                        Channel ch = conn[0].channel();
                        connections.add(conn[0]);
                        ch.writeAndFlush(frame(hello)).addListener(f -> sink.success());
                        return in.receiveFrames()
                            .doOnNext(f -> onFrame(i, ch, f))
                            .then();
                      })
                  .subscribe(x -> {}, sink::error, sink::success));
    }

    static BinaryWebSocketFrame frame(byte[] body) {
      ByteBuf b = Unpooled.buffer(Payload.HEADER_BYTES + body.length);
      b.writeInt(body.length).writeInt(0).writeBytes(body);
      return new BinaryWebSocketFrame(b);
    }

    private void onFrame(int i, Channel ch, WebSocketFrame f) {
      if (!(f instanceof BinaryWebSocketFrame)) {
        return;
      }
      ByteBuf c = f.content();
      if (c.readableBytes() <= Payload.HEADER_BYTES) {
        return;
      }
      int type = c.getUnsignedByte(c.readerIndex() + Payload.HEADER_BYTES);
      if (type == 3) { // SYNC
        counts.incrementAndGet(i);
      } else if (type == 13) { // PING: answer with the same nonce
        byte[] body = new byte[c.readableBytes() - Payload.HEADER_BYTES];
        c.getBytes(c.readerIndex() + Payload.HEADER_BYTES, body);
        if (codec.decode(body) instanceof Message.Ping p) {
          pings.incrementAndGet();
          ch.writeAndFlush(frame(codec.encode(new Message.Pong(p.nonce()))));
        }
      } else {
        others.incrementAndGet();
      }
    }
  }

  // ------------------------------------------------------------------ report

  static void report(Config c, List<Result> results, double heapTargetKb) {
    System.out.println();
    System.out.println("=".repeat(100));
    System.out.printf(Locale.ROOT, "%-46s", "metric");
    for (Result r : results) {
      System.out.printf(Locale.ROOT, "%22s", r.name());
    }
    System.out.println();
    row(results, "connect + HELLO, all subscribers (s)", r -> Measure.fmt(r.connectS(), 1));
    row(results, "heap base, no subscribers (MB)", r -> Measure.fmt(r.heapBase() / 1048576.0, 1));
    row(results, "heap per idle connection, empty store (B)", r -> Measure.fmt(r.heapPerConnEmpty(), 0));
    row(results, "heap per connection holding the objects (B)", r -> Measure.fmt(r.heapPerConnHolding(), 0));
    row(results, "heap after all disconnect − base (B)", r -> Measure.fmt(r.heapObjectsOnly()));
    row(results, "initial objects to every subscriber (s)", r -> Measure.fmt(r.initialSyncS(), 1));
    row(results, "measured window (s)", r -> Measure.fmt(r.seconds(), 1));
    row(results, "updates published (versions)", r -> Measure.fmt(r.published()));
    row(results, "offered = updates × subscribers", r -> Measure.fmt(r.published() * c.clients));
    row(results, "SYNC frames delivered", r -> Measure.fmt(r.delivered()));
    row(results, "delivered / offered", r -> Measure.fmt(100.0 * r.delivered() / Math.max(1, r.published() * c.clients), 1) + " %");
    row(results, "delivery rate, total (frames/s)", r -> Measure.fmt(r.delivered() / r.seconds(), 0));
    row(results, "delivery rate per subscriber (frames/s)", r -> Measure.fmt(r.delivered() / r.seconds() / c.clients, 1));
    row(results, "per subscriber min / max (frames)", r -> Measure.fmt(r.minPerClient()) + " / " + Measure.fmt(r.maxPerClient()));
    row(results, "server CPU (s) / cores busy", r -> Measure.fmt(r.cpuNanos() / 1e9, 1) + " / " + Measure.fmt(r.cpuNanos() / 1e9 / r.seconds(), 2));
    row(results, "server CPU per delivered update (µs)", r -> Measure.fmt(r.cpuNanos() / 1e3 / Math.max(1, r.delivered()), 2));
    row(results, "states encoded", r -> Measure.fmt(r.encoded()));
    row(results, "encodings per version", r -> Measure.fmt((double) r.encoded() / Math.max(1, r.published()), 3));
    row(results, "GC time in window (ms)", r -> Measure.fmt(r.gcMillis()));
    System.out.println();
    for (Result r : results) {
      System.out.println("  " + r.name() + ": " + r.details());
      System.out.println("    server threads (CPU ms in window): " + r.threads());
    }
    Result ours = results.stream().filter(r -> r.name().equals("ours")).findFirst().orElse(null);
    Result raw = results.stream().filter(r -> r.name().equals("raw")).findFirst().orElse(null);
    if (ours != null && raw != null) {
      System.out.printf(
          Locale.ROOT,
          "%nours ÷ raw: heap per idle connection %.2f×, CPU per delivered update %.2f×, delivery rate %.2f×%n",
          ours.heapPerConnEmpty() / raw.heapPerConnEmpty(),
          (ours.cpuNanos() / Math.max(1, ours.delivered())) / (raw.cpuNanos() / Math.max(1, raw.delivered())),
          (double) ours.delivered() / ours.seconds() / (raw.delivered() / raw.seconds()));
    }
    if (ours != null) {
      System.out.println();
      System.out.println("targets:");
      double kb = ours.heapPerConnEmpty() / 1024;
      System.out.printf(
          Locale.ROOT, "  [%s] heap per idle connection ≤ %.0f KB (%.1f KB, empty store; %.1f KB per connection holding %d objects)%n",
          kb <= heapTargetKb ? "PASS" : "FAIL", heapTargetKb, kb, ours.heapPerConnHolding() / 1024, c.objects);
      double epv = (double) ours.encoded() / Math.max(1, ours.published());
      System.out.printf(
          Locale.ROOT, "  [%s] encodings per version ≤ 1 (%.3f)%n", epv <= 1 ? "PASS" : "FAIL", epv);
    }
  }

  private static void row(List<Result> results, String label, java.util.function.Function<Result, String> f) {
    System.out.printf(Locale.ROOT, "%-46s", label);
    for (Result r : results) {
      System.out.printf(Locale.ROOT, "%22s", f.apply(r));
    }
    System.out.println();
  }
}
