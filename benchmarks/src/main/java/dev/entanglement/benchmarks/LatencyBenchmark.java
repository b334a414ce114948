package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.Outcome;
import dev.entanglement.PeerId;
import dev.entanglement.netty.TcpClientTransport;
import dev.entanglement.netty.TcpServerTransport;
import dev.entanglement.netty.TlsConfig;
import dev.entanglement.transport.Link;
import io.netty.buffer.ByteBuf;
import io.netty.handler.ssl.OpenSsl;
import io.netty.handler.ssl.SslContext;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.tcp.TcpClient;
import reactor.netty.tcp.TcpServer;

/**
 * B4, request latency: sequential {@code propose → Committed} round trips from a node to the owner
 * of an object over loopback TCP (plain and mutual TLS), against a raw Reactor Netty ping-pong of
 * the same byte size in the same run.
 *
 * <p>Two processes: this one proposes (a node that holds the object, and the raw ping client); a
 * child process started from the same jar owns the object (owner node behind {@link
 * TcpServerTransport}, which commits every proposal by the registry's default decision since no
 * {@code proposals()} subscriber exists) and runs the raw echo server. Each round trip is timed on
 * the calling thread, from the call to the return of {@code block()}:
 *
 * <ul>
 *   <li><b>ours</b>: {@code proposer.propose(ITEM, key, Map.of("serial", i)).block()}, checked to be
 *       {@link Outcome.Committed};
 *   <li><b>raw</b>: a {@code [len][flags][body]} frame written with {@code writeAndFlush} from the
 *       calling thread, answered by the echo server (on its event loop) with one frame; the reply
 *       completes a {@code Mono} the caller blocks on. Request and reply sizes are the bytes ours
 *       puts on the wire per round trip in each direction (measured from the nodes' counters during
 *       ours' warm-up; ours' owner answers with a RESPONSE and also floods the new SYNC).
 * </ul>
 *
 * <p>The table gives p10 and p25 besides p50: on a virtual machine both designs' round trips fall
 * into a fast mode and a slow one (by whether a thread had to be woken on an idle vCPU), and the
 * share of each decides where p50 falls; the low percentiles show each design's fast mode.
 *
 * <p>Which mode a round trip takes depends on where the kernel wakes each thread, not on the design,
 * so each mode is measured in up to three {@linkplain Placement placements} of the two processes,
 * set with {@code taskset}: {@code free} (where the kernel puts them), {@code same} (both on one
 * CPU: every round trip in the fast mode) and {@code split} (one CPU each: every round trip crosses
 * CPUs twice). Both designs are measured in each placement, in the same blocks, and each placement
 * has its own target line. A placement that cannot be set is skipped, and the output says why:
 * without {@code taskset} only {@code free} is measured; with a single CPU, {@code split} is
 * skipped.
 *
 * <p>Designs alternate in blocks of {@code block} round trips. Options ({@code name=value}): {@code
 * warmup} round trips per design and mode (30000), {@code count} measured per placement (20000),
 * {@code block} (1000), {@code modes} (plain,tls), {@code tlsProvider} (openssl|jdk), {@code
 * target} p50 ratio (1.5), {@code designs} (raw,ours; with one design no target is judged: for
 * profiling one design alone), {@code placements} (free,same,split), {@code quietJit} (0.01).
 * After a placement is set, each design runs 5,000 round trips (at most {@code warmup}), then more
 * in steps of that size until, over two steps in a row, both processes' JIT compiler threads used
 * at most {@code quietJit} of each step's time, or 4 × {@code warmup} ran ({@link #settle}): on one
 * CPU a compilation still under way takes the round trips' time, and ours has more code to compile
 * than raw. Smoke run:
 * {@code warmup=500 count=2000}.
 *
 * <p>{@code forks=N} measures the {@code free} placement instead with each design alone in its own
 * processes, {@code N} times each ({@link LatencyForks}): in {@code free}, alternating blocks in the
 * same processes couple the designs through the scheduler. {@code sizes} ({@code
 * mode:request/answer,...}, bytes with headers) gives the raw ping-pong's sizes, so that raw alone
 * needs no ours to measure them; the forks set it.
 */
public final class LatencyBenchmark {
  private static final Duration CALL = Duration.ofSeconds(30);
  private static final Duration RTT_TIMEOUT = Duration.ofSeconds(10);

  private LatencyBenchmark() {}

  public static void main(String[] args) throws Exception {
    for (String a : args) {
      if (a.equals("role=child")) {
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        ChildProcess.serve(new Owner()::handle);
        return;
      }
    }
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    Options o = Options.parse(
            args, "warmup", "count", "block", "modes", "tlsProvider", "target", "designs", "placements",
            "quietJit", "forks", "sizes");
    if (o.integer("forks", 0) > 0) {
      LatencyForks.run(o, args);
      return;
    }
    int warmup = o.integer("warmup", 30_000);
    int count = o.integer("count", 20_000);
    int block = Math.max(1, Math.min(o.integer("block", 1000), count));
    List<String> modes = o.list("modes", "plain,tls");
    boolean jdk = o.string("tlsProvider", "openssl").equals("jdk");
    double target = o.decimal("target", 1.5);
    List<String> designs = o.list("designs", "raw,ours");
    double quietJit = o.decimal("quietJit", 0.01);
    Map<String, int[]> givenSizes = sizes(o.string("sizes", ""));
    List<Placement> placements = new ArrayList<>();
    for (String p : o.list("placements", "free,same,split")) {
      placements.add(Placement.of(p));
    }

    System.out.println(Measure.header("B4 latency"));
    System.out.printf(
        Locale.ROOT,
        "warmup=%d count=%d block=%d modes=%s tlsProvider=%s (OpenSSL available: %s) placements=%s%n",
        warmup, count, block, modes, jdk ? "jdk" : "openssl", OpenSsl.isAvailable(),
        placements.stream().map(p -> p.label).toList());

    BenchPki pki = new BenchPki("latency-ca");
    BenchPki.Identity serverId = pki.issue("owner");
    BenchPki.Identity clientId = pki.issue("proposer");
    Path pem = Files.createTempDirectory("entanglement-bench-pki");
    serverId.writePem(pem, "server");
    TlsConfig clientTls = clientId.tls(jdk);
    if (modes.contains("tls")) {
      System.out.println("TLS provider: " + clientTls.provider());
    }

    List<String> lines = new ArrayList<>();
    List<String> threads = new ArrayList<>();
    try (ChildProcess child = ChildProcess.start(LatencyBenchmark.class, List.of(), List.of())) {
      String ports =
          child.call("START modes=" + String.join(",", modes) + " pem=" + pem + " jdk=" + jdk, CALL);
      List<Integer> selfCpus = CpuPinning.allowedCpus(ProcessHandle.current().pid());
      List<Integer> childCpus = CpuPinning.allowedCpus(child.pid());
      boolean tasksetRuns = CpuPinning.available();
      placements.removeIf(
          p -> {
            String why = p.unavailable(selfCpus, childCpus, tasksetRuns);
            if (why != null) {
              System.out.println("placement " + p.label + " skipped: " + why);
            }
            return why != null;
          });
      if (placements.isEmpty()) {
        placements.add(Placement.FREE);
      }
      boolean pinning = placements.stream().anyMatch(p -> p != Placement.FREE);
      if (pinning) {
        System.out.println("placements: proposer may run on CPUs " + selfCpus + ", owner on " + childCpus);
      }
      Map<String, Integer> portOf = new LinkedHashMap<>();
      for (String w : ports.split(" ")) {
        int eq = w.indexOf('=');
        if (eq > 0) {
          portOf.put(w.substring(0, eq), Integer.parseInt(w.substring(eq + 1)));
        }
      }
      for (String mode : modes) {
        boolean tls = mode.equals("tls");
        int[] given = givenSizes.get(mode);
        // Raw alone with its sizes given: ours is not even connected (see LatencyForks).
        Proposer ours =
            designs.contains("ours") || given == null
                ? new Proposer(
                    portOf.get("ours-" + mode), tls ? clientTls : null, tls ? serverId.fingerprint() : null, mode)
                : null;
        int reqSize;
        int respSize;
        if (ours != null) {
          // Warm ours first: it also tells the byte sizes the raw ping-pong must carry.
          NodeStats p0 = ours.node.stats();
          String o0 = child.call("STATS mode=" + mode, CALL);
          ours.run(warmup);
          NodeStats p1 = ours.node.stats();
          String o1 = child.call("STATS mode=" + mode, CALL);
          double reqBytes =
              (p1.bytesSent() - p0.bytesSent() + 8.0 * (p1.framesSent() - p0.framesSent())) / warmup;
          double reqFrames = (double) (p1.framesSent() - p0.framesSent()) / warmup;
          long ob0 = Long.parseLong(ChildProcess.word(o0.split(" "), "bytesSent", "0"));
          long ob1 = Long.parseLong(ChildProcess.word(o1.split(" "), "bytesSent", "0"));
          long of0 = Long.parseLong(ChildProcess.word(o0.split(" "), "framesSent", "0"));
          long of1 = Long.parseLong(ChildProcess.word(o1.split(" "), "framesSent", "0"));
          double respBytes = (ob1 - ob0 + 8.0 * (of1 - of0)) / warmup;
          double respFrames = (double) (of1 - of0) / warmup;
          reqSize = given != null ? given[0] : (int) Math.round(reqBytes);
          respSize = given != null ? given[1] : (int) Math.round(respBytes);
          System.out.printf(
              Locale.ROOT,
              "[%s] ours per round trip: request %.2f frames / %.1f B on the wire, answer %.2f frames / %.1f B"
                  + " → raw ping %d B, pong %d B (headers included%s)%n",
              mode, reqFrames, reqBytes, respFrames, respBytes, reqSize, respSize,
              given != null ? ", as given" : "");
        } else {
          reqSize = given[0];
          respSize = given[1];
          System.out.printf(Locale.ROOT, "[%s] raw ping %d B, pong %d B (headers included, as given)%n", mode, reqSize, respSize);
        }

        Pinger raw = null;
        if (designs.contains("raw")) {
          raw = new Pinger(portOf.get("raw-" + mode), tls ? ThroughputBenchmark.rawClientContext(clientId, jdk) : null, reqSize, respSize);
          raw.run(warmup);
        }

        for (Placement placement : placements) {
          String label = mode + "/" + placement.label;
          if (pinning) {
            try {
              placement.apply(ProcessHandle.current().pid(), child.pid(), selfCpus, childCpus);
            } catch (IllegalStateException e) {
              System.out.println("[" + label + "] skipped: " + e.getMessage());
              continue;
            }
          }
          // Before anything is counted, let the threads settle where they now run and let both
          // processes' compilers finish: on one CPU a compilation takes the round trips' time.
          System.out.println(
              "[" + label + "] " + settle(ours, raw, designs, child, Math.min(warmup, 5000), 4 * warmup, quietJit));
          // Where the CPU goes, per thread and per design, over a separate stretch of round trips.
          int probe = Math.min(5000, Math.max(1000, count / 4));
          for (String design : List.of("ours", "raw")) {
            if (!designs.contains(design)) {
              continue;
            }
            var before = Measure.threadCpu();
            child.call("TMARK", CALL);
            if (design.equals("ours")) {
              ours.run(probe);
            } else {
              raw.run(probe);
            }
            threads.add(
                String.format(
                    Locale.ROOT,
                    "  %s-%s, %d round trips: proposer threads: %s%n      owner threads: %s",
                    design, label, probe, Measure.threadCpuDelta(before, 6), child.call("TCPU", CALL)));
          }

          long errorsBefore = ours == null ? 0 : ours.errors;
          long[] oursNs = new long[count];
          long[] rawNs = new long[count];
          long oursCpu = 0;
          long rawCpu = 0;
          for (int done = 0, b = 0; done < count; b++) {
            int n = Math.min(block, count - done);
            boolean oursFirst = b % 2 == 0;
            for (int k = 0; k < 2; k++) {
              long c0 = Measure.processCpuNanos();
              boolean oursTurn = (k == 0) == oursFirst;
              if (!designs.contains(oursTurn ? "ours" : "raw")) {
                continue;
              }
              if (oursTurn) {
                System.arraycopy(ours.run(n), 0, oursNs, done, n);
                oursCpu += Measure.processCpuNanos() - c0;
              } else {
                System.arraycopy(raw.run(n), 0, rawNs, done, n);
                rawCpu += Measure.processCpuNanos() - c0;
              }
            }
            done += n;
          }
          Arrays.sort(oursNs);
          Arrays.sort(rawNs);
          if (designs.contains("ours")) {
            lines.add(row("ours-" + label, oursNs, oursCpu));
          }
          if (designs.contains("raw")) {
            lines.add(row("raw-" + label, rawNs, rawCpu));
          }
          if (designs.contains("ours") && designs.contains("raw")) {
            double ratio = (double) Measure.percentile(oursNs, 50) / Measure.percentile(rawNs, 50);
            double ratio99 = (double) Measure.percentile(oursNs, 99) / Measure.percentile(rawNs, 99);
            lines.add(
                String.format(
                    Locale.ROOT,
                    "TARGET [%s] %s: ours p50 ≤ %.1f × raw p50 (ratio %.2f; p99 ratio %.2f; ours errors %d; sizes ping %d B / pong %d B)",
                    ratio <= target ? "PASS" : "FAIL", label, target, ratio, ratio99, ours.errors - errorsBefore,
                    reqSize, respSize));
          } else if (designs.contains("ours")) {
            lines.add(String.format(Locale.ROOT, "TARGET [----] %s: ours alone, no target judged; ours errors %d",
                label, ours.errors - errorsBefore));
          }
        }
        if (pinning) {
          try {
            Placement.FREE.apply(ProcessHandle.current().pid(), child.pid(), selfCpus, childCpus);
          } catch (IllegalStateException e) {
            System.out.println("[" + mode + "] the original CPUs could not be restored: " + e.getMessage());
          }
        }
        if (ours != null) {
          ours.close();
        }
        if (raw != null) {
          raw.close();
        }
      }
      String ownerStats = child.call("STATS mode=" + modes.get(0), CALL);
      System.out.println();
      System.out.println("=".repeat(115));
      System.out.printf(
          Locale.ROOT,
          "%-17s %9s %9s %9s %9s %9s %9s %9s %9s %9s %14s%n",
          "design", "n", "p10 µs", "p25 µs", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "mean µs",
          "proposer CPU µs");
      List<String> targets = new ArrayList<>();
      for (String l : lines) {
        if (l.startsWith("TARGET ")) {
          targets.add(l.substring(7));
        } else {
          System.out.println(l);
        }
      }
      System.out.println();
      System.out.println("owner (" + modes.get(0) + "): " + ownerStats);
      System.out.println();
      System.out.println("CPU by thread (ms, digits in names folded):");
      threads.forEach(System.out::println);
      System.out.println();
      System.out.println("targets:");
      targets.forEach(t -> System.out.println("  " + t));
    }
    System.out.flush();
    System.exit(0);
  }

  /** Consecutive quiet steps {@link #settle} waits for. */
  private static final int QUIET_STEPS = 2;

  /**
   * Runs {@code step} round trips of each design, then more in steps of the same size until, over
   * {@value #QUIET_STEPS} steps in a row, both processes' JIT compiler threads used at most {@code
   * quietShare} of each step's time (or {@code most} round trips of each ran): the measured round
   * trips are then those of compiled code, for both designs, rather than of a compilation backlog.
   * The compilers' CPU is read per thread ({@link Measure#compilerCpu}), so a long compilation under
   * way counts in the step it runs in. Says what it did.
   */
  private static String settle(
      Proposer ours,
      Pinger raw,
      List<String> designs,
      ChildProcess child,
      int step,
      int most,
      double quietShare) {
    long t0 = System.nanoTime();
    long errorsBefore = ours == null ? 0 : ours.errors;
    int ran = 0;
    int quiet = 0;
    double share;
    do {
      long wall = System.nanoTime();
      var mine = Measure.compilerCpu();
      child.call("JITMARK", CALL);
      if (designs.contains("ours")) {
        ours.run(step);
      }
      if (designs.contains("raw")) {
        raw.run(step);
      }
      ran += step;
      long compiling =
          Measure.compilerCpuBetween(mine, Measure.compilerCpu())
              + Long.parseLong(child.call("JITCPU", CALL));
      share = (double) compiling / (System.nanoTime() - wall);
      quiet = share <= quietShare ? quiet + 1 : 0;
    } while (quiet < QUIET_STEPS && ran < most);
    return String.format(
        Locale.ROOT,
        "settled: %d round trips of each design in %.1f s; compilers' share of the last %d: %.1f %%%s;"
            + " ours errors %d",
        ran, (System.nanoTime() - t0) / 1e9, step, share * 100,
        quiet < QUIET_STEPS ? " (not quiet: measured anyway)" : "",
        ours == null ? 0 : ours.errors - errorsBefore);
  }

  /** Parses {@code sizes}: {@code mode:request/answer} bytes, headers included, comma-separated. */
  static Map<String, int[]> sizes(String option) {
    Map<String, int[]> out = new LinkedHashMap<>();
    for (String entry : option.split(",")) {
      if (entry.isBlank()) {
        continue;
      }
      String[] modeAndSizes = entry.split(":");
      String[] reqResp = modeAndSizes.length == 2 ? modeAndSizes[1].split("/") : new String[0];
      if (reqResp.length != 2) {
        throw new IllegalArgumentException("sizes: expected mode:request/answer, got '" + entry + "'");
      }
      out.put(modeAndSizes[0], new int[] {Integer.parseInt(reqResp[0]), Integer.parseInt(reqResp[1])});
    }
    return out;
  }

  private static String row(String name, long[] sorted, long cpuNanos) {
    double mean = Arrays.stream(sorted).average().orElse(0);
    return String.format(
        Locale.ROOT,
        "%-17s %9d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %14.1f",
        name,
        sorted.length,
        Measure.percentile(sorted, 10) / 1e3,
        Measure.percentile(sorted, 25) / 1e3,
        Measure.percentile(sorted, 50) / 1e3,
        Measure.percentile(sorted, 90) / 1e3,
        Measure.percentile(sorted, 99) / 1e3,
        Measure.percentile(sorted, 99.9) / 1e3,
        sorted[sorted.length - 1] / 1e3,
        mean / 1e3,
        cpuNanos / 1e3 / sorted.length);
  }

  /**
   * Where the proposer's and the owner's processes run while round trips are measured. Both designs
   * are measured in the same placement, alternating blocks, as in every placement.
   */
  enum Placement {
    /** Wherever the kernel wakes each thread: every CPU each process may use. */
    FREE("free"),
    /**
     * Both processes on one CPU: no wake-up crosses CPUs, so a round trip costs its work and its
     * context switches, and the idle driver never runs in the middle of one.
     */
    SAME("same"),
    /** The proposer on one CPU, the owner on another: every round trip wakes a thread on each. */
    SPLIT("split");

    final String label;

    Placement(String label) {
      this.label = label;
    }

    static Placement of(String label) {
      for (Placement p : values()) {
        if (p.label.equals(label)) {
          return p;
        }
      }
      throw new IllegalArgumentException("unknown placement '" + label + "'; known: free, same, split");
    }

    /** Why this placement cannot be set here, or null if it can. */
    String unavailable(List<Integer> selfCpus, List<Integer> childCpus, boolean tasksetRuns) {
      if (this == FREE) {
        return null;
      }
      if (selfCpus.isEmpty() || childCpus.isEmpty()) {
        return "the CPUs each process may use are unknown (not Linux?)";
      }
      if (!tasksetRuns) {
        return "taskset (util-linux) is not installed";
      }
      if (this == SAME && childCpus.stream().noneMatch(selfCpus::contains)) {
        return "the two processes share no CPU";
      }
      if (this == SPLIT && splitCpus(selfCpus, childCpus) == null) {
        return "only one CPU is available, so the processes cannot be split";
      }
      return null;
    }

    /** Pins both processes for this placement; FREE gives each its original CPUs back. */
    void apply(long self, long child, List<Integer> selfCpus, List<Integer> childCpus) {
      switch (this) {
        case FREE -> {
          CpuPinning.pin(self, selfCpus);
          CpuPinning.pin(child, childCpus);
        }
        case SAME -> {
          int cpu = childCpus.stream().filter(selfCpus::contains).reduce((a, b) -> b).orElseThrow();
          CpuPinning.pin(self, List.of(cpu));
          CpuPinning.pin(child, List.of(cpu));
        }
        case SPLIT -> {
          int[] cpus = java.util.Objects.requireNonNull(splitCpus(selfCpus, childCpus));
          CpuPinning.pin(self, List.of(cpus[0]));
          CpuPinning.pin(child, List.of(cpus[1]));
        }
      }
    }

    /** Two different CPUs, one the proposer may use and one the owner may use, or null. */
    private static int[] splitCpus(List<Integer> selfCpus, List<Integer> childCpus) {
      for (int a : selfCpus) {
        for (int b : childCpus) {
          if (a != b) {
            return new int[] {a, b};
          }
        }
      }
      return null;
    }
  }

  // ------------------------------------------------------------------ this process

  /** A node that holds the object and proposes changes to its owner. */
  static final class Proposer {
    final EntanglementNode node;
    long errors;
    private long serial;

    Proposer(int port, TlsConfig tls, PeerId serverPeer, String mode) {
      node = EntanglementNode.builder().id("proposer-" + mode).registry(Payload.registry()).build();
      PeerId expect = serverPeer != null ? serverPeer : PeerId.of("owner-" + mode);
      TcpClientTransport.Builder b = TcpClientTransport.builder(node).remote("127.0.0.1", port).expect(expect);
      if (tls != null) {
        b.tls(tls);
      }
      Link link = b.build().connect().block(Duration.ofSeconds(10));
      node.attach(link).subscribe();
      long deadline = System.nanoTime() + 10_000_000_000L;
      while (node.get(Payload.ITEM, Owner.KEY).isEmpty() && System.nanoTime() < deadline) {
        Measure.sleepMillis(5);
      }
      if (node.get(Payload.ITEM, Owner.KEY).isEmpty()) {
        throw new IllegalStateException("the proposer never received the object");
      }
    }

    long[] run(int n) {
      long[] out = new long[n];
      for (int i = 0; i < n; i++) {
        long v = ++serial;
        long t0 = System.nanoTime();
        Outcome<Payload.Item> r =
            node.propose(Payload.ITEM, Owner.KEY, Map.of("serial", v)).block(RTT_TIMEOUT);
        out[i] = System.nanoTime() - t0;
        if (!(r instanceof Outcome.Committed<Payload.Item> c) || c.snapshot().value().serial() != v) {
          errors++;
        }
      }
      return out;
    }

    void close() {
      node.close().block(Duration.ofSeconds(5));
    }
  }

  /** The raw ping client: one frame out, one frame back, sequentially. */
  static final class Pinger {
    private final Connection connection;
    private final int reqBody;
    private final int respBody;
    private volatile MonoSink<Integer> pending;

    Pinger(int port, SslContext ssl, int reqSize, int respSize) {
      this.reqBody = Math.max(4, reqSize - Payload.HEADER_BYTES);
      this.respBody = Math.max(0, respSize - Payload.HEADER_BYTES);
      TcpClient c = TcpClient.create().host("127.0.0.1").port(port);
      if (ssl != null) {
        c = c.secure(spec -> spec.sslContext(ssl));
      }
      connection =
          c.doOnConnected(conn -> conn.addHandlerLast("frames", Payload.decoder()))
              .connectNow(Duration.ofSeconds(10));
      connection
          .inbound()
          .receive()
          .subscribe(
              buf -> {
                MonoSink<Integer> s = pending;
                pending = null;
                if (s != null) {
                  s.success(buf.readableBytes());
                }
              });
    }

    long[] run(int n) {
      long[] out = new long[n];
      for (int i = 0; i < n; i++) {
        long t0 = System.nanoTime();
        Integer got =
            Mono.<Integer>create(
                    sink -> {
                      pending = sink;
                      ByteBuf f = connection.channel().alloc().buffer(Payload.HEADER_BYTES + reqBody);
                      f.writeInt(reqBody).writeInt(0).writeInt(respBody);
                      f.writeZero(reqBody - 4);
                      connection.channel().writeAndFlush(f);
                    })
                .block(RTT_TIMEOUT);
        out[i] = System.nanoTime() - t0;
        if (got == null || got != respBody) {
          throw new IllegalStateException("bad pong: " + got);
        }
      }
      return out;
    }

    void close() {
      connection.dispose();
    }
  }

  // ------------------------------------------------------------------ child process

  /** The owner nodes and raw echo servers. */
  static final class Owner {
    static final String KEY = "00000000-0000-0000-0000-000000000001";
    private final Map<String, EntanglementNode> nodes = new LinkedHashMap<>();
    private final List<DisposableServer> servers = new ArrayList<>();
    private Map<Long, Object[]> threadMark = Map.of();
    private Map<Long, Long> jitMark = Map.of();

    String handle(String[] w) {
      try {
        return switch (w[0]) {
          case "START" -> start(
              List.of(ChildProcess.word(w, "modes", "plain").split(",")),
              Path.of(ChildProcess.word(w, "pem", ".")),
              Boolean.parseBoolean(ChildProcess.word(w, "jdk", "false")));
          case "TMARK" -> {
            threadMark = Measure.threadCpu();
            yield "OK";
          }
          case "TCPU" -> Measure.threadCpuDelta(threadMark, 6);
          case "JITMARK" -> {
            jitMark = Measure.compilerCpu();
            yield "OK";
          }
          case "JITCPU" -> Long.toString(Measure.compilerCpuBetween(jitMark, Measure.compilerCpu()));
          case "STATS" -> {
            NodeStats s = nodes.get(ChildProcess.word(w, "mode", "plain")).stats();
            yield String.format(
                Locale.ROOT,
                "framesSent=%d bytesSent=%d framesReceived=%d statesEncoded=%d pendingDecisions=%d errorsReceived=%d",
                s.framesSent(), s.bytesSent(), s.framesReceived(), s.statesEncoded(),
                s.pendingDecisions(), s.errorsReceived());
          }
          default -> "ERROR unknown command " + w[0];
        };
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    }

    private String start(List<String> modes, Path pem, boolean jdk) throws Exception {
      StringBuilder ports = new StringBuilder("PORTS");
      for (String mode : modes) {
        boolean tls = mode.equals("tls");
        EntanglementNode node =
            EntanglementNode.builder().id("owner-" + mode).registry(Payload.registry()).build();
        nodes.put(mode, node);
        node.publish(Payload.ITEM, Payload.item(KEY, 0, 1, "latency")).block(Duration.ofSeconds(5));
        TcpServerTransport.Builder b =
            TcpServerTransport.builder(node).port(0).unknownDestination(p -> Mono.just(true));
        if (tls) {
          b.tls(BenchPki.readTls(pem, "server", jdk));
        }
        DisposableServer s = b.build().bind().block(Duration.ofSeconds(10));
        servers.add(s);
        ports.append(" ours-").append(mode).append('=').append(s.port());

        TcpServer raw = TcpServer.create().host("127.0.0.1").port(0);
        if (tls) {
          SslContext ctx = ThroughputBenchmark.rawServerContext(pem, jdk);
          raw = raw.secure(spec -> spec.sslContext(ctx));
        }
        DisposableServer r =
            raw.doOnConnection(c -> c.addHandlerLast("frames", Payload.decoder()))
                .handle(
                    (in, out) -> {
                      Connection[] c = new Connection[1];
                      in.withConnection(x -> c[0] = x);
                      return in.receive()
                          .doOnNext(
                              req -> {
                                int respBody = req.getInt(req.readerIndex());
                                ByteBuf f = c[0].channel().alloc().buffer(Payload.HEADER_BYTES + respBody);
                                f.writeInt(respBody).writeInt(0).writeZero(respBody);
                                c[0].channel().writeAndFlush(f);
                              })
                          .then();
                    })
                .bindNow(Duration.ofSeconds(10));
        servers.add(r);
        ports.append(" raw-").append(mode).append('=').append(r.port());
      }
      return ports.toString();
    }
  }
}
