package dev.entanglement.netty;

import dev.entanglement.PeerId;
import io.netty.handler.ssl.SslHandler;
import java.security.cert.X509Certificate;
import javax.net.ssl.SSLPeerUnverifiedException;
import org.jspecify.annotations.Nullable;
import reactor.netty.Connection;

/** What a dialing client checks about the server it reached over TLS. */
final class ServerIdentity {
  private ServerIdentity() {}

  /**
   * The server's identity on a TLS connection, after checking that its certificate is valid for
   * {@code serverName} and, if {@code expected} is given, that it is the expected fingerprint.
   *
   * @return the fingerprint, or {@code null} if the connection has no TLS
   * @throws WrongPeerException if a check fails
   */
  static @Nullable PeerId verify(Connection c, String serverName, @Nullable PeerId expected) {
    SslHandler ssl = c.channel().pipeline().get(SslHandler.class);
    if (ssl == null) {
      return null;
    }
    X509Certificate leaf;
    try {
      leaf = (X509Certificate) ssl.engine().getSession().getPeerCertificates()[0];
    } catch (SSLPeerUnverifiedException e) {
      throw new WrongPeerException("the server presented no certificate");
    }
    if (!HostNames.matches(leaf, serverName)) {
      throw new WrongPeerException("the server's certificate is not valid for " + serverName);
    }
    PeerId peer = Fingerprints.of(leaf);
    if (expected != null && !expected.equals(peer)) {
      throw new WrongPeerException(
          "expected " + expected + " at " + serverName + " but reached " + peer);
    }
    return peer;
  }
}
