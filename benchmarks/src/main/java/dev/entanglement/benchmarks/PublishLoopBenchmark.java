package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.SyncType;
import dev.entanglement.transport.LocalTransport;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.Disposable;
import reactor.core.scheduler.Schedulers;

/**
 * A publish loop faster than the engine: one thread calls {@code publish} as fast as it can, over a
 * few objects round robin, on an owner node joined to a receiver by an in-JVM link, then stops.
 * What it measures is what the loop leaves behind: how many versions the owner committed for the
 * publishes made, the heap in use when the loop stops (the engine's waiting tasks), and how long
 * after the stop the receiver holds the last value of every object (the backlog's drain).
 *
 * <p>No baseline runs in the same process: the harness compares builds, one jar per build,
 * alternated (docs/BENCHMARKS.md §11). It uses only API that both builds have; a publish whose
 * {@code Mono} ends empty is one a later publish replaced while it waited.
 *
 * <p>Run: {@code java -cp benchmarks/target/benchmarks.jar
 * dev.entanglement.benchmarks.PublishLoopBenchmark}. Options ({@code name=value}): {@code objects}
 * (1000), {@code publishes} (3000000), {@code rounds} (3), {@code timeout} s per drain (120).
 */
public final class PublishLoopBenchmark {
  record Position(String id, long serial, double x, double y) {}

  static final SyncType<Position> POSITION = SyncType.of("Position", Position.class, Position::id);

  private PublishLoopBenchmark() {}

  public static void main(String[] args) throws InterruptedException {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    Options o = Options.parse(args, "objects", "publishes", "rounds", "timeout");
    int objects = o.integer("objects", 1_000);
    int publishes = o.integer("publishes", 3_000_000);
    int rounds = o.integer("rounds", 3);
    Duration timeout = Duration.ofSeconds(o.integer("timeout", 120));
    System.out.println(Measure.header("Publish loop"));
    System.out.printf(Locale.ROOT, "objects=%d publishes=%d rounds=%d%n", objects, publishes, rounds);
    for (int round = 1; round <= rounds; round++) {
      round(round, objects, publishes, timeout);
    }
  }

  private static void round(int round, int objects, int publishes, Duration timeout)
      throws InterruptedException {
    Registry registry = Registry.builder("loop").type(POSITION).build();
    EntanglementNode owner = EntanglementNode.builder().id("owner").owner(OwnerId.of("owner"))
        .registry(registry).build();
    EntanglementNode receiver = EntanglementNode.builder().id("receiver").registry(registry).build();
    LocalTransport.Connection link = LocalTransport.builder().scheduler(Schedulers.parallel()).build()
        .connect(PeerId.of("owner"), PeerId.of("receiver"));
    owner.attach(link.a()).subscribe();
    receiver.attach(link.b()).subscribe();
    for (int k = 0; k < objects; k++) { // every object exists before the loop
      owner.publish(POSITION, new Position("p" + k, 0, 0, 0)).block(Duration.ofSeconds(10));
    }
    // The last value of object k is the one publish i = publishes - ((publishes - k) mod objects)
    // gives; the latch counts the objects whose last value reached the receiver.
    long[] lastSerial = new long[objects];
    for (int k = 0; k < objects; k++) {
      lastSerial[k] = publishes - Math.floorMod(publishes - k, objects);
    }
    AtomicIntegerArray arrived = new AtomicIntegerArray(objects);
    CountDownLatch caughtUp = new CountDownLatch(objects);
    Disposable watching = receiver.watchAll(POSITION).subscribe(s -> {
      Position p = s.value();
      if (p != null) {
        int k = Integer.parseInt(p.id().substring(1));
        if (p.serial() == lastSerial[k] && arrived.compareAndSet(k, 0, 1)) {
          caughtUp.countDown();
        }
      }
    });
    MemoryMXBean memory = ManagementFactory.getMemoryMXBean();
    System.gc();
    long heapBefore = memory.getHeapMemoryUsage().getUsed();
    AtomicLong versions = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    long start = System.nanoTime();
    for (int i = 1; i <= publishes; i++) {
      int k = i % objects;
      owner.publish(POSITION, new Position("p" + k, i, k, i))
          .subscribe(s -> versions.incrementAndGet(), e -> failed.incrementAndGet(), () -> {});
    }
    long stopped = System.nanoTime();
    long heapAtStop = memory.getHeapMemoryUsage().getUsed();
    boolean all = caughtUp.await(timeout.toNanos(), TimeUnit.NANOSECONDS);
    long drained = System.nanoTime();
    watching.dispose();
    // Once the last publish of every object took effect, every publish before it has ended.
    long endedEmpty = publishes - versions.get() - failed.get();
    System.out.printf(Locale.ROOT,
        "round %d: %,d publishes in %.2f s (%,.0f/s); versions committed %,d; ended empty %,d; failed %,d;"
            + " heap at the stop +%,d MB; receiver had every last value %s after the stop%n",
        round, publishes, (stopped - start) / 1e9, publishes / ((stopped - start) / 1e9), versions.get(),
        endedEmpty, failed.get(), (heapAtStop - heapBefore) >> 20,
        all ? String.format(Locale.ROOT, "%.3f s", (drained - stopped) / 1e9)
            : "not within " + timeout.toSeconds() + " s (" + (objects - caughtUp.getCount()) + " of "
                + objects + ")");
    link.close();
    owner.close().block(Duration.ofSeconds(30));
    receiver.close().block(Duration.ofSeconds(30));
  }
}
