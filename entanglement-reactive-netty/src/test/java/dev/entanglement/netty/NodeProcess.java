package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.LinkedBlockingQueue;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.netty.DisposableServer;

/**
 * A node in its own JVM, driven by {@link MultiProcessTest} through stdin and observed through
 * stdout. Test code only.
 *
 * <p>Arguments: {@code <id> <listenPort|0|any> <cert.pem> <key.pem> <ca.pem>} (0: no server; any:
 * a server on an ephemeral port, reported in {@code READY}), then any number of
 * {@code connect=<fingerprint>@<host>:<port>} (peers to dial and keep dialing), {@code
 * admit=<fingerprint>} (peers the server admits) and {@code observe=<fingerprint>} (further peers
 * whose connection state is reported). The node's owner is {@code owner-<id>}.
 *
 * <p>Stdout, one event per line (logging goes to stderr):
 *
 * <ul>
 *   <li>{@code FINGERPRINT <fp>} this node's identity, then {@code READY <port>} (0 without a
 *       server) once the server is bound and the dialers started;
 *   <li>{@code SYNC <key> <x|deleted> <owner>} for every snapshot of {@code watchAll(Cursor)};
 *   <li>{@code CONNECTED <fp>} / {@code DISCONNECTED <fp>} when {@code isConnected} of a dialed,
 *       admitted or observed peer changes (polled every 50 ms);
 *   <li>{@code DIAL <fp>} each time a client transport is about to open a connection;
 *   <li>{@code PUBLISHED <key> <x>}, {@code OUTCOME COMMITTED <x>}, {@code OUTCOME REJECTED
 *       <code>}, {@code OUTCOME ERROR <exception>}, {@code VALUE <key> <x> <owner>} or {@code VALUE
 *       <key> none}, {@code STATUS <fp> <true|false>}, {@code ERROR <text>}, {@code BYE}.
 * </ul>
 *
 * <p>Stdin commands, one per line: {@code publish <key> <x>}, {@code propose <key> <x>}, {@code get
 * <key>}, {@code status <fp>}, {@code quit}. End of input is {@code quit}: a child whose test JVM
 * died exits by itself.
 */
public final class NodeProcess {
  record Cursor(String id, double x, double y) {}

  static final SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);
  private static final Duration WAIT = Duration.ofSeconds(10);

  private NodeProcess() {}

  /** Stdout lines, written by one plain thread so reactive threads only enqueue. */
  private static final class Out {
    private static final String STOP = "\u0000stop";
    private final LinkedBlockingQueue<String> lines = new LinkedBlockingQueue<>();
    private final Thread writer;

    Out(PrintStream stdout) {
      writer =
          new Thread(
              () -> {
                try {
                  for (String l = lines.take(); !l.equals(STOP); l = lines.take()) {
                    stdout.println(l);
                    stdout.flush();
                  }
                } catch (InterruptedException e) {
                  Thread.currentThread().interrupt();
                }
              },
              "node-stdout");
      writer.setDaemon(true);
      writer.start();
    }

    void line(String l) {
      lines.add(l);
    }

    void close() throws InterruptedException {
      lines.add(STOP);
      writer.join(WAIT.toMillis());
    }
  }

  record Target(PeerId fingerprint, String host, int port) {
    static Target parse(String spec) {
      int at = spec.lastIndexOf('@');
      int colon = spec.lastIndexOf(':');
      if (at < 0 || colon < at) {
        throw new IllegalArgumentException("expected fingerprint@host:port, got " + spec);
      }
      return new Target(
          PeerId.of(spec.substring(0, at)),
          spec.substring(at + 1, colon),
          Integer.parseInt(spec.substring(colon + 1)));
    }
  }

  public static void main(String[] args) throws Exception {
    // Whatever a library prints to stdout must not be mistaken for an event.
    PrintStream stdout = System.out;
    System.setOut(System.err);
    Out out = new Out(stdout);

    String id = args[0];
    // 0: no server; "any": a server on an ephemeral port (printed in READY).
    boolean listen = !args[1].equals("0");
    int listenPort = args[1].equals("any") ? 0 : Integer.parseInt(args[1]);
    File cert = new File(args[2]);
    File key = new File(args[3]);
    File ca = new File(args[4]);
    List<Target> targets = new ArrayList<>();
    List<PeerId> admitted = new ArrayList<>();
    List<PeerId> observed = new ArrayList<>();
    for (int i = 5; i < args.length; i++) {
      String a = args[i];
      if (a.startsWith("connect=")) {
        targets.add(Target.parse(a.substring("connect=".length())));
      } else if (a.startsWith("admit=")) {
        admitted.add(PeerId.of(a.substring("admit=".length())));
      } else if (a.startsWith("observe=")) {
        observed.add(PeerId.of(a.substring("observe=".length())));
      } else {
        throw new IllegalArgumentException("unknown argument " + a);
      }
    }

    TlsConfig tls = TlsConfig.builder().keyCertChain(cert, key).trustedCertificates(ca).build();
    out.line("FINGERPRINT " + tls.identity().value());
    EntanglementNode node =
        EntanglementNode.builder()
            .id(id)
            .owner(OwnerId.of("owner-" + id))
            .registry(Registry.builder("multi-process").type(CURSOR).build())
            .build();
    List<Disposable> resources = new ArrayList<>();
    node.watchAll(CURSOR).subscribe(s -> out.line("SYNC " + describe(s)));

    int boundPort = 0;
    if (listenPort < 0) {
      throw new IllegalArgumentException("port must not be negative");
    }
    if (listen) {
      DisposableServer server =
          TcpServerTransport.builder(node)
              .host("127.0.0.1")
              .port(listenPort)
              .tls(tls)
              .destinations(admitted)
              .build()
              .bind()
              .block(WAIT);
      resources.add(server);
      boundPort = server.port();
    }

    for (Target t : targets) {
      resources.add(
          TcpClientTransport.builder(node)
              .remote(t.host(), t.port())
              .expect(t.fingerprint())
              .tls(tls)
              .backoff(Duration.ofMillis(100), Duration.ofSeconds(1))
              .tcpClient(c -> c.doOnConnect(config -> out.line("DIAL " + t.fingerprint().value())))
              .build()
              .maintain());
    }

    // Connection state of every peer of interest, reported on change.
    Map<PeerId, Boolean> watched = new LinkedHashMap<>();
    targets.forEach(t -> watched.put(t.fingerprint(), false));
    admitted.forEach(p -> watched.put(p, false));
    observed.forEach(p -> watched.put(p, false));
    Scheduler observer = Schedulers.newSingle("node-observer", true);
    resources.add(observer);
    resources.add(
        Flux.interval(Duration.ZERO, Duration.ofMillis(50), observer)
            .subscribe(
                tick ->
                    watched.replaceAll(
                        (peer, was) -> {
                          boolean now = node.isConnected(peer);
                          if (now != was) {
                            out.line((now ? "CONNECTED " : "DISCONNECTED ") + peer.value());
                          }
                          return now;
                        })));

    out.line("READY " + boundPort);

    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      String[] cmd = line.trim().split("\\s+");
      try {
        if (cmd[0].equals("quit")) {
          break;
        } else if (cmd[0].equals("publish")) {
          double x = Double.parseDouble(cmd[2]);
          node.publish(new Cursor(cmd[1], x, 0)).block(WAIT);
          out.line("PUBLISHED " + cmd[1] + " " + x);
        } else if (cmd[0].equals("propose")) {
          node.propose(CURSOR, cmd[1], Map.of("x", Double.parseDouble(cmd[2])))
              .subscribe(
                  o -> {
                    if (o instanceof dev.entanglement.Outcome.Committed<Cursor> c) {
                      out.line("OUTCOME COMMITTED " + c.snapshot().require().x());
                    } else if (o instanceof dev.entanglement.Outcome.Rejected<Cursor> r) {
                      out.line("OUTCOME REJECTED " + r.code());
                    }
                  },
                  e -> out.line("OUTCOME ERROR " + oneLine(e.toString())));
        } else if (cmd[0].equals("get")) {
          Optional<Snapshot<Cursor>> s = node.get(CURSOR, cmd[1]);
          out.line("VALUE " + (s.isPresent() ? describe(s.get()) : cmd[1] + " none"));
        } else if (cmd[0].equals("status")) {
          out.line("STATUS " + cmd[1] + " " + node.isConnected(PeerId.of(cmd[1])));
        } else {
          out.line("ERROR unknown command " + oneLine(line));
        }
      } catch (RuntimeException e) {
        out.line("ERROR " + oneLine(e.toString()));
      }
    }

    resources.forEach(Disposable::dispose);
    node.close().block(WAIT);
    out.line("BYE");
    out.close();
    System.exit(0);
  }

  private static String describe(Snapshot<Cursor> s) {
    String x = s.value() == null ? "deleted" : Double.toString(s.value().x());
    return s.key().key() + " " + x + " " + s.owner().value();
  }

  private static String oneLine(String s) {
    return s.replace('\n', ' ').replace('\r', ' ');
  }
}
