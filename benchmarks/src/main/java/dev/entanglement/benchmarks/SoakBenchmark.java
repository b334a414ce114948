package dev.entanglement.benchmarks;

import dev.entanglement.NodeStats;
import dev.entanglement.Snapshot;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.StringJoiner;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.function.ToDoubleFunction;
import java.util.stream.Stream;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.http.client.HttpClient;
import reactor.netty.http.client.WebsocketClientSpec;
import reactor.netty.resources.ConnectionProvider;
import reactor.util.retry.Retry;

/**
 * Soak (issue 6 §5): B3's fan-out load ({@link FanOutBenchmark}) for a long time, plus random link
 * drops, watching the server for leaks and the subscribers for lost data.
 *
 * <p>Two processes, as in B3: this one is the server (an {@link FanOutBenchmark.OursServer}: one
 * node behind the WebSocket transport) and the producer; a child process runs the subscribers as
 * raw WebSocket clients. Unlike B3's, these subscribers decode every SYNC and keep, per subscriber
 * and object, the newest owner serial and commit time received, and they reconnect (HELLO again,
 * after {@link Subscribers#RECONNECT_DELAY}) whenever their connection closes.
 *
 * <p>Procedure: connect the subscribers, publish every object once and wait until every subscriber
 * holds it; then for {@code duration} the producer updates the objects round robin at {@code rate}
 * per second while the main thread, on a seeded schedule, drops one random subscriber's link every
 * {@code dropEvery} seconds (half of the time by closing the server's side of the connection, half
 * of the time the subscriber's, both without a close frame) and every {@code sample} seconds
 * samples: the server's used heap after full GCs, its open file descriptors ({@code
 * /proc/self/fd}), the SYNC frames delivered since the last sample, the sampled age of information
 * at the subscribers (every 100 ms, {@value Subscribers#AOI_PER_TICK} random (subscriber, object)
 * pairs: now − commit time of the version held; p50 and p99 over the interval) and the reconnect
 * count. Then the producer stops and the harness waits until every subscriber holds the server's
 * last version of every object (time to converge).
 *
 * <p>Targets, each printed PASS or FAIL (the process exits with 1 if any fails): heap and file
 * descriptors flat, i.e. the mean of the samples in the last window within {@code tolerance} % of
 * the mean in the reference window (runs of 30 minutes or more: minutes 5–15 and the last 10
 * minutes; shorter runs: the second and the last third); no data lost (converged within {@code
 * convergeTimeout}); no version regressed at any subscriber; every link that ended (dropped by
 * the harness, or closed by the server's keepalive) reconnected; at the end the server's node has
 * one destination per connection open at the server (a closed link's destination left attached
 * is a leak; every sample prints both counts).
 *
 * <p>Options ({@code name=value}; durations in seconds or with a suffix {@code s}, {@code m},
 * {@code h}): {@code clients} (1000), {@code objects} (1000), {@code rate} updates/s in total
 * (1000), {@code duration} (30m), {@code sample} (the smaller of 60 s and duration ÷ 12), {@code
 * dropEvery} (5 s), {@code seed} (1), {@code convergeTimeout} (300 s), {@code tolerance} % (10),
 * {@code histogram} (true: print the classes whose live bytes grew from the start of the reference
 * window to the end). Short run: {@code duration=2m} ({@code mvn -Psoak-short}, docs/BENCHMARKS.md
 * §9).
 */
public final class SoakBenchmark {
  private static final Duration CALL = Duration.ofSeconds(120);
  private static final String PATH = "/entanglement";
  private static final long IDS_SEED = 7;

  private SoakBenchmark() {}

  public static void main(String[] args) throws Exception {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    for (String a : args) {
      if (a.equals("role=child")) {
        ChildProcess.serve(new Subscribers()::handle);
        return;
      }
    }
    Options o =
        Options.parse(
            args, "clients", "objects", "rate", "duration", "sample", "dropEvery", "seed",
            "convergeTimeout", "tolerance", "histogram");
    FanOutBenchmark.Config c = new FanOutBenchmark.Config();
    c.clients = o.integer("clients", 1000);
    c.objects = o.integer("objects", 1000);
    c.rate = o.decimal("rate", 1000);
    c.durationS = o.seconds("duration", 1800);
    double sampleS = o.seconds("sample", Math.min(60, c.durationS / 12));
    double dropEveryS = o.seconds("dropEvery", 5);
    long seed = o.longValue("seed", 1);
    double convergeS = o.seconds("convergeTimeout", 300);
    double tolerance = o.decimal("tolerance", 10) / 100;
    boolean histogram = o.bool("histogram", true);
    Windows w = Windows.of(c.durationS);

    System.out.println(Measure.header("Soak (B3 fan-out + link drops)"));
    System.out.printf(
        Locale.ROOT,
        "clients=%d objects=%d rate=%.0f updates/s duration=%.0f s sample every %.0f s"
            + " drop a link every %.1f s seed=%d%n"
            + "flatness windows: reference %s, last %s; tolerance ±%.0f %%%n",
        c.clients, c.objects, c.rate, c.durationS, sampleS, dropEveryS, seed,
        w.reference(), w.last(), tolerance * 100);

    boolean pass;
    try (ChildProcess child = ChildProcess.start(SoakBenchmark.class, List.of(), List.of())) {
      System.out.println(
          "server pid " + ProcessHandle.current().pid() + ", subscribers pid " + child.pid());
      pass = new Run(c, child, seed, histogram).soak(sampleS, dropEveryS, convergeS, w, tolerance);
    }
    System.out.flush();
    System.exit(pass ? 0 : 1);
  }

  /** One sample of the server and the subscribers, {@code t} seconds into the load. */
  record Sample(
      double t,
      long frames,
      long published,
      long heap,
      long fds,
      double framesPerS,
      long aoiP50,
      long aoiP99,
      long reconnects,
      double publishedPerS,
      int queued,
      int destinations,
      int openAtServer) {}

  /**
   * The windows compared by the flatness targets, in seconds of load: {@code (from, to]}. Runs of
   * 30 minutes or more: minutes 5–15 against the last 10 minutes; shorter: the second third against
   * the last.
   */
  record Windows(double refFrom, double refTo, double lastFrom, double lastTo) {
    static Windows of(double durationS) {
      return durationS >= 1800
          ? new Windows(300, 900, durationS - 600, durationS)
          : new Windows(durationS / 3, 2 * durationS / 3, 2 * durationS / 3, durationS);
    }

    String reference() {
      return span(refFrom, refTo);
    }

    String last() {
      return span(lastFrom, lastTo);
    }

    private static String span(double from, double to) {
      return String.format(Locale.ROOT, "(%.0f s, %.0f s]", from, to);
    }
  }

  /** The soak itself: the server, the producer and the schedule of drops and samples. */
  static final class Run {
    private final FanOutBenchmark.Config c;
    private final ChildProcess child;
    private final FanOutBenchmark.OursServer server;
    private final SplittableRandom random;
    private final boolean histogram;
    private final String[] ids;
    private final List<Sample> samples = new ArrayList<>();
    private long serverDrops;
    private long subscriberDrops;
    private long dropsSkipped;

    Run(FanOutBenchmark.Config c, ChildProcess child, long seed, boolean histogram) {
      this.c = c;
      this.child = child;
      this.server = new FanOutBenchmark.OursServer(c);
      this.random = new SplittableRandom(seed);
      this.histogram = histogram;
      this.ids = Payload.ids(c.objects, IDS_SEED);
    }

    boolean soak(double sampleS, double dropEveryS, double convergeS, Windows w, double tolerance) {
      int port = server.start();
      System.out.println(
          child.call(
              "CONNECT port=" + port + " path=" + PATH + " n=" + c.clients + " objects=" + c.objects
                  + " seed=" + random.nextLong(),
              CALL));
      String[] labels = Payload.labels(c.objects);
      long[] serial = new long[c.objects];
      long t0 = System.nanoTime();
      for (int i = 0; i < c.objects; i++) {
        server.publish(Payload.item(ids[i], ++serial[i], i, labels[i]));
      }
      double initialS = converge(serial, Duration.ofSeconds(120));
      System.out.printf(
          Locale.ROOT, "initial %d objects held by every subscriber after %s%n",
          c.objects, initialS < 0 ? "TIMEOUT (120 s)" : Measure.fmt((System.nanoTime() - t0) / 1e9, 1) + " s");

      FanOutBenchmark.Producer producer =
          new FanOutBenchmark.Producer(c, server, ids, labels, serial);
      Thread producing = new Thread(() -> producer.runFor(c.durationS), "producer");
      String first = child.call("SAMPLE", CALL); // resets the subscribers' interval counters
      long start = System.nanoTime();
      producing.start();
      Map<String, Long> histoRef = Map.of();
      double nextSample = sampleS;
      double nextDrop = dropEveryS;
      Sample last = new Sample(0, Long.parseLong(ChildProcess.word(first.split(" "), "frames", "0")), 0, 0, 0, 0, -1, -1, 0, 0, 0, 0, 0);
      System.out.printf(
          Locale.ROOT, "%n%8s %10s %6s %12s %10s %10s %10s %12s %10s %7s %7s%n",
          "t (s)", "heap (MB)", "fds", "frames/s", "AoI p50", "AoI p99", "reconnect", "published/s", "queued",
          "dests", "open");
      while (true) {
        double t = (System.nanoTime() - start) / 1e9;
        if (t >= c.durationS && nextSample > c.durationS) {
          break;
        }
        if (t >= nextSample) {
          if (histogram && histoRef.isEmpty() && nextSample > w.refFrom()) {
            histoRef = Measure.classHistogram();
          }
          last = sample(t, last, producer);
          samples.add(last);
          nextSample += sampleS;
        } else if (t >= nextDrop && t < c.durationS) {
          drop();
          nextDrop += dropEveryS;
        } else {
          Measure.sleepMillis(
              (long) (Math.max(0, Math.min(nextSample, t < c.durationS ? nextDrop : nextSample) - t) * 1000) + 1);
        }
      }
      join(producing);
      System.out.printf(
          Locale.ROOT,
          "%nproducer stopped after %.1f s: %,d updates published; links dropped: %d by the server,"
              + " %d by the subscriber (%d picks skipped: that subscriber was reconnecting)%n",
          (System.nanoTime() - start) / 1e9, producer.published, serverDrops, subscriberDrops,
          dropsSkipped);
      long stop = System.nanoTime();
      double convergedS = converge(serial, ChildProcess.seconds(convergeS));
      double convergeAfterStop = convergedS < 0 ? -1 : (System.nanoTime() - stop) / 1e9;
      // Links closed just before (e.g. by keepalive) may still be reconnecting: give them a minute.
      long reconnectDeadline = System.nanoTime() + 60_000_000_000L;
      String end = child.call("SAMPLE", CALL);
      while (!ChildProcess.word(end.split(" "), "open", "").equals(Integer.toString(c.clients))
          && System.nanoTime() < reconnectDeadline) {
        Measure.sleepMillis(500);
        end = child.call("SAMPLE", CALL);
      }
      System.out.println("subscribers at the end: " + end);
      // A link that closed must leave no destination behind, and an open one must have one; under
      // overload the engine may detach a closed link's destination late: give it a minute.
      long detachDeadline = System.nanoTime() + 60_000_000_000L;
      int destinations = server.node().stats().peers().size();
      while (destinations != server.openConnections() && System.nanoTime() < detachDeadline) {
        Measure.sleepMillis(500);
        destinations = server.node().stats().peers().size();
      }
      int openAtServer = server.openConnections();
      System.out.println(server.details());
      if (histogram && !histoRef.isEmpty()) {
        System.out.printf(
            Locale.ROOT,
            "live heap growth from the start of the reference window to the end, top classes:%n%s",
            Measure.histogramDelta(histoRef, Measure.classHistogram(), 1, 12));
      }
      double due = c.rate * c.durationS;
      System.out.printf(
          Locale.ROOT,
          "offered load: %,d of %,.0f updates due published (%.1f %%)%s%n",
          producer.published, due, 100 * producer.published / due,
          producer.published < 0.9 * due
              ? "; the producer did not keep pace (its thread is held in publish(), docs/BENCHMARKS.md §6)"
              : "");
      boolean pass = report(w, tolerance, convergeAfterStop, convergeS, end);
      pass &=
          target(
              destinations == openAtServer,
              String.format(
                  Locale.ROOT,
                  "every destination of the server belongs to an open connection and vice versa"
                      + " (%d destinations, %d connections open at the server)",
                  destinations, openAtServer));
      System.out.println(pass ? "SOAK PASS" : "SOAK FAIL");
      child.call("CLOSE", CALL);
      server.close();
      return pass;
    }

    private Sample sample(double t, Sample previous, FanOutBenchmark.Producer p) {
      String[] sub = child.call("SAMPLE", CALL).split(" ");
      long frames = Long.parseLong(ChildProcess.word(sub, "frames", "0"));
      long published = p.published;
      long heap = Measure.usedHeapAfterGc(2);
      NodeStats stats = server.node().stats();
      double dt = Math.max(1e-9, t - previous.t());
      Sample s =
          new Sample(
              t,
              frames,
              published,
              heap,
              openFileDescriptors(),
              (frames - previous.frames()) / dt,
              Long.parseLong(ChildProcess.word(sub, "aoiP50", "-1")),
              Long.parseLong(ChildProcess.word(sub, "aoiP99", "-1")),
              Long.parseLong(ChildProcess.word(sub, "reconnects", "0")),
              (published - previous.published()) / dt,
              stats.queuedEntries(),
              stats.peers().size(),
              server.openConnections());
      System.out.printf(
          Locale.ROOT, "%8.0f %10.1f %6d %12.0f %10s %10s %10d %12.0f %10d %7d %7d%n",
          s.t(), s.heap() / 1048576.0, s.fds(), s.framesPerS(), ms(s.aoiP50()), ms(s.aoiP99()),
          s.reconnects(), s.publishedPerS(), s.queued(), s.destinations(), s.openAtServer());
      return s;
    }

    /** Drops one random subscriber's link, from the server's side or the subscriber's. */
    private void drop() {
      int client = random.nextInt(c.clients);
      if (random.nextBoolean()) {
        if (server.drop(client)) {
          serverDrops++;
        } else {
          dropsSkipped++;
        }
      } else if (child.call("DROP i=" + client, CALL).startsWith("DROPPED")) {
        subscriberDrops++;
      } else {
        dropsSkipped++;
      }
    }

    /**
     * Waits until the server has committed the producer's last update of every object ({@code
     * serial[i]}, the item's own serial) and every subscriber holds that version; returns the
     * seconds it took, or -1 on timeout.
     */
    private double converge(long[] serial, Duration timeout) {
      long t0 = System.nanoTime();
      long deadline = t0 + timeout.toNanos();
      String last = "";
      while (System.nanoTime() < deadline) {
        StringJoiner expected = new StringJoiner(",");
        int committed = 0;
        for (int i = 0; i < ids.length; i++) {
          Snapshot<Payload.Item> s = server.node().get(Payload.ITEM, ids[i]).orElse(null);
          if (s != null && s.value() != null && s.value().serial() == serial[i]) {
            committed++;
            expected.add(Long.toString(s.version().serial()));
          }
        }
        if (committed < ids.length) {
          last = "the server has committed the last update of " + committed + " of " + ids.length + " objects";
        } else {
          last = child.call("CHECK expected=" + expected, CALL);
          if (ChildProcess.word(last.split(" "), "behind", "?").equals("0")) {
            return (System.nanoTime() - t0) / 1e9;
          }
        }
        Measure.sleepMillis(500);
      }
      System.out.println("not converged within " + timeout.toSeconds() + " s: " + last);
      return -1;
    }

    private boolean report(
        Windows w, double tolerance, double convergeAfterStop, double convergeS, String end) {
      System.out.println();
      System.out.println("=".repeat(100));
      System.out.printf(
          Locale.ROOT,
          "windows: reference %s (%d samples), last %s (%d samples)%n",
          w.reference(), in(w.refFrom(), w.refTo()).size(), w.last(), in(w.lastFrom(), w.lastTo()).size());
      boolean pass = flat("server heap after full GC (MB)", w, tolerance, s -> s.heap() / 1048576.0);
      pass &= flat("server open file descriptors", w, tolerance, s -> s.fds());
      for (String line :
          List.of(
              "delivery rate (frames/s): " + range(s -> s.framesPerS(), 0),
              "AoI p99 at the subscribers (ms): " + range(s -> s.aoiP99(), 0),
              "published (updates/s): " + range(s -> s.publishedPerS(), 0))) {
        System.out.println("  " + line);
      }
      String[] e = end.split(" ");
      long reconnects = Long.parseLong(ChildProcess.word(e, "reconnects", "-1"));
      long linkEnds = Long.parseLong(ChildProcess.word(e, "linkEnds", "-1"));
      long open = Long.parseLong(ChildProcess.word(e, "open", "-1"));
      long regressions = Long.parseLong(ChildProcess.word(e, "regressions", "-1"));
      pass &=
          target(
              convergeAfterStop >= 0,
              String.format(
                  Locale.ROOT,
                  "no data lost: every subscriber holds the last version of every object (%s)",
                  convergeAfterStop >= 0
                      ? "converged " + Measure.fmt(convergeAfterStop, 1) + " s after the producer stopped"
                      : "not within " + Measure.fmt(convergeS, 0) + " s"));
      pass &= target(regressions == 0, "no version regressed at any subscriber (" + regressions + ")");
      long drops = serverDrops + subscriberDrops;
      pass &=
          target(
              reconnects == linkEnds && linkEnds >= drops && open == c.clients,
              String.format(
                  Locale.ROOT,
                  "every link that ended reconnected (%d ended: %d dropped by the harness, %d others,"
                      + " e.g. by keepalive; %d reconnects; %d of %d open)",
                  linkEnds, drops, linkEnds - drops, reconnects, open, c.clients));
      return pass;
    }

    private boolean flat(String what, Windows w, double tolerance, ToDoubleFunction<Sample> f) {
      List<Sample> ref = in(w.refFrom(), w.refTo());
      List<Sample> last = in(w.lastFrom(), w.lastTo());
      double r = ref.stream().mapToDouble(f).average().orElse(Double.NaN);
      double l = last.stream().mapToDouble(f).average().orElse(Double.NaN);
      double change = l / r - 1;
      return target(
          Math.abs(change) <= tolerance,
          String.format(
              Locale.ROOT,
              "%s flat: last window mean %.1f (%s) vs reference %.1f (%s): %+.1f %%",
              what, l, minMax(last, f), r, minMax(ref, f), change * 100));
    }

    private static boolean target(boolean ok, String text) {
      System.out.printf(Locale.ROOT, "  [%s] %s%n", ok ? "PASS" : "FAIL", text);
      return ok;
    }

    private List<Sample> in(double from, double to) {
      // The last sample may be taken a little after the end of the load; it belongs to the end.
      return samples.stream()
          .filter(s -> s.t() > from && (s.t() <= to || to >= c.durationS))
          .toList();
    }

    private String range(ToDoubleFunction<Sample> f, int decimals) {
      return "min / mean / max over all samples "
          + Measure.fmt(samples.stream().mapToDouble(f).min().orElse(Double.NaN), decimals) + " / "
          + Measure.fmt(samples.stream().mapToDouble(f).average().orElse(Double.NaN), decimals) + " / "
          + Measure.fmt(samples.stream().mapToDouble(f).max().orElse(Double.NaN), decimals);
    }

    private static String minMax(List<Sample> s, ToDoubleFunction<Sample> f) {
      return "min "
          + Measure.fmt(s.stream().mapToDouble(f).min().orElse(Double.NaN), 1) + ", max "
          + Measure.fmt(s.stream().mapToDouble(f).max().orElse(Double.NaN), 1);
    }

    private static String ms(long v) {
      return v < 0 ? "-" : Measure.fmt(v);
    }

    private static void join(Thread t) {
      try {
        t.join();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException(e);
      }
    }
  }

  /** Open file descriptors of this process (Linux: entries of /proc/self/fd), or -1. */
  static long openFileDescriptors() {
    try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
      return fds.count();
    } catch (IOException | UncheckedIOException e) {
      return -1;
    }
  }

  // ------------------------------------------------------------------ subscribers (child process)

  /**
   * N raw WebSocket subscribers that decode SYNC frames, keep the newest version each holds of each
   * object, and reconnect when their link drops. State per subscriber {@code i}: connected (its
   * connection in {@code connections[i]}) → closed (by either side; {@code connections[i]} cleared)
   * → reconnecting (after {@link #RECONNECT_DELAY}, retried with backoff until connected) →
   * connected, unless {@code CLOSE} was received. Invariant: {@code serials[i × objects + o]} never
   * decreases; a SYNC older than it counts as a regression and changes nothing.
   */
  static final class Subscribers {
    static final Duration RECONNECT_DELAY = Duration.ofMillis(100);
    static final int AOI_PER_TICK = 100;
    private static final Duration AOI_TICK = Duration.ofMillis(100);

    private final FrameCodec codec = new FrameCodec();
    private final AtomicLong frames = new AtomicLong();
    private final AtomicLong regressions = new AtomicLong();
    private final AtomicLong reconnects = new AtomicLong();
    private final AtomicLong linkEnds = new AtomicLong();
    private final AtomicLong connectFailures = new AtomicLong();
    private final Map<String, Integer> index = new HashMap<>();
    private volatile boolean closing;
    private volatile AgeSeries ages = new AgeSeries();
    private int objects;
    private String uri;
    private byte[] hello;
    private AtomicLongArray serials;
    private AtomicLongArray committed;
    /** Per subscriber: the serial of the newest WATERMARK received (the server's one owner). */
    private AtomicLongArray watermarks;
    private volatile Message.Mark ownerMark;
    private AtomicReferenceArray<Connection> connections;
    private ConnectionProvider provider;
    private Disposable sampler;

    String handle(String[] w) {
      return switch (w[0]) {
        case "CONNECT" -> connect(w);
        case "DROP" -> {
          Connection conn = connections.get(Integer.parseInt(ChildProcess.word(w, "i", "-1")));
          if (conn == null) {
            yield "NOT_CONNECTED";
          }
          conn.channel().close();
          yield "DROPPED";
        }
        case "SAMPLE" -> {
          AgeSeries a = ages;
          ages = new AgeSeries();
          long[] sorted = a.window(Long.MIN_VALUE, Long.MAX_VALUE);
          int open = 0;
          for (int i = 0; i < connections.length(); i++) {
            open += connections.get(i) == null ? 0 : 1;
          }
          yield String.format(
              Locale.ROOT,
              "SAMPLE frames=%d linkEnds=%d reconnects=%d open=%d regressions=%d connectFailures=%d"
                  + " aoiN=%d aoiP50=%d aoiP99=%d aoiMax=%d",
              frames.get(), linkEnds.get(), reconnects.get(), open, regressions.get(), connectFailures.get(),
              sorted.length, AgeSeries.percentile(sorted, 50), AgeSeries.percentile(sorted, 99),
              AgeSeries.percentile(sorted, 100));
        }
        case "CHECK" -> check(ChildProcess.word(w, "expected", "").split(","));
        case "CLOSE" -> {
          closing = true;
          sampler.dispose();
          for (int i = 0; i < connections.length(); i++) {
            Connection conn = connections.get(i);
            if (conn != null) {
              conn.dispose();
            }
          }
          provider.dispose();
          yield "CLOSED";
        }
        default -> "ERROR unknown command " + w[0];
      };
    }

    private String connect(String[] w) {
      int n = Integer.parseInt(ChildProcess.word(w, "n", "1"));
      objects = Integer.parseInt(ChildProcess.word(w, "objects", "1"));
      String[] ids = Payload.ids(objects, IDS_SEED);
      for (int o = 0; o < objects; o++) {
        index.put(ids[o], o);
      }
      serials = new AtomicLongArray(n * objects);
      committed = new AtomicLongArray(n * objects);
      watermarks = new AtomicLongArray(n);
      connections = new AtomicReferenceArray<>(n);
      uri = "ws://127.0.0.1:" + ChildProcess.word(w, "port", "0") + ChildProcess.word(w, "path", PATH);
      hello = codec.encode(new Message.Hello(FrameCodec.PROTOCOL_VERSION, "subscriber", List.of(), 0));
      provider = ConnectionProvider.newConnection();
      long t0 = System.nanoTime();
      // A subscriber whose first connect fails (e.g. behind the server's upgrade deadline) keeps
      // trying in the background, like one whose link dropped: it is not left out of the run.
      Flux.range(0, n)
          .flatMap(
              i -> open(i)
                  .doOnError(e -> {
                    connectFailures.incrementAndGet();
                    reopen(i, () -> {});
                  })
                  .onErrorResume(e -> Mono.empty()),
              100)
          .then()
          .block(Duration.ofSeconds(120));
      SplittableRandom random = new SplittableRandom(Long.parseLong(ChildProcess.word(w, "seed", "1")));
      sampler = Flux.interval(AOI_TICK).subscribe(x -> sampleAges(random, n));
      return String.format(
          Locale.ROOT, "CONNECTED %d subscribers, %d failed, in %.1f s",
          n, connectFailures.get(), (System.nanoTime() - t0) / 1e9);
    }

    /** Opens subscriber {@code i}'s connection; completes once its HELLO is written. */
    private Mono<Void> open(int i) {
      return Mono.create(
          sink ->
              HttpClient.create(provider)
                  .headers(h -> h.set("X-Client", Integer.toString(i)))
                  .websocket(WebsocketClientSpec.builder().maxFramePayloadLength(Payload.MAX_FRAME + 8).build())
                  .uri(uri)
                  .handle(
                      (in, out) -> {
                        Connection[] conn = new Connection[1];
                        in.withConnection(x -> conn[0] = x);
                        Channel ch = conn[0].channel();
                        connections.set(i, conn[0]);
                        ch.closeFuture().addListener(f -> closed(i, conn[0]));
                        ch.write(FanOutBenchmark.Subscribers.frame(hello));
                        ch.writeAndFlush(FanOutBenchmark.Subscribers.frame(catchUp(i)))
                            .addListener(f -> sink.success());
                        // A dropped link ends here; closed() reconnects.
                        return in.receiveFrames().doOnNext(f -> onFrame(i, ch, f)).then().onErrorResume(e -> Mono.empty());
                      })
                  .subscribe(x -> {}, sink::error, sink::success));
    }

    private void closed(int i, Connection conn) {
      connections.compareAndSet(i, conn, null);
      if (closing) {
        return;
      }
      linkEnds.incrementAndGet();
      reopen(i, reconnects::incrementAndGet);
    }

    /** Opens subscriber {@code i} again after {@link #RECONNECT_DELAY}, with backoff until it is. */
    private void reopen(int i, Runnable opened) {
      Mono.delay(RECONNECT_DELAY)
          .then(Mono.defer(() -> open(i)))
          .doOnError(e -> connectFailures.incrementAndGet())
          .retryWhen(
              Retry.backoff(Long.MAX_VALUE, RECONNECT_DELAY)
                  .maxBackoff(Duration.ofSeconds(2))
                  .filter(e -> !closing))
          .subscribe(v -> {}, e -> {}, opened);
    }

    private void onFrame(int i, Channel ch, WebSocketFrame f) {
      if (!(f instanceof BinaryWebSocketFrame)) {
        return;
      }
      ByteBuf c = f.content();
      if (c.readableBytes() <= Payload.HEADER_BYTES) {
        return;
      }
      byte[] body = new byte[c.readableBytes() - Payload.HEADER_BYTES];
      c.getBytes(c.readerIndex() + Payload.HEADER_BYTES, body);
      Message m = codec.decode(body);
      if (m instanceof Message.Sync s) {
        frames.incrementAndGet();
        Integer o = index.get(s.key());
        if (o == null) {
          return;
        }
        int slot = i * objects + o;
        long held = serials.get(slot);
        if (s.serial() < held) {
          regressions.incrementAndGet();
        } else if (s.serial() > held) {
          // Only this subscriber's connection writes its slots, one frame at a time.
          committed.set(slot, s.committedAt());
          serials.set(slot, s.serial());
        }
      } else if (m instanceof Message.Watermark wm) {
        // Every state it covers arrived before it on this link: from here on a reconnect asks
        // only for what is newer.
        ownerMark = new Message.Mark(wm.owner(), wm.epoch(), 0);
        watermarks.accumulateAndGet(i, wm.serial(), Math::max);
      } else if (m instanceof Message.Ping p) {
        ch.writeAndFlush(FanOutBenchmark.Subscribers.frame(codec.encode(new Message.Pong(p.nonce()))));
      }
    }

    /**
     * CATCH_UP after HELLO (docs/PROTOCOL.md §4.6): the newest watermark subscriber {@code i}
     * received, so that the server sends only what is newer; none yet: everything.
     */
    private byte[] catchUp(int i) {
      Message.Mark owner = ownerMark;
      long serial = watermarks.get(i);
      return codec.encode(
          new Message.CatchUp(
              owner == null || serial == 0
                  ? List.of()
                  : List.of(new Message.Mark(owner.owner(), owner.epoch(), serial))));
    }

    /** Age of the version held by random (subscriber, object) pairs that hold one. */
    private void sampleAges(SplittableRandom random, int n) {
      long now = System.currentTimeMillis();
      AgeSeries a = ages;
      for (int k = 0; k < AOI_PER_TICK; k++) {
        long at = committed.get(random.nextInt(n) * objects + random.nextInt(objects));
        if (at > 0) {
          a.add(0, now - at);
        }
      }
    }

    /** Compares what every subscriber holds with the expected serial of every object. */
    private String check(String[] expected) {
      long behind = 0;
      long ahead = 0;
      int subscribersBehind = 0;
      long[] want = new long[objects];
      for (int o = 0; o < objects; o++) {
        want[o] = Long.parseLong(expected[o]);
      }
      int n = serials.length() / objects;
      for (int i = 0; i < n; i++) {
        long mine = 0;
        for (int o = 0; o < objects; o++) {
          long held = serials.get(i * objects + o);
          if (held < want[o]) {
            mine++;
          } else if (held > want[o]) {
            ahead++;
          }
        }
        behind += mine;
        subscribersBehind += mine > 0 ? 1 : 0;
      }
      return String.format(
          Locale.ROOT, "CHECK behind=%d ahead=%d subscribersBehind=%d", behind, ahead, subscribersBehind);
    }
  }
}
