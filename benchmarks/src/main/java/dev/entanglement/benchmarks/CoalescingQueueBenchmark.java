package dev.entanglement.benchmarks;

import dev.entanglement.internal.CoalescingQueue;
import java.util.ArrayDeque;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.BinaryOperator;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.Blackhole;

/**
 * Throughput of the outbound queue of a destination, {@link CoalescingQueue}, against two naive
 * alternatives, under the same pre-computed workload, in the same run.
 *
 * <p>Workload: a script of {@value #SCRIPT_LENGTH} operations, {@code offersPerPoll} offers then
 * one poll, repeated; each offered key is drawn from {@code keys} keys with a Zipf skew of
 * exponent {@code zipf} (rank 1 is the hottest key). The script, the keys and the entries are built
 * in {@link #setUp()}, so the measured loop does no random generation and no allocation of its
 * own. One benchmark operation is one queue operation (an offer or a poll): the score is
 * offers + polls per second. Single-threaded, as the engine confines each queue to one serial
 * executor.
 *
 * <ul>
 *   <li>{@code coalescingQueue}: ours; one priority, last entry wins on merge.
 *   <li>{@code unboundedDeque}: an {@link ArrayDeque} of every update (no coalescing). With more
 *       offers than polls it grows without bound; to keep the benchmark's memory bounded it is
 *       cleared whenever it reaches {@value #DEQUE_CAP} entries, which flatters it (the real design
 *       keeps growing; see {@code ConvergenceBenchmark} for what that does to latency).
 *   <li>{@code synchronizedLinkedHashMap}: {@code Collections.synchronizedMap(new LinkedHashMap<>())}
 *       used as a coalescing FIFO: {@code put} keeps the position of a present key and replaces its
 *       value; poll removes the first entry through an iterator, holding the map's lock.
 *   <li>{@code linkedHashMap}: the same without the lock, as a lower bound for a single-priority
 *       coalescing FIFO (what the priority buckets of {@link CoalescingQueue} cost).
 * </ul>
 *
 * <p>Queues are recreated empty before every iteration.
 *
 * <p>Run (from the repository root):
 *
 * <pre>
 * mvn -B -q -pl benchmarks -am package -DskipTests
 * java -jar benchmarks/target/benchmarks.jar CoalescingQueueBenchmark -f 1 -wi 3 -w 2s -i 5 -r 2s
 * </pre>
 *
 * <p>Add {@code -p keys=100 -p offersPerPoll=4} to run one point, {@code -rf json -rff out.json}
 * to keep the results.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@State(Scope.Thread)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
public class CoalescingQueueBenchmark {
  /** Queue operations per benchmark invocation. */
  static final int OPS = 1024;

  /** Length of the pre-computed script: a power of two and a multiple of {@link #OPS}. */
  static final int SCRIPT_LENGTH = 1 << 20;

  /** Cap of the unbounded deque, at which it is cleared. */
  static final int DEQUE_CAP = 1 << 20;

  private static final int POLL = -1;
  private static final int PRIORITY = 100;
  private static final BinaryOperator<Update> LAST_WINS = (pending, next) -> next;

  /** Number of distinct keys. */
  @Param({"100", "10000"})
  public int keys;

  /** Offers per poll: above 1 the producer outpaces the consumer, as on a slow link. */
  @Param({"4", "1"})
  public int offersPerPoll;

  /** Zipf exponent of the key popularity. */
  @Param({"1.0"})
  public double zipf;

  /** One pending update; the entry type of every queue. */
  public record Update(String key, int keyIndex) {}

  private String[] keyObjects;
  private Update[] entries;
  private int[] script;
  private int cursor;

  private CoalescingQueue<String, Update> coalescing;
  private ArrayDeque<Update> deque;
  private Map<String, Update> synchronizedMap;
  private LinkedHashMap<String, Update> plainMap;

  @Setup(Level.Trial)
  public void setUp() {
    keyObjects = new String[keys];
    entries = new Update[keys];
    for (int i = 0; i < keys; i++) {
      keyObjects[i] = "Position/obj-" + i;
      keyObjects[i].hashCode(); // cache it, as long-lived keys have it cached
      entries[i] = new Update(keyObjects[i], i);
    }
    double[] cdf = zipfCdf(keys, zipf);
    SplittableRandom random = new SplittableRandom(42);
    script = new int[SCRIPT_LENGTH];
    for (int p = 0; p < SCRIPT_LENGTH; p++) {
      script[p] = p % (offersPerPoll + 1) == offersPerPoll ? POLL : sample(cdf, random.nextDouble());
    }
    cursor = 0;
  }

  @Setup(Level.Iteration)
  public void newQueues() {
    coalescing = new CoalescingQueue<>();
    deque = new ArrayDeque<>();
    synchronizedMap = Collections.synchronizedMap(new LinkedHashMap<>());
    plainMap = new LinkedHashMap<>();
  }

  @Benchmark
  @OperationsPerInvocation(OPS)
  public void coalescingQueue(Blackhole bh) {
    int[] s = script;
    int c = cursor;
    CoalescingQueue<String, Update> q = coalescing;
    for (int i = 0; i < OPS; i++) {
      int op = s[c + i];
      if (op == POLL) {
        bh.consume(q.poll());
      } else {
        q.offer(keyObjects[op], PRIORITY, entries[op], LAST_WINS);
      }
    }
    cursor = (c + OPS) & (SCRIPT_LENGTH - 1);
  }

  @Benchmark
  @OperationsPerInvocation(OPS)
  public void unboundedDeque(Blackhole bh) {
    int[] s = script;
    int c = cursor;
    ArrayDeque<Update> q = deque;
    for (int i = 0; i < OPS; i++) {
      int op = s[c + i];
      if (op == POLL) {
        bh.consume(q.pollFirst());
      } else {
        q.addLast(entries[op]);
      }
    }
    if (q.size() >= DEQUE_CAP) {
      q.clear();
    }
    cursor = (c + OPS) & (SCRIPT_LENGTH - 1);
  }

  @Benchmark
  @OperationsPerInvocation(OPS)
  public void synchronizedLinkedHashMap(Blackhole bh) {
    int[] s = script;
    int c = cursor;
    Map<String, Update> m = synchronizedMap;
    for (int i = 0; i < OPS; i++) {
      int op = s[c + i];
      if (op == POLL) {
        Update head = null;
        synchronized (m) { // iteration of a synchronizedMap must hold its lock
          Iterator<Update> it = m.values().iterator();
          if (it.hasNext()) {
            head = it.next();
            it.remove();
          }
        }
        bh.consume(head);
      } else {
        m.put(keyObjects[op], entries[op]); // a present key keeps its position
      }
    }
    cursor = (c + OPS) & (SCRIPT_LENGTH - 1);
  }

  @Benchmark
  @OperationsPerInvocation(OPS)
  public void linkedHashMap(Blackhole bh) {
    int[] s = script;
    int c = cursor;
    LinkedHashMap<String, Update> m = plainMap;
    for (int i = 0; i < OPS; i++) {
      int op = s[c + i];
      if (op == POLL) {
        Update head = null;
        Iterator<Update> it = m.values().iterator();
        if (it.hasNext()) {
          head = it.next();
          it.remove();
        }
        bh.consume(head);
      } else {
        m.put(keyObjects[op], entries[op]);
      }
    }
    cursor = (c + OPS) & (SCRIPT_LENGTH - 1);
  }

  /** Cumulative distribution of ranks 1..n with weight 1/rank^s. */
  static double[] zipfCdf(int n, double s) {
    double[] cdf = new double[n];
    double sum = 0;
    for (int i = 0; i < n; i++) {
      sum += 1.0 / Math.pow(i + 1, s);
      cdf[i] = sum;
    }
    for (int i = 0; i < n; i++) {
      cdf[i] /= sum;
    }
    cdf[n - 1] = 1.0;
    return cdf;
  }

  /** The index of the first cdf entry at or above {@code u}. */
  static int sample(double[] cdf, double u) {
    int lo = 0;
    int hi = cdf.length - 1;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }
}
