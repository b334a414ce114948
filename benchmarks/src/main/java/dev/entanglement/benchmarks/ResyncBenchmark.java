package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Snapshot;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import dev.entanglement.r2dbc.R2dbcStateStore;
import dev.entanglement.transport.LocalTransport;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;
import reactor.core.Disposable;
import dev.entanglement.store.StateStore;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import tools.jackson.databind.json.JsonMapper;

/**
 * B5 — resync volume after a disconnection (catch-up by watermark, docs/PROTOCOL.md §4.6): an
 * end-to-end harness (not JMH).
 *
 * <p>An owner node publishes {@code objects} records (about 100 bytes each, {@link Payload.Item})
 * to a receiver over an in-JVM {@link LocalTransport} link of unlimited bandwidth. Once the receiver
 * holds all of them, the harness waits {@code settle} ms with the link idle so that the owner's
 * WATERMARK (flushed at most once per second when the queue is empty) reaches the receiver. Then:
 *
 * <ol>
 *   <li><b>empty reconnect</b>: the link is closed and a new connection is made with no change in
 *       between; its bytes owner→receiver are the per-owner overhead (HELLO, ROUTES, CATCH_UP,
 *       WATERMARK, …);
 *   <li><b>delta reconnect</b>: the link is closed; while disconnected the owner changes
 *       {@code changed}% of the objects and deletes {@code deleted}% of them; a new connection is
 *       made and the harness measures bytes and frames owner→receiver and the time until the
 *       receiver holds exactly the owner's version of every object (tombstones included).
 * </ol>
 *
 * <p>Two scenarios: {@code memory} (the receiver stays up, only the link drops) and {@code restart}
 * (the receiver has an {@code R2dbcStateStore.h2File} in a temp dir; instead of just disconnecting it
 * is closed, its store closed, and a new node is built on a new store instance over the same file and
 * started). Byte counts are LocalTransport's: frame bodies only, no 8-byte TCP header. The target
 * volume is {@code 1.2 × (encoded SYNC bodies of the changed objects and tombstones) + empty
 * reconnect bytes}; the encoded sizes are computed with the same {@link FrameCodec} the engine uses.
 * The baseline is the full-state resend of a design without catch-up: the encoded SYNC bodies of
 * all objects, as actually measured on the initial sync of the same run.
 *
 * <p>Run (from the repository root):
 *
 * <pre>
 * mvn -B -q -o -pl benchmarks -am package -DskipTests
 * java -cp benchmarks/target/benchmarks.jar dev.entanglement.benchmarks.ResyncBenchmark
 * </pre>
 *
 * <p>Options ({@code name=value}): {@code objects} (100000), {@code changed} percent (1.0), {@code
 * deleted} percent (0.1), {@code scenarios} ({@code memory,restart}), {@code settle} ms (2500),
 * {@code timeout} s per wait (60), {@code seed} (1), {@code drainStore} (true: before closing the
 * receiver in the restart scenario, wait until its store has written everything received and been
 * idle for {@code settle} ms; false closes it right after the link drained, as a process shutting
 * down without that wait would).
 */
public final class ResyncBenchmark {

  private ResyncBenchmark() {}

  static int objects;
  static double changedPct;
  static double deletedPct;
  static long settleMs;
  static long timeoutMs;
  static long seed;
  static boolean drainStore;

  public static void main(String[] args) throws Exception {
    Options o =
        Options.parse(
            args, "objects", "changed", "deleted", "scenarios", "settle", "timeout", "seed",
            "drainStore");
    drainStore = o.bool("drainStore", true);
    objects = o.integer("objects", 100_000);
    changedPct = o.decimal("changed", 1.0);
    deletedPct = o.decimal("deleted", 0.1);
    settleMs = o.longValue("settle", 2500);
    timeoutMs = o.longValue("timeout", 60) * 1000;
    seed = o.longValue("seed", 1);
    List<String> scenarios = o.list("scenarios", "memory,restart");
    System.out.printf(
        Locale.ROOT,
        "B5 ResyncBenchmark %s%n  objects=%d changed=%.2f%% deleted=%.2f%% settle=%dms scenarios=%s"
            + " drainStore=%s java=%s cpus=%d%n",
        ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME),
        objects,
        changedPct,
        deletedPct,
        settleMs,
        scenarios,
        drainStore,
        System.getProperty("java.version"),
        Runtime.getRuntime().availableProcessors());
    boolean allPass = true;
    for (String s : scenarios) {
      allPass &= new Run(s.trim()).run();
    }
    System.out.println(allPass ? "OVERALL: PASS" : "OVERALL: FAIL");
    System.out.flush();
    System.exit(0);
  }

  /** One scenario. */
  static final class Run {
    final String scenario;
    final boolean restart;
    final String[] ids = Payload.ids(objects, seed);
    final String[] labels = Payload.labels(objects);
    final FrameCodec codec = new FrameCodec();
    final JsonMapper json = JsonMapper.builder().build();
    final OwnerId ownerId = OwnerId.of("resync-owner");
    final OwnerId receiverOwner = OwnerId.of("resync-receiver");
    EntanglementNode owner;
    EntanglementNode receiver;
    TrackingStore store;
    Path dir;
    LocalTransport.Connection conn;
    final List<Disposable> attached = new ArrayList<>();
    long lastScanStart;

    Run(String scenario) {
      if (!scenario.equals("memory") && !scenario.equals("restart")) {
        throw new IllegalArgumentException("scenario must be memory or restart: " + scenario);
      }
      this.scenario = scenario;
      this.restart = scenario.equals("restart");
    }

    boolean run() throws Exception {
      System.out.printf("%n=== scenario %s ===%n", scenario);
      owner =
          EntanglementNode.builder().id("owner").owner(ownerId).registry(Payload.registry()).build();
      if (restart) {
        dir = Files.createTempDirectory("resync-bench");
        store = new TrackingStore(R2dbcStateStore.h2File(dir.resolve("receiver")));
      }
      receiver = newReceiver();

      // ---- initial sync
      connect();
      NodeStats o0 = owner.stats();
      long t0 = System.nanoTime();
      Flux.range(0, objects)
          .flatMap(i -> owner.publish(Payload.item(ids[i], 1, i, labels[i])), 256)
          .then()
          .block(Duration.ofMillis(timeoutMs));
      long published = System.nanoTime();
      await("receiver holds all objects", this::converged);
      long received = System.nanoTime();
      settle();
      NodeStats o1 = owner.stats();
      long initialBytes = conn.bytesAtoB();
      long initialFrames = o1.framesSent() - o0.framesSent();
      long fullState = 0;
      for (int i = 0; i < objects; i++) {
        fullState += encodedSize(owner.get(Payload.ITEM, ids[i]).orElseThrow());
      }
      System.out.printf(
          Locale.ROOT,
          "initial sync: publish %d objects %.2f s, receiver complete after %.2f s;"
              + " link a->b %,d B in %,d frames (owner bytesSent delta %,d); computed full state"
              + " %,d B (%.1f B per SYNC body)%n",
          objects,
          (published - t0) / 1e9,
          (received - t0) / 1e9,
          initialBytes,
          initialFrames,
          o1.bytesSent() - o0.bytesSent(),
          fullState,
          (double) fullState / objects);

      // ---- empty reconnect (per-owner overhead)
      Measured empty = reconnect("empty reconnect", () -> {});

      // ---- delta reconnect
      int nChanged = (int) Math.round(objects * changedPct / 100);
      int nDeleted = (int) Math.round(objects * deletedPct / 100);
      SplittableRandom r = new SplittableRandom(seed + 7);
      int[] perm = permutation(objects, r);
      long[] changedBytes = new long[2];
      Measured delta =
          reconnect(
              "delta reconnect",
              () -> {
                List<Integer> ch = new ArrayList<>();
                for (int j = 0; j < nChanged; j++) {
                  ch.add(perm[j]);
                }
                List<Integer> del = new ArrayList<>();
                for (int j = nChanged; j < nChanged + nDeleted; j++) {
                  del.add(perm[j]);
                }
                Flux.fromIterable(ch)
                    .flatMap(i -> owner.publish(Payload.item(ids[i], 2, i, labels[i] + "-v2")), 256)
                    .then()
                    .block(Duration.ofMillis(timeoutMs));
                Flux.fromIterable(del)
                    .flatMap(i -> owner.delete(Payload.ITEM, ids[i]), 256)
                    .then()
                    .block(Duration.ofMillis(timeoutMs));
                for (int i : ch) {
                  changedBytes[0] += encodedSize(owner.get(Payload.ITEM, ids[i]).orElseThrow());
                }
                for (int i : del) {
                  changedBytes[1] += encodedSize(owner.get(Payload.ITEM, ids[i]).orElseThrow());
                }
              });

      long changedTotal = changedBytes[0] + changedBytes[1];
      double target = 1.2 * changedTotal + empty.bytesAtoB;
      // the empty reconnect must carry control frames only (no SYNC): otherwise its bytes are not
      // a per-owner overhead and the target would be meaningless
      boolean emptyOk = empty.frames <= 16 && empty.bytesAtoB <= 4096 && empty.converged;
      boolean pass = delta.bytesAtoB <= target && delta.converged && emptyOk;
      if (!emptyOk) {
        System.out.printf(
            Locale.ROOT,
            "%n[%s] empty reconnect sent %,d B in %d frames: states were resent although nothing"
                + " changed => FAIL%n",
            scenario,
            empty.bytesAtoB,
            empty.frames);
      }
      System.out.printf(
          Locale.ROOT,
          "%n[%s] changed %d objects (%,d B of SYNC bodies) + %d tombstones (%,d B) = %,d B%n"
              + "  per-owner overhead (empty reconnect, a->b): %,d B in %d frames%n"
              + "  delta reconnect a->b: %,d B in %d frames, b->a %,d B; receiver exact after %.0f ms%n"
              + "  target: <= 1.2 x %,d + %,d = %,.0f B -> measured %,d B (%.3f x changed+overhead"
              + " budget) => %s%n"
              + "  baseline full-state resend: %,d B computed (%,d B measured on initial sync);"
              + " delta/full = %.4f (%.1fx less)%n"
              + "  delta bytes above changed+overhead: %,d B (%.2f%%)%n",
          scenario,
          nChanged,
          changedBytes[0],
          nDeleted,
          changedBytes[1],
          changedTotal,
          empty.bytesAtoB,
          empty.frames,
          delta.bytesAtoB,
          delta.frames,
          delta.bytesBtoA,
          delta.convergeMs,
          changedTotal,
          empty.bytesAtoB,
          target,
          delta.bytesAtoB,
          delta.bytesAtoB / target,
          pass ? "PASS" : "FAIL",
          fullState,
          initialBytes,
          (double) delta.bytesAtoB / fullState,
          (double) fullState / delta.bytesAtoB,
          delta.bytesAtoB - changedTotal - empty.bytesAtoB,
          100.0 * (delta.bytesAtoB - changedTotal - empty.bytesAtoB) / Math.max(1, changedTotal));

      disconnect();
      receiver.close().block(Duration.ofSeconds(10));
      owner.close().block(Duration.ofSeconds(10));
      if (store != null) {
        store.close().block(Duration.ofSeconds(10));
        try (Stream<Path> w = Files.walk(dir)) {
          w.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
      }
      return pass;
    }

    record Measured(long bytesAtoB, long bytesBtoA, long frames, double convergeMs, boolean converged) {}

    /** Disconnects (or restarts the receiver), runs {@code change}, reconnects and measures. */
    Measured reconnect(String label, Runnable change) throws Exception {
      disconnect();
      if (restart) {
        if (drainStore) {
          drainStore(label);
        }
        receiver.close().block(Duration.ofSeconds(10));
        store.close().block(Duration.ofSeconds(10));
        receiver = null;
      }
      change.run();
      if (restart) {
        long l0 = System.nanoTime();
        store = new TrackingStore(R2dbcStateStore.h2File(dir.resolve("receiver")));
        receiver = newReceiver();
        System.out.printf(
            Locale.ROOT, "  %s: receiver restarted on its store in %.0f ms%n", label,
            (System.nanoTime() - l0) / 1e6);
      }
      NodeStats o0 = owner.stats();
      long t0 = System.nanoTime();
      connect();
      boolean ok = awaitQuiet(label, this::converged);
      double convergeMs = (System.nanoTime() - t0) / 1e6;
      double lastScanStartMs = (lastScanStart - t0) / 1e6;
      settle();
      NodeStats o1 = owner.stats();
      Measured m =
          new Measured(
              conn.bytesAtoB(), conn.bytesBtoA(), o1.framesSent() - o0.framesSent(), convergeMs, ok);
      System.out.printf(
          Locale.ROOT,
          "  %s: a->b %,d B in %d frames (owner bytesSent delta %,d), b->a %,d B, exact after %.0f ms"
              + " (the successful check of all objects started at %.0f ms)%s%n",
          label,
          m.bytesAtoB,
          m.frames,
          o1.bytesSent() - o0.bytesSent(),
          m.bytesBtoA,
          convergeMs,
          Math.max(0, lastScanStartMs),
          ok ? "" : " (NOT CONVERGED)");
      return m;
    }

    /**
     * Waits until the receiver's store has no write in flight and none started for {@code settle}
     * ms: the received states written behind are then durable (a clean shutdown). The node API has
     * no way to ask for this, so the harness watches the store.
     */
    void drainStore(String label) throws InterruptedException {
      long t0 = System.nanoTime();
      long deadline = System.currentTimeMillis() + timeoutMs;
      while (System.currentTimeMillis() < deadline) {
        if (store.inFlight.get() == 0
            && System.nanoTime() - store.lastActivity.get() >= settleMs * 1_000_000L) {
          System.out.printf(
              Locale.ROOT,
              "  %s: receiver store drained after %.0f ms (%d transactions, %,d object records,"
                  + " %d watermark records written so far)%n",
              label,
              (System.nanoTime() - t0) / 1e6,
              store.writes.get(),
              store.objects.get(),
              store.watermarks.get());
          return;
        }
        Thread.sleep(50);
      }
      System.out.println("  WARNING: receiver store never went idle within the timeout");
    }

    EntanglementNode newReceiver() {
      EntanglementNode.Builder b =
          EntanglementNode.builder().id("receiver").owner(receiverOwner).registry(Payload.registry());
      if (store != null) {
        b.store(store);
      }
      EntanglementNode n = b.build();
      n.start().block(Duration.ofMillis(timeoutMs));
      return n;
    }

    void connect() {
      conn = LocalTransport.create().connect(PeerId.of("owner"), PeerId.of("receiver"));
      attached.add(owner.attach(conn.a()).subscribe(v -> {}, e -> {}));
      attached.add(receiver.attach(conn.b()).subscribe(v -> {}, e -> {}));
    }

    void disconnect() throws InterruptedException {
      conn.close();
      attached.forEach(Disposable::dispose);
      attached.clear();
      awaitQuiet("link down", () -> !owner.isConnected(PeerId.of("receiver")));
    }

    /** Waits until the owner sent nothing for {@code settle} ms (the watermark flush included). */
    void settle() throws InterruptedException {
      long deadline = System.currentTimeMillis() + timeoutMs;
      long last = owner.stats().framesSent();
      long quietSince = System.currentTimeMillis();
      while (System.currentTimeMillis() < deadline) {
        Thread.sleep(100);
        long f = owner.stats().framesSent();
        if (f != last) {
          last = f;
          quietSince = System.currentTimeMillis();
        } else if (System.currentTimeMillis() - quietSince >= settleMs) {
          return;
        }
      }
      System.out.println("  WARNING: owner never went quiet within the timeout");
    }

    /** True when the receiver holds exactly the owner's version of every object. */
    boolean converged() {
      lastScanStart = System.nanoTime();
      for (String id : ids) {
        Optional<Snapshot<Payload.Item>> a = owner.get(Payload.ITEM, id);
        Optional<Snapshot<Payload.Item>> b = receiver.get(Payload.ITEM, id);
        if (a.isEmpty()) {
          continue;
        }
        if (b.isEmpty()) {
          // a tombstone the receiver never heard of is equivalent to not holding the object
          if (a.get().deleted()) {
            continue;
          }
          return false;
        }
        if (!a.get().version().equals(b.get().version()) || a.get().deleted() != b.get().deleted()) {
          return false;
        }
      }
      return true;
    }

    void await(String what, BooleanSupplier cond) throws InterruptedException {
      if (!awaitQuiet(what, cond)) {
        throw new IllegalStateException("timed out: " + what);
      }
    }

    boolean awaitQuiet(String what, BooleanSupplier cond) throws InterruptedException {
      long deadline = System.currentTimeMillis() + timeoutMs;
      while (!cond.getAsBoolean()) {
        if (System.currentTimeMillis() > deadline) {
          System.out.println("  TIMEOUT waiting for: " + what);
          return false;
        }
        Thread.sleep(5);
      }
      return true;
    }

    /** The SYNC body the owner would send for this snapshot. */
    int encodedSize(Snapshot<Payload.Item> s) {
      return codec.encode(
              new Message.Sync(
                  Payload.ITEM.name(),
                  s.key().key(),
                  s.owner().value(),
                  s.version().epoch(),
                  s.version().serial(),
                  s.committedAt(),
                  s.deleted(),
                  s.deleted() ? json.createObjectNode() : json.valueToTree(s.value())))
          .length;
    }
  }

  /** Counts the writes of the receiver's store and tracks whether one is in flight. */
  static final class TrackingStore implements StateStore {
    final StateStore inner;
    final AtomicInteger inFlight = new AtomicInteger();
    final AtomicLong lastActivity = new AtomicLong(System.nanoTime());
    final AtomicLong writes = new AtomicLong();
    final AtomicLong objects = new AtomicLong();
    final AtomicLong watermarks = new AtomicLong();

    TrackingStore(StateStore inner) {
      this.inner = inner;
    }

    @Override
    public Mono<StoredData> load() {
      return inner.load();
    }

    @Override
    public Mono<Void> write(WriteBatch b) {
      return Mono.defer(
          () -> {
            inFlight.incrementAndGet();
            lastActivity.set(System.nanoTime());
            return inner
                .write(b)
                .doOnSuccess(
                    v -> {
                      writes.incrementAndGet();
                      for (WriteBatch.Change ch : b.changes()) {
                        if (ch instanceof WriteBatch.PutObject) {
                          objects.incrementAndGet();
                        } else if (ch instanceof WriteBatch.PutWatermark) {
                          watermarks.incrementAndGet();
                        }
                      }
                    })
                .doFinally(
                    sig -> {
                      inFlight.decrementAndGet();
                      lastActivity.set(System.nanoTime());
                    });
          });
    }

    @Override
    public Mono<Void> close() {
      return inner.close();
    }
  }

  static int[] permutation(int n, SplittableRandom r) {
    int[] p = new int[n];
    for (int i = 0; i < n; i++) {
      p[i] = i;
    }
    for (int i = n - 1; i > 0; i--) {
      int j = r.nextInt(i + 1);
      int t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }
}
