package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;
import reactor.core.publisher.BaseSubscriber;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * Convergence under a constrained link: an end-to-end harness (not JMH).
 *
 * <p>One owner node updates {@code objects} small records at {@code rate} updates per second in
 * total for {@code duration} seconds, toward one receiver over an in-JVM {@link LocalTransport}
 * link limited to {@code bandwidth} bytes per second. The update rate is far above what the link
 * carries. At the receiver it measures the age of information (AoI), in milliseconds:
 *
 * <ul>
 *   <li><b>age at receipt</b>: for every snapshot received, {@code now - committedAt};
 *   <li><b>sampled AoI</b>: every {@code sample} ms, {@code now - committedAt} of the version the
 *       receiver holds, for every object it holds.
 * </ul>
 *
 * <p>Both are reported as p50/p99 over the first and the last {@code window} seconds, for two
 * designs run one after the other in the same JVM over identically configured links:
 *
 * <ul>
 *   <li><b>ours</b>: two {@link EntanglementNode}s; the owner's coalescing queue sends the newest
 *       state of each dirty object once per round;
 *   <li><b>naive</b>: every update is encoded as a SYNC frame by the same {@link FrameCodec} and
 *       appended to an unbounded FIFO ({@link UnboundedFramePublisher}) that feeds the link; the
 *       receiver decodes every frame.
 * </ul>
 *
 * <p>Before the clock starts, every object is published once and the harness waits until the
 * receiver holds all of them (warm start); then the producer starts, and the clock starts once the
 * receiver holds, for every object, a version committed after the producer started (priming: one
 * full round), so that the first window measures the running system, not the age of the
 * warm-start versions. All counts and percentiles cover the measured {@code duration} only. The
 * physical floor
 * is the time to send one full set of dirty objects at the nominal link rate: {@code objects ×
 * (mean SYNC frame size) / bandwidth}, the frame size being observed on the owner ({@code
 * bytesSent / framesSent}). After the producer stops, the harness also measures how long the
 * receiver takes to hold the last version of every object.
 *
 * <p>Run (from the repository root):
 *
 * <pre>
 * mvn -B -q -pl benchmarks -am package -DskipTests
 * java -cp benchmarks/target/benchmarks.jar dev.entanglement.benchmarks.ConvergenceBenchmark
 * </pre>
 *
 * <p>Options, as {@code name=value} arguments or {@code -Dconvergence.name=value} system properties
 * (arguments win): {@code objects} (1000), {@code rate} updates/s (20000), {@code duration} s (30),
 * {@code bandwidth} bytes/s (100000), {@code latency} ms (0), {@code window} s (5; at most a third of
 * the duration), {@code sample} ms (100), {@code keys} {@code roundrobin|random} (roundrobin),
 * {@code design} {@code both|ours|naive} (both), {@code drainTimeout} s (10), {@code seed} (1). A
 * smoke run: {@code ... ConvergenceBenchmark duration=5}.
 */
public final class ConvergenceBenchmark {

  /** The synchronized record. */
  public record Position(String id, double x, double y, long seq) {}

  static final SyncType<Position> TYPE = SyncType.of("Position", Position.class, Position::id);

  private ConvergenceBenchmark() {}

  public static void main(String[] args) throws Exception {
    Config c = Config.parse(args);
    System.out.println(header(c));
    List<Result> results = new ArrayList<>();
    if (!c.design.equals("naive")) {
      results.add(run(c, new Ours(c)));
    }
    if (!c.design.equals("ours")) {
      results.add(run(c, new Naive(c)));
    }
    System.out.println(report(c, results));
    System.out.flush();
    System.exit(0); // reactor's timer threads would otherwise outlive the harness briefly
  }

  // ------------------------------------------------------------------ configuration

  static final class Config {
    int objects = 1000;
    double rate = 20_000;
    double durationS = 30;
    long bandwidth = 100_000;
    long latencyMs = 0;
    double windowS = 5;
    long sampleMs = 100;
    String keys = "roundrobin";
    String design = "both";
    double drainTimeoutS = 10;
    long seed = 1;

    static Config parse(String[] args) {
      Map<String, String> opts = new LinkedHashMap<>();
      for (String name :
          List.of(
              "objects", "rate", "duration", "bandwidth", "latency", "window", "sample", "keys",
              "design", "drainTimeout", "seed")) {
        String v = System.getProperty("convergence." + name);
        if (v != null) {
          opts.put(name, v);
        }
      }
      for (String a : args) {
        String s = a.startsWith("--") ? a.substring(2) : a;
        int eq = s.indexOf('=');
        if (eq <= 0) {
          throw new IllegalArgumentException("expected name=value, got '" + a + "'");
        }
        opts.put(s.substring(0, eq), s.substring(eq + 1));
      }
      Config c = new Config();
      opts.forEach(
          (k, v) -> {
            switch (k) {
              case "objects" -> c.objects = Integer.parseInt(v);
              case "rate" -> c.rate = Double.parseDouble(v);
              case "duration" -> c.durationS = Double.parseDouble(v);
              case "bandwidth" -> c.bandwidth = Long.parseLong(v);
              case "latency" -> c.latencyMs = Long.parseLong(v);
              case "window" -> c.windowS = Double.parseDouble(v);
              case "sample" -> c.sampleMs = Long.parseLong(v);
              case "keys" -> c.keys = v;
              case "design" -> c.design = v;
              case "drainTimeout" -> c.drainTimeoutS = Double.parseDouble(v);
              case "seed" -> c.seed = Long.parseLong(v);
              default -> throw new IllegalArgumentException("unknown option '" + k + "'");
            }
          });
      if (c.objects <= 0 || c.rate <= 0 || c.durationS <= 0 || c.bandwidth <= 0 || c.sampleMs <= 0) {
        throw new IllegalArgumentException("objects, rate, duration, bandwidth and sample must be > 0");
      }
      if (!List.of("roundrobin", "random").contains(c.keys)) {
        throw new IllegalArgumentException("keys must be roundrobin or random");
      }
      if (!List.of("both", "ours", "naive").contains(c.design)) {
        throw new IllegalArgumentException("design must be both, ours or naive");
      }
      c.windowS = Math.min(c.windowS, c.durationS / 3);
      return c;
    }

    long durationMs() {
      return Math.round(durationS * 1000);
    }

    long windowMs() {
      return Math.round(windowS * 1000);
    }
  }

  // ------------------------------------------------------------------ designs

  /** A sender/receiver pair under test. */
  abstract static class Design {
    final Config config;
    final String[] ids;
    final Map<String, Integer> indexOf = new HashMap<>();
    /** Age at receipt; active only while the clock runs. */
    final AgeSeries receipts = new AgeSeries();
    volatile long startNanos;
    volatile boolean recording;

    Design(Config config) {
      this.config = config;
      this.ids = new String[config.objects];
      for (int i = 0; i < ids.length; i++) {
        ids[i] = String.format(Locale.ROOT, "obj-%05d", i);
        indexOf.put(ids[i], i);
      }
    }

    abstract String name();

    abstract void start();

    /** Commits and sends one update; called on the producer thread only. */
    abstract void publish(Position p);

    /** committedAt of the version the receiver holds, or -1. */
    abstract long heldCommittedAt(int index);

    /** seq of the version the receiver holds, or -1. */
    abstract long heldSeq(int index);

    /** Bytes put on the link so far, sender to receiver. */
    abstract long linkBytes();

    /** Mean size of the SYNC frames sent so far. */
    abstract double meanFrameBytes();

    /** Bytes still queued at the sender (naive), or -1 when it does not queue bytes. */
    abstract long backlogBytes();

    /** Design-specific counters for the report. */
    abstract String details();

    abstract void close();

    /** Records a receipt; called by the receiver for every state it takes. */
    void received(long committedAt) {
      if (recording) {
        long now = System.currentTimeMillis();
        long t = (System.nanoTime() - startNanos) / 1_000_000;
        receipts.add(t, now - committedAt);
      }
    }
  }

  /** Our design: two nodes over a LocalTransport link. */
  static final class Ours extends Design {
    private EntanglementNode owner;
    private EntanglementNode receiver;
    private LocalTransport.Connection connection;
    private final List<Disposable> disposables = new ArrayList<>();
    private final AtomicLong publishErrors = new AtomicLong();

    Ours(Config c) {
      super(c);
    }

    @Override
    String name() {
      return "ours";
    }

    @Override
    void start() {
      LocalTransport transport =
          LocalTransport.builder()
              .bandwidth(config.bandwidth)
              .latency(Duration.ofMillis(config.latencyMs))
              .build();
      owner =
          EntanglementNode.builder()
              .id("owner")
              .registry(Registry.builder("bench").type(TYPE).build())
              .build();
      receiver =
          EntanglementNode.builder()
              .id("receiver")
              .registry(Registry.builder("bench").type(TYPE).build())
              .build();
      disposables.add(
          receiver
              .watchAll(TYPE)
              .subscribe(
                  s -> {
                    if (!s.deleted()) {
                      received(s.committedAt());
                    }
                  }));
      connection = transport.connect(PeerId.of("owner"), PeerId.of("receiver"));
      disposables.add(owner.attach(connection.a()).subscribe());
      disposables.add(receiver.attach(connection.b()).subscribe());
    }

    @Override
    void publish(Position p) {
      owner.publish(p).subscribe(s -> {}, e -> publishErrors.incrementAndGet());
    }

    @Override
    long heldCommittedAt(int index) {
      Optional<Snapshot<Position>> s = receiver.get(TYPE, ids[index]);
      return s.isPresent() && !s.get().deleted() ? s.get().committedAt() : -1;
    }

    @Override
    long heldSeq(int index) {
      Optional<Snapshot<Position>> s = receiver.get(TYPE, ids[index]);
      return s.isPresent() && !s.get().deleted() ? s.get().value().seq() : -1;
    }

    @Override
    long linkBytes() {
      return connection.bytesAtoB();
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
          "owner: framesSent=%d bytesSent=%d statesEncoded=%d updatesOffered=%d updatesCoalesced=%d"
              + " queuedEntries=%d errorsReceived=%d publishErrors=%d%n"
              + "    receiver: framesReceived=%d framesSent=%d errorsReceived=%d",
          o.framesSent(),
          o.bytesSent(),
          o.statesEncoded(),
          o.updatesOffered(),
          o.updatesCoalesced(),
          o.queuedEntries(),
          o.errorsReceived(),
          publishErrors.get(),
          r.framesReceived(),
          r.framesSent(),
          r.errorsReceived());
    }

    @Override
    void close() {
      disposables.forEach(Disposable::dispose);
      owner.close().block(Duration.ofSeconds(5));
      receiver.close().block(Duration.ofSeconds(5));
      connection.close();
    }
  }

  /**
   * The naive design's sender and receiver: an unbounded FIFO of every encoded update, and a
   * receiver that decodes every frame. Subclasses supply the link.
   */
  abstract static class NaiveDesign extends Design {
    private final FrameCodec codec = new FrameCodec();
    private final JsonMapper mapper = JsonMapper.builder().build();
    final UnboundedFramePublisher fifo = new UnboundedFramePublisher();
    private final String ownerId = OwnerId.random().value();
    private final long epoch = System.currentTimeMillis();
    private final AtomicLongArray heldCommittedAt;
    private final AtomicLongArray heldSeq;
    private final AtomicLongArray heldSerial;
    private final AtomicLong framesDecoded = new AtomicLong();
    private final AtomicLong decodeErrors = new AtomicLong();
    private final AtomicLong bytesEncoded = new AtomicLong();
    private final AtomicLong framesEncoded = new AtomicLong();
    private long serial;

    NaiveDesign(Config c) {
      super(c);
      heldCommittedAt = filled(c.objects);
      heldSeq = filled(c.objects);
      heldSerial = filled(c.objects);
    }

    private static AtomicLongArray filled(int n) {
      AtomicLongArray a = new AtomicLongArray(n);
      for (int i = 0; i < n; i++) {
        a.set(i, -1);
      }
      return a;
    }

    @Override
    String name() {
      return "naive";
    }

    /** Decodes one received frame and keeps it if it is newer than the held version. */
    void onFrame(byte[] frame) {
      try {
        if (!(codec.decode(frame) instanceof Message.Sync s)) {
          return;
        }
        framesDecoded.incrementAndGet();
        Position p = mapper.treeToValue(s.attributes(), Position.class);
        Integer i = indexOf.get(s.key());
        if (i == null) {
          return;
        }
        if (s.serial() > heldSerial.get(i)) { // only a newer version replaces the held one
          heldSerial.set(i, s.serial());
          heldSeq.set(i, p.seq());
          heldCommittedAt.set(i, s.committedAt());
        }
        received(s.committedAt());
      } catch (RuntimeException e) {
        decodeErrors.incrementAndGet();
      }
    }

    @Override
    void publish(Position p) {
      JsonNode attributes = mapper.valueToTree(p);
      byte[] frame =
          codec.encode(
              new Message.Sync(
                  TYPE.name(),
                  p.id(),
                  ownerId,
                  epoch,
                  ++serial,
                  System.currentTimeMillis(),
                  false,
                  attributes));
      bytesEncoded.addAndGet(frame.length);
      framesEncoded.incrementAndGet();
      fifo.offer(frame);
    }

    @Override
    long heldCommittedAt(int index) {
      return heldCommittedAt.get(index);
    }

    @Override
    long heldSeq(int index) {
      return heldSeq.get(index);
    }

    @Override
    double meanFrameBytes() {
      long n = framesEncoded.get();
      return n == 0 ? 0 : (double) bytesEncoded.get() / n;
    }

    @Override
    long backlogBytes() {
      return fifo.queuedBytes();
    }

    @Override
    String details() {
      return String.format(
          Locale.ROOT,
          "sender: framesEncoded=%d framesToLink=%d backlogFrames=%d backlogBytes=%d%n"
              + "    receiver: framesDecoded=%d decodeErrors=%d",
          framesEncoded.get(),
          fifo.framesOut(),
          fifo.queuedFrames(),
          fifo.queuedBytes(),
          framesDecoded.get(),
          decodeErrors.get());
    }
  }

  /** The naive design over the same kind of in-JVM link as ours. */
  static final class Naive extends NaiveDesign {
    private LocalTransport.Connection connection;
    private Disposable sending;

    Naive(Config c) {
      super(c);
    }

    @Override
    void start() {
      LocalTransport transport =
          LocalTransport.builder()
              .bandwidth(config.bandwidth)
              .latency(Duration.ofMillis(config.latencyMs))
              .build();
      connection = transport.connect(PeerId.of("owner"), PeerId.of("receiver"));
      connection
          .b()
          .receive()
          .subscribe(
              new BaseSubscriber<byte[]>() {
                @Override
                protected void hookOnSubscribe(Subscription s) {
                  s.request(256); // the same inbound window as the engine
                }

                @Override
                protected void hookOnNext(byte[] frame) {
                  onFrame(frame);
                  request(1);
                }
              });
      sending = connection.a().send(fifo).subscribe();
    }

    @Override
    long linkBytes() {
      return connection.bytesAtoB();
    }

    @Override
    void close() {
      sending.dispose();
      connection.close();
    }
  }

  // ------------------------------------------------------------------ one run

  /** Everything measured for one design. */
  record Result(
      String name,
      long published,
      double elapsedS,
      long linkBytes,
      long delivered,
      double meanFrameBytes,
      long[] receiptFirst,
      long[] receiptLast,
      long[] sampledFirst,
      long[] sampledLast,
      int minHeld,
      double warmStartS,
      double primingS,
      String convergence,
      String details) {

    double linkRate() {
      return linkBytes / elapsedS;
    }
  }

  static Result run(Config c, Design d) throws InterruptedException {
    System.gc();
    System.out.printf(Locale.ROOT, "%n[%s] starting: warm start (every object once)...%n", d.name());
    d.start();
    long[] seq = new long[c.objects];
    long t0 = System.nanoTime();
    for (int i = 0; i < c.objects; i++) {
      d.publish(position(d.ids[i], i, 0));
    }
    if (!awaitConverged(d, seq, 60_000)) {
      System.out.printf("[%s] WARNING: the receiver did not get every object within 60 s%n", d.name());
    }
    double warmStartS = (System.nanoTime() - t0) / 1e9;
    System.out.printf(
        Locale.ROOT,
        "[%s] warm start took %.2f s; producing %.0f updates/s; priming...%n",
        d.name(),
        warmStartS,
        c.rate);

    AgeSeries sampled = new AgeSeries();
    int[] minHeld = {Integer.MAX_VALUE};
    ScheduledExecutorService sampler =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "aoi-sampler");
              t.setDaemon(true);
              return t;
            });
    ScheduledFuture<?> sampling = null;

    // Producer: paced on System.nanoTime; publishes whatever is due, then parks briefly. It first
    // primes the pipeline: the clock starts once the receiver holds, for every object, a version
    // committed after the producer started (one full round), so that the first window measures
    // the running system rather than the age of the warm-start versions.
    long producerStart = System.nanoTime();
    long producerStartMs = System.currentTimeMillis();
    long primingDeadline = producerStart + 60_000_000_000L;
    int primedUpTo = 0;
    boolean measuring = false;
    long start = 0;
    long end = Long.MAX_VALUE;
    long durationNanos = c.durationMs() * 1_000_000L;
    long published = 0;
    long publishedAtStart = 0;
    long bytesAtStart = 0;
    double primingS = 0;
    SplittableRandom random = new SplittableRandom(c.seed);
    boolean roundRobin = c.keys.equals("roundrobin");
    long lastCheck = producerStart;
    long lastProgress = producerStart;
    while (true) {
      long now = System.nanoTime();
      if (now >= end) {
        break;
      }
      long due = (long) ((now - producerStart) / 1e9 * c.rate);
      while (published < due) {
        int i = roundRobin ? (int) (published % c.objects) : random.nextInt(c.objects);
        d.publish(position(d.ids[i], i, ++seq[i]));
        published++;
      }
      if (!measuring && now - lastCheck >= 10_000_000L) {
        lastCheck = now;
        while (primedUpTo < c.objects && d.heldCommittedAt(primedUpTo) >= producerStartMs) {
          primedUpTo++;
        }
        boolean timedOut = now >= primingDeadline;
        if (primedUpTo == c.objects || timedOut) {
          if (timedOut) {
            System.out.printf(
                "[%s] WARNING: not primed after 60 s (%d of %d objects refreshed); measuring anyway%n",
                d.name(),
                primedUpTo,
                c.objects);
          }
          measuring = true;
          start = System.nanoTime();
          end = start + durationNanos;
          primingS = (start - producerStart) / 1e9;
          publishedAtStart = published;
          bytesAtStart = d.linkBytes();
          long measureStart = start;
          d.startNanos = start;
          d.recording = true;
          sampling =
              sampler.scheduleAtFixedRate(
                  () -> {
                    long nowMs = System.currentTimeMillis();
                    long t = (System.nanoTime() - measureStart) / 1_000_000;
                    int held = 0;
                    for (int i = 0; i < c.objects; i++) {
                      long at = d.heldCommittedAt(i);
                      if (at >= 0) {
                        sampled.add(t, nowMs - at);
                        held++;
                      }
                    }
                    minHeld[0] = Math.min(minHeld[0], held);
                  },
                  c.sampleMs,
                  c.sampleMs,
                  TimeUnit.MILLISECONDS);
          System.out.printf(
              Locale.ROOT,
              "[%s] primed after %.2f s; measuring for %.1f s...%n",
              d.name(),
              primingS,
              c.durationS);
        }
      }
      if (measuring && now - lastProgress >= 5_000_000_000L) {
        lastProgress = now;
        System.out.printf(
            Locale.ROOT,
            "[%s] t=%.0f s published=%d delivered=%d%n",
            d.name(),
            (now - start) / 1e9,
            published - publishedAtStart,
            d.receipts.size());
      }
      LockSupport.parkNanos(100_000);
    }
    double elapsedS = (System.nanoTime() - start) / 1e9;
    long linkBytes = d.linkBytes() - bytesAtStart;
    sampling.cancel(false);
    sampler.shutdown();
    sampler.awaitTermination(5, TimeUnit.SECONDS);
    d.recording = false;
    long measuredPublished = published - publishedAtStart;

    long durationMs = c.durationMs();
    long windowMs = c.windowMs();
    long delivered = d.receipts.window(0, durationMs + 1).length;
    long[] receiptFirst = d.receipts.window(0, windowMs);
    long[] receiptLast = d.receipts.window(durationMs - windowMs, durationMs + 1);
    long[] sampledFirst = sampled.window(0, windowMs);
    long[] sampledLast = sampled.window(durationMs - windowMs, durationMs + 1);

    // Convergence after the producer stops: until the receiver holds the last version of all.
    String convergence;
    long backlog = d.backlogBytes();
    double backlogS = backlog < 0 ? 0 : (double) backlog / c.bandwidth;
    if (backlogS > c.drainTimeoutS) {
      convergence = String.format(Locale.ROOT, "backlog ≈ %.0f s", backlogS);
    } else {
      long stop = System.nanoTime();
      if (awaitConverged(d, seq, (long) (c.drainTimeoutS * 1000))) {
        convergence = String.format(Locale.ROOT, "%.2f s", (System.nanoTime() - stop) / 1e9);
      } else {
        convergence = String.format(Locale.ROOT, "> %.0f s", c.drainTimeoutS);
      }
    }
    String details = d.details();
    double meanFrame = d.meanFrameBytes();
    System.out.printf(
        Locale.ROOT,
        "[%s] done: published=%d delivered=%d (measured window)%n",
        d.name(),
        measuredPublished,
        delivered);
    d.close();
    return new Result(
        d.name(),
        measuredPublished,
        elapsedS,
        linkBytes,
        delivered,
        meanFrame,
        receiptFirst,
        receiptLast,
        sampledFirst,
        sampledLast,
        minHeld[0] == Integer.MAX_VALUE ? 0 : minHeld[0],
        warmStartS,
        primingS,
        convergence,
        details);
  }

  private static Position position(String id, int index, long seq) {
    double angle = seq * 0.01 + index;
    return new Position(id, 100 * Math.cos(angle), 100 * Math.sin(angle), seq);
  }

  /** Waits (parking this harness thread) until the receiver holds seq[i] for every object. */
  private static boolean awaitConverged(Design d, long[] seq, long timeoutMs) {
    long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
    int from = 0;
    while (System.nanoTime() < deadline) {
      while (from < seq.length && d.heldSeq(from) >= seq[from]) {
        from++;
      }
      if (from == seq.length) {
        return true;
      }
      LockSupport.parkNanos(2_000_000);
    }
    return false;
  }

  // ------------------------------------------------------------------ report

  private static String header(Config c) {
    return String.format(
        Locale.ROOT,
        "Convergence under a constrained link — %s, %d CPUs, Java %s%n"
            + "objects=%d rate=%.0f updates/s duration=%.1f s bandwidth=%d B/s latency=%d ms"
            + " window=%.2f s sample=%d ms keys=%s",
        ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME),
        Runtime.getRuntime().availableProcessors(),
        System.getProperty("java.version"),
        c.objects,
        c.rate,
        c.durationS,
        c.bandwidth,
        c.latencyMs,
        c.windowS,
        c.sampleMs,
        c.keys);
  }

  static String report(Config c, List<Result> results) {
    StringBuilder sb = new StringBuilder();
    Result ours = find(results, "ours");
    Result naive = find(results, "naive");
    double frame = ours != null ? ours.meanFrameBytes() : naive.meanFrameBytes();
    double floorMs = c.objects * frame / c.bandwidth * 1000;
    String w =
        c.windowS == Math.rint(c.windowS)
            ? String.format(Locale.ROOT, "%.0fs", c.windowS)
            : String.format(Locale.ROOT, "%.2fs", c.windowS);
    sb.append(String.format(Locale.ROOT, "%n%s%n", "=".repeat(78)));
    sb.append(
        String.format(
            Locale.ROOT,
            "physical floor = %d objects × %.1f B / %d B/s = %.0f ms%n%n",
            c.objects,
            frame,
            c.bandwidth,
            floorMs));
    sb.append(String.format(Locale.ROOT, "%-34s", "metric"));
    for (Result r : results) {
      sb.append(String.format(Locale.ROOT, "%20s", r.name()));
    }
    sb.append('\n');
    row(sb, results, "updates published (measured)", r -> fmt(r.published()));
    row(sb, results, "achieved update rate (/s)", r -> fmt(Math.round(r.published() / r.elapsedS())));
    row(sb, results, "updates delivered", r -> fmt(r.delivered()));
    row(
        sb,
        results,
        "delivered / published",
        r -> String.format(Locale.ROOT, "%.2f%%", 100.0 * r.delivered() / r.published()));
    row(sb, results, "bytes over link", r -> fmt(r.linkBytes()));
    row(sb, results, "link throughput (B/s)", r -> fmt(Math.round(r.linkRate())));
    row(
        sb,
        results,
        "link utilization",
        r -> String.format(Locale.ROOT, "%.1f%%", 100.0 * r.linkRate() / c.bandwidth));
    row(sb, results, "mean SYNC frame (B)", r -> String.format(Locale.ROOT, "%.1f", r.meanFrameBytes()));
    row(sb, results, "age at receipt p50, first " + w + " (ms)", r -> ms(r.receiptFirst(), 50));
    row(sb, results, "age at receipt p99, first " + w + " (ms)", r -> ms(r.receiptFirst(), 99));
    row(sb, results, "age at receipt p50, last " + w + " (ms)", r -> ms(r.receiptLast(), 50));
    row(sb, results, "age at receipt p99, last " + w + " (ms)", r -> ms(r.receiptLast(), 99));
    row(sb, results, "sampled AoI p50, first " + w + " (ms)", r -> ms(r.sampledFirst(), 50));
    row(sb, results, "sampled AoI p99, first " + w + " (ms)", r -> ms(r.sampledFirst(), 99));
    row(sb, results, "sampled AoI p50, last " + w + " (ms)", r -> ms(r.sampledLast(), 50));
    row(sb, results, "sampled AoI p99, last " + w + " (ms)", r -> ms(r.sampledLast(), 99));
    row(sb, results, "objects held (min over samples)", r -> fmt(r.minHeld()));
    row(sb, results, "warm start (s)", r -> String.format(Locale.ROOT, "%.2f", r.warmStartS()));
    row(sb, results, "priming before the clock (s)", r -> String.format(Locale.ROOT, "%.2f", r.primingS()));
    row(sb, results, "converged after producer stop", Result::convergence);
    sb.append('\n');
    for (Result r : results) {
      sb.append(String.format(Locale.ROOT, "  %s: %s%n", r.name(), r.details()));
    }

    sb.append(String.format(Locale.ROOT, "%ntargets:%n"));
    if (ours != null) {
      target(
          sb,
          "ours: sampled AoI p99 last " + w + " ≤ 1.2 × first " + w,
          p99(ours.sampledLast()),
          1.2 * p99(ours.sampledFirst()),
          String.format(Locale.ROOT, "ratio %.2f", ratio(ours.sampledLast(), ours.sampledFirst())));
      target(
          sb,
          "ours: age at receipt p99 last " + w + " ≤ 1.2 × first " + w,
          p99(ours.receiptLast()),
          1.2 * p99(ours.receiptFirst()),
          String.format(Locale.ROOT, "ratio %.2f", ratio(ours.receiptLast(), ours.receiptFirst())));
      target(
          sb,
          "ours: sampled AoI p99 last " + w + " ≤ 2 × floor",
          p99(ours.sampledLast()),
          2 * floorMs,
          String.format(Locale.ROOT, "%d ms vs %.0f ms, %.2f × floor", p99(ours.sampledLast()), 2 * floorMs, p99(ours.sampledLast()) / floorMs));
      target(
          sb,
          "ours: age at receipt p99 last " + w + " ≤ 2 × floor",
          p99(ours.receiptLast()),
          2 * floorMs,
          String.format(Locale.ROOT, "%d ms vs %.0f ms, %.2f × floor", p99(ours.receiptLast()), 2 * floorMs, p99(ours.receiptLast()) / floorMs));
    }
    if (naive != null) {
      target(
          sb,
          "naive: sampled AoI p99 grows (last " + w + " ≥ 2 × first " + w + ")",
          2 * p99(naive.sampledFirst()),
          p99(naive.sampledLast()),
          String.format(Locale.ROOT, "ratio %.2f", ratio(naive.sampledLast(), naive.sampledFirst())));
      target(
          sb,
          "naive: age at receipt p99 grows (last " + w + " ≥ 2 × first " + w + ")",
          2 * p99(naive.receiptFirst()),
          p99(naive.receiptLast()),
          String.format(Locale.ROOT, "ratio %.2f", ratio(naive.receiptLast(), naive.receiptFirst())));
    }
    if (ours != null && naive != null) {
      sb.append(
          String.format(
              Locale.ROOT,
              "%nnaive / ours, last %s: sampled AoI p99 %.1f×, age at receipt p99 %.1f×%n",
              w,
              (double) p99(naive.sampledLast()) / Math.max(1, p99(ours.sampledLast())),
              (double) p99(naive.receiptLast()) / Math.max(1, p99(ours.receiptLast()))));
    }
    return sb.toString();
  }

  private static Result find(List<Result> results, String name) {
    return results.stream().filter(r -> r.name().equals(name)).findFirst().orElse(null);
  }

  private static void row(
      StringBuilder sb, List<Result> results, String label, java.util.function.Function<Result, String> f) {
    sb.append(String.format(Locale.ROOT, "%-34s", label));
    for (Result r : results) {
      sb.append(String.format(Locale.ROOT, "%20s", f.apply(r)));
    }
    sb.append('\n');
  }

  /** Prints PASS when {@code value ≤ bound} (and there is data). */
  private static void target(StringBuilder sb, String what, double value, double bound, String detail) {
    boolean pass = value >= 0 && bound >= 0 && value <= bound;
    sb.append(String.format(Locale.ROOT, "  [%s] %s (%s)%n", pass ? "PASS" : "FAIL", what, detail));
  }

  private static long p99(long[] sorted) {
    return AgeSeries.percentile(sorted, 99);
  }

  private static double ratio(long[] last, long[] first) {
    return (double) p99(last) / Math.max(1, p99(first));
  }

  private static String ms(long[] sorted, double p) {
    long v = AgeSeries.percentile(sorted, p);
    return v < 0 ? "n/a" : fmt(v);
  }

  private static String fmt(long v) {
    return String.format(Locale.ROOT, "%,d", v);
  }
}
