package dev.entanglement.netty;

import io.netty.channel.Channel;
import io.netty.channel.socket.DuplexChannel;
import io.netty.handler.ssl.SslHandler;
import io.netty.util.AttributeKey;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Closes a stream connection after its last frame without losing that frame. Closing a socket while
 * the peer is still sending makes the kernel answer with a reset, and a reset can discard what the
 * peer had not read yet: the ERROR that explains the close among it. So the output is shut first
 * (after a TLS close_notify): the peer reads every frame, then end of stream, and closes its side,
 * which closes the connection; a peer that does not is closed after {@link #LINGER}. Input that
 * arrives meanwhile is read and discarded by whoever reads the connection: reading is switched on
 * again, since a reader that had stopped asking (a full window, a paused link) would otherwise leave
 * the peer's end of stream unread, and the close after the linger would reset the connection.
 *
 * <p>The channel is marked {@link #lingering} meanwhile. A write then fails (the output is shut),
 * and a writer that meets such a failure leaves the close to the linger: closing at once would
 * bring back the reset (the engine, not told of a refusal by the frame decoder, may well send
 * another frame; found by review, session 30).
 */
final class GracefulClose {
  /** How long a connection whose output is shut waits for the peer to close its side: 2 s. */
  static final Duration LINGER = Duration.ofSeconds(2);

  private static final AttributeKey<Boolean> LINGERING = AttributeKey.valueOf("entanglement.lingering");

  private GracefulClose() {}

  /** Whether {@code ch}'s output is shut, or being shut, by {@link #afterFlush}. */
  static boolean lingering(Channel ch) {
    return Boolean.TRUE.equals(ch.attr(LINGERING).get());
  }

  /**
   * Bounds a close that starts by writing a last frame (a WebSocket close frame): unless {@code ch}
   * has begun its graceful close ({@link #lingering}) within {@link #LINGER}, {@code close} runs. A
   * peer that reads nothing keeps that frame, and with it the close, waiting for good otherwise.
   * On {@code ch}'s event loop.
   */
  static void closeIfStuck(Channel ch, Runnable close) {
    try {
      ch.eventLoop().schedule(
          () -> {
            if (ch.isActive() && !lingering(ch)) {
              close.run();
            }
          },
          LINGER.toMillis(), TimeUnit.MILLISECONDS);
    } catch (java.util.concurrent.RejectedExecutionException e) { // the loop is shutting down
      close.run();
    }
  }

  /** Shuts the output after everything written so far, then closes; {@code close} closes at once. */
  static void afterFlush(Channel ch, Runnable close) {
    if (!(ch instanceof DuplexChannel duplex) || !ch.isActive()) {
      close.run();
      return;
    }
    ch.attr(LINGERING).set(Boolean.TRUE);
    ch.eventLoop().schedule(close, LINGER.toMillis(), TimeUnit.MILLISECONDS);
    ch.config().setAutoRead(true);
    SslHandler ssl = ch.pipeline().get(SslHandler.class);
    if (ssl != null) {
      ssl.closeOutbound().addListener(f -> duplex.shutdownOutput());
    } else {
      duplex.shutdownOutput();
    }
  }
}
