package dev.entanglement.samples.cli;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Duration;
import java.util.Arrays;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import picocli.CommandLine;

/**
 * Runs the {@code entanglement} command in-process with captured output, as a test would type it:
 * to completion ({@link #run}), or as a node in the background ({@link #start}) until {@link #stop}.
 */
final class Cli implements AutoCloseable {
  static final Duration START = Duration.ofSeconds(60);
  static final Duration STOP = Duration.ofSeconds(30);

  /** The outcome of a command that ran to completion. */
  record Result(int exitCode, String out, String err) {
    /** The value of the output line starting with {@code name}, as the node prints them. */
    Optional<String> line(String name) {
      return Arrays.stream(out.split("\\R"))
          .filter(l -> l.startsWith(name + " "))
          .map(l -> l.substring(name.length()).strip())
          .findFirst();
    }
  }

  private final StringWriter out = new StringWriter();
  private final StringWriter err = new StringWriter();
  private final CommandLine cli =
      Entanglement.commandLine(new PrintWriter(out, true), new PrintWriter(err, true));
  private CompletableFuture<Integer> exit;

  static Result run(String... args) {
    Cli c = new Cli();
    int code = c.cli.execute(args);
    return new Result(code, c.out.toString(), c.err.toString());
  }

  /** Starts {@code entanglement node ARGS} on another thread and waits until it runs. */
  RunningNode start(String... nodeArgs) throws Exception {
    String[] args = new String[nodeArgs.length + 1];
    args[0] = "node";
    System.arraycopy(nodeArgs, 0, args, 1, nodeArgs.length);
    exit = new CompletableFuture<>();
    Thread t = new Thread(() -> exit.complete(cli.execute(args)), "cli-node");
    t.setDaemon(true);
    t.start();
    try {
      return command().started.get(START.toSeconds(), TimeUnit.SECONDS);
    } catch (ExecutionException | TimeoutException e) {
      throw new AssertionError("the node did not start: " + err, e);
    }
  }

  NodeCommand command() {
    return cli.getSubcommands().get("node").getCommand();
  }

  /** Stops a node started by {@link #start} and returns its exit code. */
  int stop() throws Exception {
    command().stop();
    return exit.get(STOP.toSeconds(), TimeUnit.SECONDS);
  }

  Result output() {
    return new Result(exit != null && exit.isDone() ? exit.join() : -1, out.toString(), err.toString());
  }

  @Override
  public void close() throws Exception {
    if (exit != null && !exit.isDone()) {
      stop();
    }
  }
}
