package dev.entanglement.netty;

import dev.entanglement.PeerId;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * Keeps one outbound connection alive.
 *
 * <p>States: {@code WAITING} (a timer is armed) → {@code DIALING} → {@code CONNECTED} (the link is
 * attached) → {@code WAITING} when it closes or a dial fails; {@code STOPPED} on dispose or when
 * the node closes (terminal). Disposed, it cancels what it is doing, a connected link included; when
 * the node closes it cancels a wait or a dial but leaves a connected link to the node, which ends it
 * with a GOAWAY (cancelling it would cut that frame off).
 * While the node is connected to the peer by the peer's own dial, and that dial wins the
 * tie-break, no dial is made: it looks again within the first backoff.
 * The attempt counter grows with each failure and resets when a connection lasted longer than the
 * current backoff ceiling, so a flapping peer does not get hammered.
 */
final class Dialer implements Disposable {
  private static final Logger log = LoggerFactory.getLogger(Dialer.class);

  private final TcpClientTransport transport;
  /** No more dials: set by {@link #dispose} and when the node closes. */
  private final AtomicBoolean stopped = new AtomicBoolean();
  private final AtomicBoolean disposed = new AtomicBoolean();
  private volatile Disposable current = reactor.core.Disposables.disposed();
  /** Stops this dialer when its node closes: dialling for a closed node would fail for ever. */
  private volatile Disposable whenNodeCloses = reactor.core.Disposables.disposed();
  private int attempt;
  /**
   * The current step holds a connection (attached, or waiting for the peer's HELLO to be attached,
   * which the node's close ends: {@code TcpClientTransport.attachDialled}).
   */
  private volatile boolean connected;

  Dialer(TcpClientTransport transport) {
    this.transport = transport;
  }

  Dialer start() {
    whenNodeCloses = transport.node().onClose().subscribe(v -> {}, e -> {}, this::nodeClosing);
    dial();
    return this;
  }

  private void dial() {
    if (stopped.get()) {
      return;
    }
    PeerId peer = transport.expected();
    PeerId local = transport.localIdentity();
    if (peer != null
        && local != null
        && transport.node().isConnected(peer)
        && !PeerOrder.localDialWins(local, peer)) {
      // The peer's own dial is the connection both sides keep; look again soon, in case that link
      // closes and the peer does not dial again.
      schedule(transport.backoff().delay(0));
      return;
    }
    long started = System.nanoTime();
    Mono<Void> attempt;
    try {
      attempt = transport.connect().flatMap(link -> {
        connected = true;
        return transport.attachDialled(link);
      });
    } catch (RuntimeException e) { // a client customizer that throws: retried, never silent
      attempt = Mono.error(e);
    }
    current =
        attempt.subscribe(
            v -> {},
            e -> {
              log.warn("dial to {} failed: {}", peer, e.toString());
              retry(started);
            },
            () -> retry(started));
    stopIfDisposed();
  }

  private void retry(long startedNanos) {
    connected = false;
    Duration lasted = Duration.ofNanos(System.nanoTime() - startedNanos);
    if (lasted.compareTo(transport.backoff().ceiling(attempt)) > 0) {
      attempt = 0;
    } else {
      attempt++;
    }
    schedule(transport.backoff().delay(attempt));
  }

  private void schedule(Duration delay) {
    if (!stopped.get()) {
      current = Mono.delay(delay, Schedulers.parallel()).subscribe(t -> dial());
      stopIfDisposed();
    }
  }

  /**
   * A dispose that ran between a step's check of {@code stopped} and its assignment of {@code
   * current} disposed the previous step: the new one is disposed here.
   */
  private void stopIfDisposed() {
    if (disposed.get() || stopped.get() && !connected) {
      current.dispose();
    }
  }

  /** Stops dialing; a connected link is the node's to close (see the class note). */
  private void nodeClosing() {
    if (stopped.compareAndSet(false, true) && !connected) {
      current.dispose();
    }
  }

  @Override
  public void dispose() {
    if (disposed.compareAndSet(false, true)) {
      stopped.set(true);
      current.dispose();
      whenNodeCloses.dispose();
    }
  }

  @Override
  public boolean isDisposed() {
    return stopped.get();
  }
}
