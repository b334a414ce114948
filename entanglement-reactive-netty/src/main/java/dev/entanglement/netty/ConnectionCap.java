package dev.entanglement.netty;

import io.netty.channel.Channel;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Caps the connections a server transport holds open at once. A connection accepted beyond the
 * cap is closed at once, before TLS or any frame is read, and logged at WARN with its address.
 *
 * <p>Invariant: {@code open} counts the admitted connections that have not closed yet; it is
 * incremented when a connection is admitted and decremented exactly once, when that connection's
 * channel closes. Refused connections are never counted.
 */
final class ConnectionCap {
  private static final Logger log = LoggerFactory.getLogger(ConnectionCap.class);

  private final int max;
  private final AtomicInteger open = new AtomicInteger();

  ConnectionCap(int max) {
    this.max = max;
  }

  /**
   * Admits a new connection or closes it. Called when the server initializes the channel.
   *
   * @return whether the connection was admitted
   */
  boolean admit(Channel ch) {
    if (open.incrementAndGet() > max) {
      open.decrementAndGet();
      log.warn("refused connection from {}: {} connections open, the cap", ch.remoteAddress(), max);
      ch.close();
      return false;
    }
    ch.closeFuture().addListener(f -> open.decrementAndGet());
    return true;
  }
}
