package dev.entanglement.samples.cli;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import java.io.PrintWriter;
import java.net.ConnectException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;
import org.jspecify.annotations.Nullable;
import org.slf4j.ILoggerFactory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.ScopeType;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;

/**
 * The {@code entanglement} command: {@code entanglement node …} runs a node, {@code entanglement
 * pki …} makes certificates. Run it as {@code java -jar entanglement-samples.jar COMMAND …}.
 *
 * <p>Exit status: 0 on success (and after {@code --help}); 1 when the command fails at run time
 * (a port in use, an unreadable or mismatching certificate or key, an unreachable database, an
 * existing file that would be overwritten); 2 for a usage error (an unknown option, a bad value, a
 * missing command: without arguments it prints the usage and exits with 2). Every error is one
 * line on standard error; {@code --debug} adds the stack trace. A node stopped by Ctrl-C shuts down
 * cleanly and exits with the JVM's status for SIGINT, 130.
 */
@Command(
    name = "entanglement",
    description = "Entanglement Reactive: keeps objects in sync across nodes.",
    subcommands = {NodeCommand.class, PkiCommand.class},
    footer = {
      "",
      "Examples:",
      "  entanglement node --http 127.0.0.1:8080     demo at http://127.0.0.1:8080/",
      "  entanglement pki init --dir pki             a CA for a group of nodes",
      "  entanglement pki issue --dir pki --name a   a node certificate signed by it",
      "",
      "Exit status: 0 success, 1 run-time error, 2 usage error."
    })
public final class Entanglement implements Callable<Integer> {
  private static final Logger log = LoggerFactory.getLogger(Entanglement.class);

  @Spec CommandSpec spec;

  @Option(names = {"-h", "--help"}, usageHelp = true, scope = ScopeType.INHERIT, description = "Shows this help.")
  boolean help;

  @Option(names = "--debug", scope = ScopeType.INHERIT, description = "Prints stack traces with errors.")
  boolean debug;

  @Option(names = "--log-level", scope = ScopeType.INHERIT, paramLabel = "LEVEL", converter = LevelConverter.class,
      description = "Logging level: TRACE, DEBUG, INFO, WARN, ERROR or OFF. Default: INFO. Logs go to standard error.")
  @Nullable Level logLevel;

  private Entanglement() {}

  /** Prints the usage: a command is required. */
  @Override
  public Integer call() {
    spec.commandLine().usage(spec.commandLine().getErr());
    return CommandLine.ExitCode.USAGE;
  }

  public static void main(String[] args) {
    PrintWriter out = new PrintWriter(System.out, true, StandardCharsets.UTF_8);
    PrintWriter err = new PrintWriter(System.err, true, StandardCharsets.UTF_8);
    System.exit(commandLine(out, err).execute(args));
  }

  /** The command line, printing to {@code out} and {@code err}. */
  static CommandLine commandLine(PrintWriter out, PrintWriter err) {
    Entanglement root = new Entanglement();
    CommandLine cli = new CommandLine(root);
    cli.setOut(out);
    cli.setErr(err);
    cli.setCaseInsensitiveEnumValuesAllowed(true);
    cli.setExecutionStrategy(
        parsed -> {
          if (root.logLevel != null) {
            setRootLevel(root.logLevel);
          }
          return new CommandLine.RunLast().execute(parsed);
        });
    cli.setParameterExceptionHandler(
        (ex, args) -> {
          CommandLine c = ex.getCommandLine();
          String name = c.getCommandSpec().qualifiedName();
          c.getErr().println(name + ": " + Certificates.oneLine(ex.getMessage()) + " (see '" + name + " --help')");
          if (root.debug) {
            ex.printStackTrace(c.getErr());
          }
          c.getErr().flush();
          return CommandLine.ExitCode.USAGE;
        });
    cli.setExecutionExceptionHandler(
        (Exception ex, CommandLine c, ParseResult parsed) -> {
          c.getErr().println(c.getCommandSpec().qualifiedName() + ": " + describe(ex));
          if (root.debug) {
            ex.printStackTrace(c.getErr());
          }
          c.getErr().flush();
          return CommandLine.ExitCode.SOFTWARE;
        });
    return cli;
  }

  /**
   * A one-line description of a failure: its message, or the innermost cause's for a wrapper; a
   * refused connection is said plainly (Netty's native transport names the system call).
   */
  static String describe(Throwable e) {
    if (e instanceof CliException) {
      return Certificates.oneLine(e.getMessage());
    }
    Throwable root = e;
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof ConnectException && String.valueOf(t.getMessage()).contains("Connection refused")) {
        return "connection refused";
      }
      root = t;
    }
    String message = root.getMessage();
    return Certificates.oneLine(
        message == null || message.isBlank() ? root.getClass().getSimpleName() : message);
  }

  private static void setRootLevel(Level level) {
    ILoggerFactory factory = LoggerFactory.getILoggerFactory();
    if (factory instanceof LoggerContext context) {
      context.getLogger(Logger.ROOT_LOGGER_NAME).setLevel(level);
    } else {
      log.warn("--log-level has no effect: the logging back end is {}, not Logback", factory.getClass().getName());
    }
  }

  /** Converts a level name, refusing unknown ones (Logback would silently pick DEBUG). */
  static final class LevelConverter implements CommandLine.ITypeConverter<Level> {
    @Override
    public Level convert(String value) {
      Level level = Level.toLevel(value, null);
      if (level == null || !level.levelStr.equalsIgnoreCase(value)) {
        throw new TypeConversionException(
            "unknown level '" + value + "': use TRACE, DEBUG, INFO, WARN, ERROR or OFF");
      }
      return level;
    }
  }
}
