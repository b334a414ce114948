package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Stream;

/**
 * A {@link NodeProcess} running in a child JVM. Its stdout is read by a plain thread into a queue,
 * so that the test awaits lines with a timeout; its stderr (the child's log) goes to a file that
 * failure messages quote. Use from one test thread.
 */
final class ChildNode {
  /** End of the child's stdout, compared by identity. */
  private static final String EOF = new String("<end of stdout>");

  final String name;
  private final Process process;
  private final File stderr;
  private final PrintWriter stdin;
  private final BlockingQueue<String> queue = new LinkedBlockingQueue<>();
  private final List<String> seen = new ArrayList<>();
  private boolean ended;

  private ChildNode(String name, Process process, File stderr) {
    this.name = name;
    this.process = process;
    this.stderr = stderr;
    this.stdin =
        new PrintWriter(process.getOutputStream(), true, StandardCharsets.UTF_8);
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader r =
                  new BufferedReader(
                      new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                for (String l = r.readLine(); l != null; l = r.readLine()) {
                  queue.add(l);
                }
              } catch (IOException e) {
                // the child was killed: its stdout ends here
              } finally {
                queue.add(EOF);
              }
            },
            "stdout-" + name);
    reader.setDaemon(true);
    reader.start();
  }

  /**
   * A copy of this JVM's classpath for children: directories (build output) and {@code -SNAPSHOT}
   * jars are copied under {@code into}, so that a rebuild of the project while the test runs (a
   * child restarted late would otherwise find half-written classes) cannot break the children;
   * release jars are used in place.
   */
  static String snapshotClasspath(Path into) {
    List<String> entries = new ArrayList<>();
    int n = 0;
    for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
      if (entry.isEmpty()) {
        continue;
      }
      Path source = Path.of(entry);
      Path target = into.resolve((n++) + "-" + source.getFileName());
      try {
        if (Files.isDirectory(source)) {
          try (Stream<Path> files = Files.walk(source)) {
            for (Path f : (Iterable<Path>) files::iterator) {
              Path t = target.resolve(source.relativize(f).toString());
              if (Files.isDirectory(f)) {
                Files.createDirectories(t);
              } else {
                Files.copy(f, t, StandardCopyOption.REPLACE_EXISTING);
              }
            }
          }
          entries.add(target.toString());
        } else if (Files.isRegularFile(source) && source.getFileName().toString().contains("-SNAPSHOT")) {
          Files.copy(source, target);
          entries.add(target.toString());
        } else {
          entries.add(entry);
        }
      } catch (IOException e) {
        throw new UncheckedIOException("cannot copy classpath entry " + entry, e);
      }
    }
    String classpath = String.join(File.pathSeparator, entries);
    String main = NodeProcess.class.getName().replace('.', '/') + ".class";
    if (entries.stream().noneMatch(e -> Files.isRegularFile(Path.of(e).resolve(main)))) {
      throw new IllegalStateException("the copied classpath lacks " + main + ": " + classpath);
    }
    return classpath;
  }

  /**
   * Starts {@code java -cp <classpath> dev.entanglement.netty.NodeProcess <args>} with the current
   * JVM's {@code java}; the child's stderr goes to {@code <logDir>/<logName>.stderr}.
   */
  static ChildNode start(
      String name, String logName, String classpath, Path logDir, List<String> args) {
    String java =
        ProcessHandle.current()
            .info()
            .command()
            .orElse(System.getProperty("java.home") + File.separator + "bin" + File.separator + "java");
    List<String> command = new ArrayList<>();
    command.add(java);
    command.add("-cp");
    command.add(classpath);
    // Start fast: these JVMs live for seconds.
    command.add("-XX:TieredStopAtLevel=1");
    command.add("-XX:+UseSerialGC");
    command.add("-Xss512k");
    command.add(NodeProcess.class.getName());
    command.addAll(args);
    File err = logDir.resolve(logName + ".stderr").toFile();
    ProcessBuilder pb =
        new ProcessBuilder(command)
            .redirectError(err)
            .redirectOutput(ProcessBuilder.Redirect.PIPE)
            .redirectInput(ProcessBuilder.Redirect.PIPE);
    try {
      return new ChildNode(name, pb.start(), err);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot start child JVM " + name, e);
    }
  }

  /** Sends one command line to the child's stdin. */
  void send(String command) {
    stdin.println(command);
    if (stdin.checkError()) {
      fail(name + ": cannot send '" + command + "': the child's stdin is closed" + diagnostics());
    }
  }

  /** The number of lines received so far: a position for {@link #awaitFrom}. */
  int mark() {
    drain();
    return seen.size();
  }

  /** Every stdout line received so far. */
  List<String> lines() {
    drain();
    return List.copyOf(seen);
  }

  /** Awaits a stdout line equal to {@code line}, received at any time. */
  String awaitLine(String line, Duration timeout) {
    return awaitFrom(0, "'" + line + "'", line::equals, timeout);
  }

  /** Awaits a stdout line equal to {@code line}, received at or after position {@code from}. */
  String awaitLineFrom(int from, String line, Duration timeout) {
    return awaitFrom(from, "'" + line + "' (after line " + from + ")", line::equals, timeout);
  }

  /** Awaits a line matching {@code test} received at or after position {@code from}. */
  String awaitFrom(int from, String what, Predicate<String> test, Duration timeout) {
    for (int i = from; i < seen.size(); i++) {
      if (test.test(seen.get(i))) {
        return seen.get(i);
      }
    }
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      if (ended) {
        fail(name + ": exited (" + exitCode() + ") before printing " + what + diagnostics());
      }
      long left = deadline - System.nanoTime();
      String l;
      try {
        l = left > 0 ? queue.poll(left, TimeUnit.NANOSECONDS) : null;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError(name + ": interrupted while awaiting " + what, e);
      }
      if (l == null) {
        fail(name + ": no " + what + " within " + timeout.toSeconds() + " s" + diagnostics());
      }
      if (accept(l) && test.test(l)) {
        return l;
      }
    }
  }

  /** Awaits the {@code count}-th line (in all) that starts with {@code prefix}. */
  void awaitCount(String prefix, int count, Duration timeout) {
    int[] n = {0};
    awaitFrom(
        0,
        count + " lines starting with '" + prefix + "'",
        l -> l.startsWith(prefix) && ++n[0] >= count,
        timeout);
  }

  /** Awaits {@code READY <port>} and returns the port. */
  int awaitReady(Duration timeout) {
    String ready = awaitFrom(0, "READY", l -> l.startsWith("READY "), timeout);
    return Integer.parseInt(ready.substring("READY ".length()));
  }

  /** Kills the child (SIGKILL) and waits for it to be gone. */
  void kill() {
    process.destroyForcibly();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        throw new AssertionError(name + ": still alive 10 s after SIGKILL");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    stdin.close();
  }

  boolean isAlive() {
    return process.isAlive();
  }

  /** The child's last stdout lines and the tail of its stderr, for failure messages. */
  String diagnostics() {
    drain();
    StringBuilder b = new StringBuilder();
    b.append("\n--- ").append(name).append(" stdout (last lines) ---\n");
    seen.subList(Math.max(0, seen.size() - 20), seen.size()).forEach(l -> b.append(l).append('\n'));
    b.append("--- ").append(name).append(" stderr (").append(stderr).append(", last lines) ---\n");
    try {
      List<String> err = Files.readAllLines(stderr.toPath(), StandardCharsets.UTF_8);
      err.subList(Math.max(0, err.size() - 30), err.size()).forEach(l -> b.append(l).append('\n'));
    } catch (IOException | UncheckedIOException e) {
      b.append("(unreadable: ").append(e).append(")\n");
    }
    return b.toString();
  }

  private String exitCode() {
    try {
      return process.waitFor(5, TimeUnit.SECONDS) ? "exit code " + process.exitValue() : "still running";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "unknown exit code";
    }
  }

  private void drain() {
    for (String l = queue.poll(); l != null; l = queue.poll()) {
      accept(l);
    }
  }

  /** Records a line; false for the end of stdout. */
  private boolean accept(String l) {
    if (l == EOF) {
      ended = true;
      return false;
    }
    seen.add(l);
    return true;
  }

  @Override
  public String toString() {
    return name;
  }
}
