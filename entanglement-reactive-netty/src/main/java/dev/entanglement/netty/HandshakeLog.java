package dev.entanglement.netty;

import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.ssl.SslHandshakeCompletionEvent;
import java.security.cert.CertificateException;
import java.util.IdentityHashMap;
import java.util.Map;
import org.jspecify.annotations.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Logs, at WARN, every TLS handshake that a server transport's peer fails: another CA, an expired
 * certificate, a fingerprint that is neither pinned nor issued by a trusted CA, no client
 * certificate, or no handshake within the TLS handshake timeout. The line names the peer's address
 * and the reason; when the peer presented a certificate, the reason starts with its fingerprint
 * (see {@link PinnedTrustManager}). The handler only watches: the TLS handler closes the connection.
 *
 * <p>Stateless and shared by every connection of a transport.
 */
@ChannelHandler.Sharable
final class HandshakeLog extends ChannelInboundHandlerAdapter {
  static final String NAME = "entanglement.handshakeLog";
  private static final Logger log = LoggerFactory.getLogger(HandshakeLog.class);
  /** Longest reason logged: a peer cannot fill the log through a long certificate field. */
  private static final int REASON_CHARS = 300;

  static final HandshakeLog INSTANCE = new HandshakeLog();

  private HandshakeLog() {}

  @Override
  public void userEventTriggered(ChannelHandlerContext ctx, Object evt) throws Exception {
    if (evt instanceof SslHandshakeCompletionEvent e && !e.isSuccess()) {
      log.warn("refused TLS connection from {}: {}", ctx.channel().remoteAddress(), reason(e.cause()));
    }
    ctx.fireUserEventTriggered(evt);
  }

  /**
   * The trust manager's refusal if there is one in the causes (OpenSSL reports its own alert and
   * keeps the trust manager's exception as a cause or a suppressed exception), else the message.
   */
  static String reason(Throwable t) {
    CertificateException refusal = find(t, new IdentityHashMap<>());
    String text = refusal != null ? refusal.getMessage() : t.toString();
    String oneLine = String.valueOf(text).replaceAll("\\p{Cntrl}", " ");
    return oneLine.length() <= REASON_CHARS ? oneLine : oneLine.substring(0, REASON_CHARS) + "…";
  }

  private static @Nullable CertificateException find(
      @Nullable Throwable t, Map<Throwable, Boolean> seen) {
    if (t == null || seen.put(t, true) != null) {
      return null;
    }
    // The outermost refusal carries the fingerprint; the JDK's own cause (expiry, path) is inside.
    if (t instanceof CertificateException c) {
      return c;
    }
    CertificateException found = find(t.getCause(), seen);
    for (Throwable s : t.getSuppressed()) {
      if (found == null) {
        found = find(s, seen);
      }
    }
    return found;
  }
}
