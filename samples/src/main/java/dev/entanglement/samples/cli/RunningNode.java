package dev.entanglement.samples.cli;

import dev.entanglement.EntanglementNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.jspecify.annotations.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.Disposable;
import reactor.netty.DisposableServer;

/**
 * A node started by {@code entanglement node}, with what it serves and dials. {@link #close()}
 * closes the node first, which ends each link with a GOAWAY and waits until its store has written
 * everything and closes it; then it stops the dials and the servers.
 */
final class RunningNode implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RunningNode.class);
  private static final Duration SERVER_STOP = Duration.ofSeconds(5);
  private static final Duration NODE_STOP = Duration.ofSeconds(20);

  private final EntanglementNode node;
  private final NodeIdentity identity;
  private final List<Disposable> dialers = new ArrayList<>();
  private @Nullable DisposableServer tls;
  private @Nullable HostPort tlsAddress;
  private @Nullable DisposableServer http;
  private @Nullable HostPort httpAddress;

  RunningNode(EntanglementNode node, NodeIdentity identity) {
    this.node = node;
    this.identity = identity;
  }

  EntanglementNode node() {
    return node;
  }

  NodeIdentity identity() {
    return identity;
  }

  /** The TLS listener's bound address, if it listens. */
  @Nullable HostPort tlsAddress() {
    return tlsAddress;
  }

  /** The HTTP server's bound address, if it serves HTTP. */
  @Nullable HostPort httpAddress() {
    return httpAddress;
  }

  void tls(DisposableServer server, HostPort address) {
    this.tls = server;
    this.tlsAddress = address;
  }

  void http(DisposableServer server, HostPort address) {
    this.http = server;
    this.httpAddress = address;
  }

  void dialer(Disposable dialer) {
    dialers.add(dialer);
  }

  @Override
  public void close() {
    close(false);
  }

  /**
   * Closes what a start that failed had opened. Failures to close are then expected (a store that
   * never opened cannot close), so they are logged at debug level only: the start's own error is
   * the one to report.
   */
  void abandon() {
    close(true);
  }

  private void close(boolean quiet) {
    // The node first: it ends every link with a GOAWAY (its dialers stop dialing and leave their
    // links to it); stopping a server or a dialer first would cut those links without one.
    try {
      node.close().block(NODE_STOP);
    } catch (RuntimeException e) {
      report(quiet, "closing the node: {}", Entanglement.describe(e));
    }
    dialers.forEach(Disposable::dispose);
    stop(http, "HTTP server", quiet);
    stop(tls, "TLS listener", quiet);
  }

  private static void stop(@Nullable DisposableServer server, String what, boolean quiet) {
    if (server == null) {
      return;
    }
    try {
      server.disposeNow(SERVER_STOP);
    } catch (RuntimeException e) {
      report(quiet, "stopping the " + what + ": {}", Entanglement.describe(e));
    }
  }

  private static void report(boolean quiet, String format, String failure) {
    if (quiet) {
      log.debug(format, failure);
    } else {
      log.warn(format, failure);
    }
  }
}
