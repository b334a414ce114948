package dev.entanglement.samples.cli;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Policy;
import dev.entanglement.netty.TcpClientTransport;
import dev.entanglement.netty.TcpServerTransport;
import dev.entanglement.netty.TlsConfig;
import dev.entanglement.netty.WebSocketServerTransport;
import dev.entanglement.r2dbc.R2dbcStateStore;
import java.io.PrintWriter;
import java.net.BindException;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
import org.jspecify.annotations.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;
import reactor.netty.http.server.HttpServer;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code entanglement node}: runs a node until Ctrl-C, then closes the dials, the servers, the node
 * and its store.
 *
 * <p>Identity: the certificate and key given with {@code --cert}/{@code --key}, or else a
 * self-signed EC P-256 certificate made on first run in the data directory ({@code node.crt},
 * {@code node.key}) and reused afterwards. The node id defaults to {@code node-} and the first 8
 * characters of the certificate's fingerprint digest; the node's own owner id is its fingerprint,
 * so it stays the same across restarts on the same store.
 *
 * <p>Trust: peers over TLS are trusted by fingerprint, those named by {@code --connect} and {@code
 * --allow} (self-signed certificates work), and, with {@code --ca}, every peer whose certificate
 * chains to one of those CAs. The client still checks the dialed host name against the peer's
 * certificate.
 */
@Command(
    name = "node",
    sortOptions = false,
    description = {
      "Runs a node until Ctrl-C. Prints its id, fingerprint, addresses and the demo URL.",
      "Give at least one of --http, --listen and --connect."
    },
    footer = {
      "",
      "TLS peers: without --ca, only the fingerprints of --connect and --allow are",
      "trusted (self-signed certificates work); with --ca, also any peer whose",
      "certificate chains to those CAs.",
      "",
      "Policy teams: browsers connect to /ws?team=red|blue|staff&client=NAME;",
      "objects carry their team in a 'team' field; red and blue never see each",
      "other's objects; staff and TLS nodes see everything."
    })
final class NodeCommand implements Callable<Integer> {
  private static final Logger log = LoggerFactory.getLogger(NodeCommand.class);
  static final Duration STORE_TIMEOUT = Duration.ofSeconds(30);
  static final Duration BIND_TIMEOUT = Duration.ofSeconds(10);

  /** The node's policy. */
  enum PolicyMode {
    /** Everyone sees and writes everything. */
    open,
    /** {@link TeamsPolicy}. */
    teams
  }

  @Spec CommandSpec spec;

  @Option(names = "--id", paramLabel = "NAME",
      description = "The node id. Default: node- and the first 8 characters of the fingerprint's digest.")
  @Nullable String id;

  @Option(names = "--listen", paramLabel = "HOST:PORT", converter = HostPort.Converter.class,
      description = "Accepts peers over TCP with mutual TLS. Port 0 picks a free port.")
  @Nullable HostPort listen;

  @Option(names = "--http", paramLabel = "HOST:PORT", converter = HostPort.Converter.class,
      description = "Serves the browser demo at /, WebSocket peers at /ws, the node's JSON at /api/node and its statistics at /api/stats. Port 0 picks a free port.")
  @Nullable HostPort http;

  @Option(names = "--connect", paramLabel = "FINGERPRINT@HOST:PORT", converter = PeerAddress.Converter.class,
      description = "Keeps a TLS connection to this peer, redialing with backoff (repeatable).")
  List<PeerAddress> connect = new ArrayList<>();

  @Option(names = "--allow", paramLabel = "FINGERPRINT", converter = PeerAddress.FingerprintConverter.class,
      description = "Admits this peer when it connects to --listen (repeatable).")
  List<PeerId> allow = new ArrayList<>();

  @Option(names = "--ca", paramLabel = "FILE",
      description = "PEM CA certificates: peers whose certificate chains to them are trusted and admitted.")
  @Nullable Path ca;

  @Option(names = "--cert", paramLabel = "FILE", description = "The node's PEM certificate (chain, leaf first).")
  @Nullable Path cert;

  @Option(names = "--key", paramLabel = "FILE", description = "The node's PEM private key (PKCS#8, or EC/RSA traditional).")
  @Nullable Path key;

  @Option(names = "--data", paramLabel = "DIR", defaultValue = "data",
      description = "The data directory: generated certificate and key, default store. Default: ./${DEFAULT-VALUE}.")
  Path data;

  @Option(names = "--store", paramLabel = "h2:PATH|mem|postgresql://…", converter = StoreLocation.Converter.class,
      description = "Where the node keeps its state: an embedded H2 file (PATH without .mv.db), "
          + "memory, or PostgreSQL (postgresql://USER@HOST:PORT/DB). Default: h2:DIR/node under --data.")
  @Nullable StoreLocation store;

  @Option(names = "--bandwidth", paramLabel = "BYTES_PER_S", defaultValue = "0",
      description = "A bandwidth limit per connection, in bytes per second. Default: 0, unlimited.")
  long bandwidth;

  @Option(names = "--policy", paramLabel = "open|teams", defaultValue = "open",
      description = "Who sees and writes what: open (everyone, everything) or teams. Default: ${DEFAULT-VALUE}.")
  PolicyMode policy;

  @Option(names = "--metrics", paramLabel = "SECONDS", defaultValue = "0",
      description = "Log one line of statistics (per peer: staleness, conflation ratio, queue, traffic) "
          + "every SECONDS. Default: 0, off.")
  long metricsSeconds;

  /** Completes with the running node once it has started, or with the failure to start. */
  final CompletableFuture<RunningNode> started = new CompletableFuture<>();

  private final CountDownLatch stop = new CountDownLatch(1);

  /** Makes {@link #call()} shut the node down and return, as Ctrl-C does. */
  void stop() {
    stop.countDown();
  }

  @Override
  public Integer call() throws InterruptedException {
    RunningNode running;
    try {
      validate();
      running = start();
    } catch (RuntimeException e) {
      started.completeExceptionally(e);
      throw e;
    }
    CountDownLatch closed = new CountDownLatch(1);
    Thread hook =
        new Thread(
            () -> {
              stop();
              try {
                closed.await(30, TimeUnit.SECONDS);
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            },
            "entanglement-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    started.complete(running);
    try {
      stop.await();
    } finally {
      log.info("stopping node {}", running.node().id());
      running.close();
      closed.countDown();
      try {
        Runtime.getRuntime().removeShutdownHook(hook);
      } catch (IllegalStateException shuttingDown) {
        // the JVM is exiting: the hook is running
      }
    }
    return 0;
  }

  private void validate() {
    if (listen == null && http == null && connect.isEmpty()) {
      throw usage("nothing to do: give --http HOST:PORT (browser demo), --listen HOST:PORT (TLS peers) or --connect FINGERPRINT@HOST:PORT");
    }
    if ((cert == null) != (key == null)) {
      throw usage(cert == null ? "--key needs --cert" : "--cert needs --key");
    }
    if (id != null && !id.matches("[A-Za-z0-9][A-Za-z0-9._-]{0,63}")) {
      throw usage("--id must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit: '" + id + "'");
    }
    if (bandwidth < 0) {
      throw usage("--bandwidth must not be negative: " + bandwidth);
    }
    if (metricsSeconds < 0) {
      throw usage("--metrics must not be negative: " + metricsSeconds);
    }
    if (listen != null && ca == null && allow.isEmpty() && connect.isEmpty()) {
      throw usage("--listen needs --ca, --allow or --connect: otherwise no peer could ever be admitted");
    }
  }

  private ParameterException usage(String message) {
    return new ParameterException(spec.commandLine(), message);
  }

  /** Starts everything the options ask for; on failure, closes what had started. */
  RunningNode start() {
    NodeIdentity identity = cert != null && key != null ? NodeIdentity.load(cert, key) : NodeIdentity.loadOrCreate(data);
    List<X509Certificate> cas = ca == null ? List.of() : Certificates.readCertificates(ca);
    Set<PeerId> pinned = new LinkedHashSet<>(allow);
    connect.forEach(c -> pinned.add(c.fingerprint()));
    String nodeId = id != null ? id : identity.defaultNodeId();
    OwnerId owner = OwnerId.of(identity.fingerprint().value());
    StoreLocation where = store != null ? store : StoreLocation.h2(data.resolve("node"));
    if (where.kind() == StoreLocation.Kind.H2_FILE && where.file().toAbsolutePath().getParent() != null) {
      PkiCommand.createDirectory(where.file().toAbsolutePath().getParent());
    }

    AtomicReference<EntanglementNode> self = new AtomicReference<>();
    TeamsPolicy teams =
        policy == PolicyMode.teams
            ? new TeamsPolicy((type, k) -> self.get().get(type, k), Set.of(owner))
            : null;
    R2dbcStateStore stateStore = where.open();
    EntanglementNode node =
        EntanglementNode.builder()
            .id(nodeId)
            .owner(owner)
            .registry(DemoTypes.registry(teams != null ? teams : Policy.ALLOW_ALL))
            .store(stateStore)
            .build();
    self.set(node);
    RunningNode running = new RunningNode(node, identity);
    try {
      openStore(node, where);
      TlsConfig tls =
          listen != null || !connect.isEmpty()
              ? TlsConfig.builder()
                  .keyCertChain(identity.key(), identity.chain().toArray(X509Certificate[]::new))
                  .trustedCertificates(cas.toArray(X509Certificate[]::new))
                  .trustedFingerprints(pinned)
                  .build()
              : null;
      if (listen != null) {
        boolean admitCaPeers = !cas.isEmpty();
        DisposableServer server =
            bind(listen, "TLS", () ->
                TcpServerTransport.builder(node)
                    .host(listen.host())
                    .port(listen.port())
                    .tls(tls)
                    .destinations(pinned)
                    // A peer that is not pinned passed the handshake only by chaining to a CA.
                    .unknownDestination(peer -> Mono.just(admitCaPeers))
                    .bandwidth(bandwidth)
                    .build()
                    .bind());
        running.tls(server, listen.withPort(server.port()));
      }
      if (http != null) {
        WebSocketPeers peers = new WebSocketPeers(node, teams);
        WebSocketServerTransport ws =
            WebSocketServerTransport.builder(node).upgrade(peers::upgrade).bandwidth(bandwidth).build();
        HttpFrontend frontend = new HttpFrontend(peers.tracking(ws.handler()), () -> StatsJson.of(node));
        DisposableServer server =
            bind(http, "HTTP", () ->
                HttpServer.create().host(http.host()).port(http.port()).handle(frontend::handle).bind()
                    .map(s -> (DisposableServer) s));
        running.http(server, http.withPort(server.port()));
        frontend.nodeJson(nodeJson(running));
      }
      for (PeerAddress peer : connect) {
        running.dialer(
            TcpClientTransport.builder(node)
                .remote(peer.address().host(), peer.address().port())
                .expect(peer.fingerprint())
                .tls(tls)
                .bandwidth(bandwidth)
                .build()
                .maintain());
      }
    } catch (RuntimeException e) {
      running.abandon();
      throw e;
    }
    log.info("node {} started: policy {}, store {}, {} pinned peer(s), {} CA certificate(s)",
        nodeId, policy, where, pinned.size(), cas.size());
    if (metricsSeconds > 0) {
      // Ends by itself when the node closes.
      node.statsEvery(Duration.ofSeconds(metricsSeconds))
          .subscribe(stats -> log.info("{}", MetricsLine.format(stats)));
    }
    print(spec.commandLine().getOut(), running);
    return running;
  }

  private static void openStore(EntanglementNode node, StoreLocation where) {
    try {
      node.start().block(STORE_TIMEOUT);
    } catch (IllegalStateException e) {
      if (e.getMessage() != null && e.getMessage().startsWith("Timeout")) {
        throw new CliException("cannot open the store " + where + ": no answer within " + STORE_TIMEOUT.toSeconds() + " s", e);
      }
      throw new CliException("cannot open the store " + where + ": " + Entanglement.describe(e), e);
    } catch (RuntimeException e) {
      throw new CliException("cannot open the store " + where + ": " + Entanglement.describe(e), e);
    }
  }

  private static DisposableServer bind(HostPort address, String what, Supplier<Mono<DisposableServer>> server) {
    try {
      DisposableServer bound = server.get().block(BIND_TIMEOUT);
      if (bound == null) {
        throw new CliException("cannot listen on " + address + " (" + what + "): no server");
      }
      return bound;
    } catch (RuntimeException e) {
      throw new CliException("cannot listen on " + address + " (" + what + "): " + bindFailure(e), e);
    }
  }

  private static String bindFailure(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof BindException
          || (t.getMessage() != null && t.getMessage().contains("Address already in use"))) {
        return t.getMessage() != null && t.getMessage().contains("Address already in use")
            ? "address already in use"
            : Certificates.oneLine(t.getMessage());
      }
      if (t instanceof UnknownHostException) {
        return "unknown host";
      }
    }
    return Entanglement.describe(e);
  }

  /** Prints one line each: node id, fingerprint, TLS address, HTTP address, demo URL. */
  private static void print(PrintWriter out, RunningNode running) {
    out.printf(Locale.ROOT, "%-12s %s%n", "node", running.node().id());
    out.printf(Locale.ROOT, "%-12s %s%n", "fingerprint", running.identity().fingerprint());
    if (running.tlsAddress() != null) {
      out.printf(Locale.ROOT, "%-12s %s%n", "tls", running.tlsAddress());
    }
    if (running.httpAddress() != null) {
      out.printf(Locale.ROOT, "%-12s %s%n", "http", running.httpAddress());
      out.printf(Locale.ROOT, "%-12s %s%n", "demo", demoUrl(running.httpAddress()));
    }
    out.flush();
  }

  /** The URL a browser on this machine opens: a wildcard address becomes {@code localhost}. */
  static String demoUrl(HostPort http) {
    HostPort reachable = http.isWildcard() ? new HostPort("localhost", http.port()) : http;
    return "http://" + reachable + "/";
  }

  private byte[] nodeJson(RunningNode running) {
    Map<String, Object> addresses = new LinkedHashMap<>();
    addresses.put("tls", running.tlsAddress() == null ? null : running.tlsAddress().toString());
    addresses.put("http", running.httpAddress() == null ? null : running.httpAddress().toString());
    Map<String, Object> json = new LinkedHashMap<>();
    json.put("id", running.node().id());
    json.put("fingerprint", running.identity().fingerprint().value());
    json.put("policy", policy.name());
    json.put("addresses", addresses);
    json.put("websocket", HttpFrontend.WEBSOCKET_PATH);
    return JsonMapper.builder().build().writeValueAsBytes(json);
  }
}
