package dev.entanglement.benchmarks;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * The second process of a two-process harness, seen from the parent: the same jar and JVM, started
 * with {@code role=child}, driven by one-line commands on its standard input. The child answers a
 * command with one line starting with {@code @}; any other line it prints is echoed with a prefix.
 * Its standard error is inherited. The child exits when its standard input closes, so it never
 * outlives the parent.
 */
final class ChildProcess implements AutoCloseable {
  private final Process process;
  private final PrintStream in;
  private final BlockingQueue<String> replies = new LinkedBlockingQueue<>();

  private ChildProcess(Process process) {
    this.process = process;
    this.in = new PrintStream(process.getOutputStream(), true, StandardCharsets.UTF_8);
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader r =
                  new BufferedReader(
                      new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                  if (line.startsWith("@")) {
                    replies.add(line.substring(1));
                  } else {
                    System.out.println("  [child] " + line);
                  }
                }
              } catch (IOException e) {
                // the child is gone
              }
              replies.add("EOF");
            },
            "child-reader");
    reader.setDaemon(true);
    reader.start();
  }

  /** Starts {@code mainClass role=child args...} with this JVM's heap and GC options. */
  static ChildProcess start(Class<?> mainClass, List<String> extraJvmArgs, List<String> args) {
    List<String> cmd = javaCommand(mainClass, extraJvmArgs, true);
    cmd.add("role=child");
    cmd.addAll(args);
    try {
      Process p =
          new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
      ChildProcess c = new ChildProcess(p);
      Runtime.getRuntime().addShutdownHook(new Thread(p::destroyForcibly));
      return c;
    } catch (IOException e) {
      throw new UncheckedIOException("cannot start the child process", e);
    }
  }

  /**
   * The command that runs {@code mainClass} in a new JVM like this one: the same java, heap, GC
   * and Netty options and class path, then {@code extraJvmArgs}; the caller appends the program's
   * arguments. The {@code bench.childJvm} options are added if {@code childJvmHere}; otherwise the
   * property itself is passed on, for a process that starts the child in its turn.
   */
  static List<String> javaCommand(Class<?> mainClass, List<String> extraJvmArgs, boolean childJvmHere) {
    String java =
        ProcessHandle.current()
            .info()
            .command()
            .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    List<String> cmd = new ArrayList<>();
    cmd.add(java);
    for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if ((a.startsWith("-Xm") || a.startsWith("-XX:") || a.startsWith("-Dio.netty"))
          && !a.contains("FlightRecord")) {
        cmd.add(a);
      }
    }
    cmd.addAll(extraJvmArgs);
    // For profiling the child: -Dbench.childJvm="-XX:StartFlightRecording=filename=child.jfr"
    String more = System.getProperty("bench.childJvm", "").strip();
    if (!more.isEmpty()) {
      if (childJvmHere) {
        cmd.addAll(List.of(more.split("\\s+")));
      } else {
        cmd.add("-Dbench.childJvm=" + more);
      }
    }
    cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(mainClass.getName());
    return cmd;
  }

  /** Sends a command and waits for its one-line reply. */
  String call(String command, Duration timeout) {
    send(command);
    return reply(command, timeout);
  }

  /** Sends a command without waiting; {@link #reply} collects the answer. */
  void send(String command) {
    in.println(command);
  }

  /** Waits for the reply to the oldest command sent and not yet answered. */
  String reply(String command, Duration timeout) {
    try {
      String reply = replies.poll(timeout.toMillis(), TimeUnit.MILLISECONDS);
      if (reply == null) {
        throw new IllegalStateException("no reply to '" + command + "' within " + timeout);
      }
      if (reply.equals("EOF")) {
        throw new IllegalStateException("the child exited while running '" + command + "'");
      }
      if (reply.startsWith("ERROR")) {
        throw new IllegalStateException("the child failed '" + command + "': " + reply);
      }
      return reply;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    }
  }

  long pid() {
    return process.pid();
  }

  @Override
  public void close() {
    in.println("EXIT");
    in.close();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
  }

  /**
   * The child's side: reads commands from standard input until {@code EXIT} or end of input,
   * answering each with {@code @} + the handler's reply. A handler that throws answers {@code
   * @ERROR ...}. Then halts the JVM.
   */
  static void serve(Function<String[], String> handler) {
    PrintStream out = System.out;
    try (BufferedReader r =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      String line;
      while ((line = r.readLine()) != null) {
        line = line.strip();
        if (line.isEmpty()) {
          continue;
        }
        if (line.equals("EXIT")) {
          break;
        }
        String reply;
        try {
          reply = handler.apply(line.split(" "));
        } catch (RuntimeException e) {
          e.printStackTrace();
          reply = "ERROR " + e;
        }
        out.println("@" + reply.replace('\n', ' '));
        out.flush();
      }
    } catch (IOException e) {
      // parent gone
    }
    out.flush();
    System.exit(0);
  }

  /** Parses {@code key=value} words of a command into a lookup. */
  static String word(String[] words, String key, String def) {
    for (String w : words) {
      if (w.startsWith(key + "=")) {
        return w.substring(key.length() + 1);
      }
    }
    return def;
  }

  static Duration seconds(double s) {
    return Duration.ofMillis((long) (s * 1000));
  }
}
