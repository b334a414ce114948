package dev.entanglement.benchmarks;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * B4 in the {@code free} placement with each design alone: {@link LatencyBenchmark} run {@code
 * forks} times per design, each run a new pair of processes measuring one design ({@code
 * designs=ours} or {@code designs=raw}, {@code placements=free}), in the order ours, raw, raw, ours,
 * ours, raw, … so that a drift of the machine falls on both alike. The target is judged per mode
 * on the median over the forks of each design's p50, and fails if any of ours' round trips failed;
 * the medians of p99 are reported beside it.
 *
 * <p>Why forks for {@code free}: measured in alternating blocks in the same two processes, raw
 * runs faster right after a block of ours than it does alone, while ours is the same either way
 * (docs/BENCHMARKS.md §4, session 22: raw's p50 falls from 89.5 µs with one block of 20,000 to
 * 59 µs with blocks of 100). Where the kernel decides which CPU wakes each thread, the blocks of
 * one design change where the other's threads run, so the blocks are not independent samples of
 * the two designs. Pinned placements ({@code same}, {@code split}) have no such coupling and stay
 * in {@link LatencyBenchmark}'s alternating blocks.
 *
 * <p>The first fork is ours: it measures the sizes the raw ping-pong carries, which every raw fork
 * is given ({@code sizes}), so a raw fork never connects ours. Options are {@link
 * LatencyBenchmark}'s, passed to every fork, except {@code designs}, {@code placements} and {@code
 * sizes}, which the forks set. A fork that fails or prints no result stops the run.
 */
final class LatencyForks {
  /** Longest a single fork may take before it is killed and the run fails: 20 minutes. */
  private static final long FORK_TIMEOUT_MINUTES = 20;

  private static final Pattern SIZES =
      Pattern.compile("^\\[(\\w+)] ours per round trip: .* raw ping (\\d+) B, pong (\\d+) B");
  private static final Pattern OURS_ERRORS =
      Pattern.compile("\\[----] (\\w+)/free: ours alone, no target judged; ours errors (\\d+)");

  private LatencyForks() {}

  /** One fork's result for one mode. */
  private record Result(double p50, double p99, long errors) {}

  static void run(Options o, String[] args) {
    for (String fixed : List.of("designs", "placements", "sizes")) {
      if (!o.string(fixed, "").isEmpty()) {
        throw new IllegalArgumentException("with forks, '" + fixed + "' is set per fork; drop it");
      }
    }
    int forks = o.integer("forks", 0);
    List<String> modes = o.list("modes", "plain,tls");
    double target = o.decimal("target", 1.5);
    List<String> passed = new ArrayList<>();
    for (String a : args) {
      if (!a.replaceFirst("^--", "").startsWith("forks=")) {
        passed.add(a);
      }
    }
    System.out.println(Measure.header("B4 latency, free placement, each design alone in " + forks + " forks"));
    System.out.println("options passed to every fork: " + (passed.isEmpty() ? "(defaults)" : String.join(" ", passed)));

    Map<String, List<Result>> byDesignMode = new LinkedHashMap<>();
    String sizes = null;
    for (int i = 0; i < 2 * forks; i++) {
      String design = i % 4 == 0 || i % 4 == 3 ? "ours" : "raw";
      List<String> forkArgs = new ArrayList<>(passed);
      forkArgs.add("designs=" + design);
      forkArgs.add("placements=free");
      if (design.equals("raw")) {
        forkArgs.add("sizes=" + sizes);
      }
      List<String> out = runFork(i + 1, design, forkArgs);
      if (sizes == null) {
        sizes = sizesOf(out, modes);
      }
      for (String mode : modes) {
        Result r = resultOf(out, design, mode);
        byDesignMode.computeIfAbsent(design + "-" + mode, k -> new ArrayList<>()).add(r);
        System.out.printf(
            Locale.ROOT, "fork %d %s-%s: p50 %.1f µs, p99 %.1f µs%s%n",
            i + 1, design, mode, r.p50(), r.p99(), design.equals("ours") ? ", ours errors " + r.errors() : "");
      }
    }

    System.out.println();
    System.out.println("targets (median over the forks of each design):");
    for (String mode : modes) {
      List<Result> ours = byDesignMode.get("ours-" + mode);
      List<Result> raw = byDesignMode.get("raw-" + mode);
      double ours50 = median(ours, Result::p50);
      double raw50 = median(raw, Result::p50);
      double ratio = ours50 / raw50;
      double ratio99 = median(ours, Result::p99) / median(raw, Result::p99);
      long errors = ours.stream().mapToLong(Result::errors).sum();
      System.out.printf(
          Locale.ROOT,
          "  [%s] %s/free (forks): ours p50 ≤ %.1f × raw p50 (ratio %.2f: %.1f / %.1f µs; p99 ratio %.2f;"
              + " ours errors %d; p50 per fork: ours %s, raw %s)%n",
          ratio <= target && errors == 0 ? "PASS" : "FAIL", mode, target, ratio, ours50, raw50, ratio99, errors,
          p50s(ours), p50s(raw));
    }
  }

  /** Runs one fork to its end; returns its output lines, echoing those that carry results. */
  private static List<String> runFork(int n, String design, List<String> forkArgs) {
    List<String> cmd = ChildProcess.javaCommand(LatencyBenchmark.class, List.of(), false);
    cmd.addAll(forkArgs);
    System.out.println("fork " + n + " (" + design + "): " + String.join(" ", forkArgs));
    List<String> lines = new ArrayList<>();
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      // The fork's own child (the owner) shares its output: both must go, or the reading below
      // never sees the end of it.
      Runnable kill = () -> {
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        p.destroyForcibly();
      };
      Thread onExit = new Thread(kill, "fork-killer");
      Runtime.getRuntime().addShutdownHook(onExit);
      AtomicBoolean timedOut = new AtomicBoolean();
      Thread watchdog =
          new Thread(
              () -> {
                try {
                  if (!p.waitFor(FORK_TIMEOUT_MINUTES, TimeUnit.MINUTES)) {
                    timedOut.set(true);
                    kill.run();
                  }
                } catch (InterruptedException e) {
                  kill.run();
                }
              },
              "fork-watchdog");
      watchdog.setDaemon(true);
      watchdog.start();
      try (BufferedReader r =
          new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
        String line;
        while ((line = r.readLine()) != null) {
          lines.add(line);
          if (line.contains("settled:") || line.startsWith(design + "-")) {
            System.out.println("  | " + line);
          }
        }
      }
      int exit = p.waitFor();
      Runtime.getRuntime().removeShutdownHook(onExit);
      if (timedOut.get()) {
        throw new IllegalStateException(
            "fork " + n + " (" + design + ") did not end within " + FORK_TIMEOUT_MINUTES + " minutes");
      }
      if (exit != 0) {
        lines.forEach(l -> System.out.println("  ! " + l));
        throw new IllegalStateException("fork " + n + " (" + design + ") exited with " + exit);
      }
      return lines;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot run fork " + n, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  /** The {@code sizes} option for raw forks, from an ours fork's output. */
  private static String sizesOf(List<String> out, List<String> modes) {
    Map<String, String> found = new LinkedHashMap<>();
    for (String line : out) {
      Matcher m = SIZES.matcher(line);
      if (m.find()) {
        found.put(m.group(1), m.group(1) + ":" + m.group(2) + "/" + m.group(3));
      }
    }
    if (!found.keySet().containsAll(modes)) {
      throw new IllegalStateException("the first fork did not print the sizes of every mode " + modes);
    }
    return String.join(",", found.values());
  }

  /** A fork's p50 and p99 (from its table row, in µs) and ours' errors for {@code mode}. */
  private static Result resultOf(List<String> out, String design, String mode) {
    String label = design + "-" + mode + "/free";
    double[] row = null;
    long errors = 0;
    for (String line : out) {
      if (line.startsWith(label + " ")) {
        // name, n, p10, p25, p50, p90, p99, ...: the layout of LatencyBenchmark.row
        String[] w = line.trim().split("\\s+");
        row = new double[] {Double.parseDouble(w[4]), Double.parseDouble(w[6])};
      }
      Matcher m = OURS_ERRORS.matcher(line);
      if (m.find() && m.group(1).equals(mode)) {
        errors = Long.parseLong(m.group(2));
      }
    }
    if (row == null) {
      throw new IllegalStateException("a " + design + " fork printed no row for " + label);
    }
    return new Result(row[0], row[1], errors);
  }

  private static double median(List<Result> results, java.util.function.ToDoubleFunction<Result> f) {
    return Measure.median(results.stream().mapToDouble(f).toArray());
  }

  private static String p50s(List<Result> results) {
    return results.stream().map(r -> String.format(Locale.ROOT, "%.1f", r.p50())).toList().toString();
  }
}
