package dev.entanglement.benchmarks;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Where the threads of a harness's processes may run, set with util-linux {@code taskset}: the
 * two-process harnesses use it to fix the placement of proposer and owner, so that a ratio measured
 * against a baseline is not decided by where the kernel happens to wake each thread (on a virtual
 * machine whose idle vCPUs halt, a wake-up on the other vCPU costs tens of microseconds, and the
 * share of such wake-ups changes from run to run).
 *
 * <p>{@code taskset -a} sets the mask of every thread a process has; a thread started later inherits
 * its creator's mask, so a process pinned after its threads are running stays pinned.
 */
final class CpuPinning {
  private CpuPinning() {}

  /**
   * The online CPUs {@code pid} may run on: {@code Cpus_allowed_list} in its status (which may also
   * name CPUs that are possible but offline), less those not in {@code
   * /sys/devices/system/cpu/online} when that can be read; empty if unknown.
   */
  static List<Integer> allowedCpus(long pid) {
    try {
      for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
        if (line.startsWith("Cpus_allowed_list:")) {
          List<Integer> allowed = new ArrayList<>(parseList(line.substring(line.indexOf(':') + 1).strip()));
          Path online = Path.of("/sys/devices/system/cpu/online");
          if (Files.isReadable(online)) {
            allowed.retainAll(parseList(Files.readString(online).strip()));
          }
          return allowed;
        }
      }
    } catch (IOException | RuntimeException e) {
      // not Linux, or the process is gone: no placement can be set
    }
    return List.of();
  }

  /** Parses a CPU list such as {@code 0-3,6}. */
  static List<Integer> parseList(String list) {
    List<Integer> cpus = new ArrayList<>();
    for (String part : list.split(",")) {
      String p = part.strip();
      if (p.isEmpty()) {
        continue;
      }
      int dash = p.indexOf('-');
      int from = Integer.parseInt(dash < 0 ? p : p.substring(0, dash));
      int to = dash < 0 ? from : Integer.parseInt(p.substring(dash + 1));
      for (int c = from; c <= to; c++) {
        cpus.add(c);
      }
    }
    return cpus;
  }

  /** Whether {@code taskset} runs here. */
  static boolean available() {
    try {
      taskset("-V");
      return true;
    } catch (IllegalStateException e) {
      return false;
    }
  }

  /** Lets every thread of {@code pid} run on {@code cpus} only; throws if {@code taskset} fails. */
  static void pin(long pid, List<Integer> cpus) {
    taskset("-a", "-p", "-c", String.join(",", cpus.stream().map(String::valueOf).toList()), Long.toString(pid));
  }

  /** Runs {@code taskset args}; throws, with its output, unless it exits with 0 within 10 s. */
  private static void taskset(String... args) {
    List<String> command = new ArrayList<>(List.of("taskset"));
    command.addAll(List.of(args));
    try {
      Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(10, TimeUnit.SECONDS) || p.exitValue() != 0) {
        throw new IllegalStateException(String.join(" ", command) + " failed: " + out.strip());
      }
    } catch (IOException e) {
      throw new IllegalStateException("cannot run taskset", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }
}
