package dev.entanglement.benchmarks;

import java.io.IOException;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.locks.LockSupport;

/** Small measuring helpers shared by the end-to-end harnesses. */
final class Measure {
  private Measure() {}

  /** CPU time of this process (all threads), in nanoseconds. */
  static long processCpuNanos() {
    var os = ManagementFactory.getOperatingSystemMXBean();
    if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
      return sun.getProcessCpuTime();
    }
    return -1;
  }

  /** Total GC pause time of this JVM so far, in milliseconds (as reported by the collectors). */
  static long gcMillis() {
    long t = 0;
    for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
      t += Math.max(0, gc.getCollectionTime());
    }
    return t;
  }

  /**
   * Used heap after full collections: the minimum over {@code rounds} rounds of {@code
   * System.gc()} (a full, compacting collection with G1), a pause between them.
   */
  static long usedHeapAfterGc(int rounds) {
    MemoryMXBean mem = ManagementFactory.getMemoryMXBean();
    long min = Long.MAX_VALUE;
    for (int i = 0; i < rounds; i++) {
      System.gc();
      LockSupport.parkNanos(200_000_000L);
      min = Math.min(min, mem.getHeapMemoryUsage().getUsed());
    }
    return min;
  }

  /** CPU time per live thread (id → name and nanoseconds), for a later {@link #threadCpuDelta}. */
  static java.util.Map<Long, Object[]> threadCpu() {
    java.lang.management.ThreadMXBean t = ManagementFactory.getThreadMXBean();
    java.util.Map<Long, Object[]> m = new java.util.HashMap<>();
    for (java.lang.management.ThreadInfo i : t.getThreadInfo(t.getAllThreadIds())) {
      if (i != null) {
        m.put(i.getThreadId(), new Object[] {i.getThreadName(), t.getThreadCpuTime(i.getThreadId())});
      }
    }
    return m;
  }

  /**
   * The {@code top} threads by CPU time since {@code before}, grouped by name with digits folded
   * (so {@code parallel-1} and {@code parallel-2} add up), as "name ms; ...".
   */
  static String threadCpuDelta(java.util.Map<Long, Object[]> before, int top) {
    java.util.Map<String, Long> byName = new java.util.TreeMap<>();
    threadCpu()
        .forEach(
            (id, v) -> {
              Object[] b = before.get(id);
              long d = (long) v[1] - (b == null ? 0 : (long) b[1]);
              byName.merge(((String) v[0]).replaceAll("\\d+", "N"), d, Long::sum);
            });
    StringBuilder sb = new StringBuilder();
    byName.entrySet().stream()
        .sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
        .limit(top)
        .forEach(e -> sb.append(e.getKey()).append(' ').append(e.getValue() / 1_000_000).append(" ms; "));
    return sb.toString();
  }

  /** Linux's clock tick for {@code /proc} CPU times: 100 per second on every common kernel. */
  private static final long NANOS_PER_TICK = 10_000_000L;

  /**
   * CPU time of every thread of this process as the kernel counts it, JVM threads included (the
   * collector's workers, G1's refinement threads, the compilers), grouped by thread name with a
   * trailing number folded and spaces as underscores ({@code G1 Refine#0} and {@code G1 Refine#1}
   * add up as {@code G1_Refine#N}), in nanoseconds at the kernel's 10 ms resolution; empty where
   * {@code /proc/self/task} does not exist. The kernel truncates names to 15 characters. Threads
   * that ended since an earlier reading are missing from the later one, so a delta can only
   * under-count them.
   */
  static java.util.Map<String, Long> osThreadCpu() {
    java.util.Map<String, Long> byName = new java.util.TreeMap<>();
    Path tasks = Path.of("/proc/self/task");
    if (!Files.isDirectory(tasks)) {
      return byName;
    }
    try (var dirs = Files.list(tasks)) {
      for (Path t : (Iterable<Path>) dirs::iterator) {
        try {
          String stat = Files.readString(t.resolve("stat"));
          String name = stat.substring(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
          // After the name: state is field 3, utime 14 and stime 15 (1-based, name as field 2).
          String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
          long ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]);
          byName.merge(name.replaceAll("(?<=[-#])\\d+$", "N").replace(' ', '_'), ticks * NANOS_PER_TICK, Long::sum);
        } catch (IOException | RuntimeException e) {
          // the thread ended while being read
        }
      }
    } catch (IOException e) {
      // the task directory could not be listed: report what was read, possibly nothing
    }
    return byName;
  }

  /** The key of {@link #compilerCpu}'s entry for the JVM's total compilation time. */
  private static final long TOTAL_COMPILATION = -1;

  /**
   * A reading of this process's JIT compilers for {@link #compilerCpuBetween}: the CPU time of each
   * compiler thread in nanoseconds by thread id, compilations under way included, from {@code
   * /proc/self/task/<tid>/schedstat} (nanosecond resolution) of the threads named {@code C1
   * CompilerThre…} or {@code C2 CompilerThre…} (none where that cannot be read); and, under id
   * {@value #TOTAL_COMPILATION}, the JVM's total compilation time, which counts a compilation only
   * once it has ended, but also one whose thread has since exited.
   */
  static java.util.Map<Long, Long> compilerCpu() {
    java.util.Map<Long, Long> reading = new java.util.HashMap<>();
    Path tasks = Path.of("/proc/self/task");
    if (Files.isDirectory(tasks)) {
      try (var dirs = Files.list(tasks)) {
        for (Path t : (Iterable<Path>) dirs::iterator) {
          try {
            String name = Files.readString(t.resolve("comm")).strip();
            if (name.startsWith("C1 CompilerThre") || name.startsWith("C2 CompilerThre")) {
              String schedstat = Files.readString(t.resolve("schedstat")).strip();
              reading.put(
                  Long.parseLong(t.getFileName().toString()),
                  Long.parseLong(schedstat.substring(0, schedstat.indexOf(' '))));
            }
          } catch (IOException | RuntimeException e) {
            // the thread ended while being read, or the kernel keeps no schedstat
          }
        }
      } catch (IOException e) {
        // the total below still counts
      }
    }
    reading.put(
        TOTAL_COMPILATION,
        java.lang.management.ManagementFactory.getCompilationMXBean().getTotalCompilationTime() * 1_000_000L);
    return reading;
  }

  /**
   * The compilers' work between two {@link #compilerCpu} readings, in nanoseconds: the larger of
   * the compiler threads' CPU (a thread started in between counts whole; one that exited, as the
   * JVM stops idle compiler threads, counts nothing) and the total compilation time's growth
   * (compilations that ended in between, whichever thread ran them).
   */
  static long compilerCpuBetween(java.util.Map<Long, Long> before, java.util.Map<Long, Long> after) {
    long threads = 0;
    for (var e : after.entrySet()) {
      if (e.getKey() != TOTAL_COMPILATION) {
        threads += Math.max(0, e.getValue() - before.getOrDefault(e.getKey(), 0L));
      }
    }
    long ended = after.get(TOTAL_COMPILATION) - before.getOrDefault(TOTAL_COMPILATION, after.get(TOTAL_COMPILATION));
    return Math.max(threads, ended);
  }

  /** {@code after − before} per thread group, dropping groups that used nothing. */
  static java.util.Map<String, Long> minus(java.util.Map<String, Long> after, java.util.Map<String, Long> before) {
    java.util.Map<String, Long> d = new java.util.TreeMap<>();
    after.forEach(
        (k, v) -> {
          long x = v - before.getOrDefault(k, 0L);
          if (x > 0) {
            d.put(k, x);
          }
        });
    return d;
  }

  /** The {@code top} groups of {@code cpu} as "name µs; ...", each in µs per {@code per} operations. */
  static String perOperation(java.util.Map<String, Long> cpu, long per, int top) {
    StringBuilder sb = new StringBuilder();
    cpu.entrySet().stream()
        .sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
        .limit(top)
        .forEach(e -> sb.append(String.format(Locale.ROOT, "%s %.2f; ", e.getKey(), e.getValue() / 1e3 / per)));
    return sb.toString();
  }

  /**
   * A class histogram of live objects (forces a full GC), as class name → bytes, from the HotSpot
   * diagnostic command {@code GC.class_histogram}; empty if unavailable.
   */
  static java.util.Map<String, Long> classHistogram() {
    java.util.Map<String, Long> m = new java.util.HashMap<>();
    try {
      javax.management.ObjectName name = new javax.management.ObjectName("com.sun.management:type=DiagnosticCommand");
      String out =
          (String)
              ManagementFactory.getPlatformMBeanServer()
                  .invoke(name, "gcClassHistogram", new Object[] {new String[0]}, new String[] {String[].class.getName()});
      for (String line : out.split("\n")) {
        String[] f = line.trim().split("\\s+");
        if (f.length >= 4 && f[0].endsWith(":")) {
          m.merge(f[3], Long.parseLong(f[2]), Long::sum);
        }
      }
    } catch (Exception e) {
      // not HotSpot, or not permitted
    }
    return m;
  }

  /** The {@code top} classes whose live bytes grew most from {@code before} to {@code after}, ÷ {@code per}. */
  static String histogramDelta(java.util.Map<String, Long> before, java.util.Map<String, Long> after, int per, int top) {
    StringBuilder sb = new StringBuilder();
    after.entrySet().stream()
        .map(e -> java.util.Map.entry(e.getKey(), e.getValue() - before.getOrDefault(e.getKey(), 0L)))
        .sorted((a, b) -> Long.compare(b.getValue(), a.getValue()))
        .limit(top)
        .forEach(e -> sb.append(String.format(Locale.ROOT, "      %8.0f B  %s%n", (double) e.getValue() / per, e.getKey())));
    return sb.toString();
  }

  /** Nearest-rank percentile of sorted values. */
  static long percentile(long[] sorted, double p) {
    if (sorted.length == 0) {
      return -1;
    }
    int rank = (int) Math.ceil(p / 100.0 * sorted.length);
    return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
  }

  static double median(double[] values) {
    double[] s = values.clone();
    Arrays.sort(s);
    int n = s.length;
    return n == 0 ? Double.NaN : n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  }

  /**
   * The run's title, time, CPUs and JVM, and on a second line the {@linkplain #machine machine
   * class}, so that every recorded result names what it ran on.
   */
  static String header(String title) {
    return String.format(
        Locale.ROOT,
        "%s — %s, %d CPUs, Java %s (%s), max heap %d MB%nmachine: %s",
        title,
        ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME),
        Runtime.getRuntime().availableProcessors(),
        System.getProperty("java.version"),
        System.getProperty("java.vm.name"),
        Runtime.getRuntime().maxMemory() >> 20,
        machine());
  }

  /**
   * The CPU model and how an idle vCPU waits, which decide B4's ratios more than anything else
   * measured so far (docs/BENCHMARKS.md §4): the {@code cpuidle} driver and the guest's halt-poll
   * time. On Linux from {@code /proc} and {@code /sys}; what cannot be read is {@code ?}.
   */
  static String machine() {
    String model = "?";
    String family = "?";
    String number = "?";
    for (String line : readLines("/proc/cpuinfo")) {
      if (line.isBlank()) {
        break; // the first CPU's block is enough: a VM's vCPUs are alike
      }
      int colon = line.indexOf(':');
      if (colon < 0) {
        continue;
      }
      String name = line.substring(0, colon).strip();
      String value = line.substring(colon + 1).strip();
      switch (name) {
        case "model name" -> model = value;
        case "cpu family" -> family = value;
        case "model" -> number = value;
        default -> { }
      }
    }
    return String.format(
        Locale.ROOT,
        "%s (family %s model %s), cpuidle driver %s, guest_halt_poll_ns %s",
        model,
        family,
        number,
        firstLine("/sys/devices/system/cpu/cpuidle/current_driver"),
        firstLine("/sys/module/haltpoll/parameters/guest_halt_poll_ns"));
  }

  private static List<String> readLines(String file) {
    try {
      return Files.readAllLines(Path.of(file));
    } catch (IOException | RuntimeException unreadable) {
      return List.of();
    }
  }

  private static String firstLine(String file) {
    List<String> lines = readLines(file);
    return lines.isEmpty() || lines.get(0).isBlank() ? "?" : lines.get(0).strip();
  }

  static String fmt(long v) {
    return String.format(Locale.ROOT, "%,d", v);
  }

  static String fmt(double v, int decimals) {
    return String.format(Locale.ROOT, "%,." + decimals + "f", v);
  }

  /** Sleeps, bounded, without throwing. */
  static void sleepMillis(long ms) {
    LockSupport.parkNanos(ms * 1_000_000L);
  }
}
