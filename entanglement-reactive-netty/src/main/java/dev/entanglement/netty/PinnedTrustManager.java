package dev.entanglement.netty;

import dev.entanglement.PeerId;
import java.io.IOException;
import java.net.Socket;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.util.Set;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedTrustManager;
import org.jspecify.annotations.Nullable;

/**
 * Trusts a peer whose leaf certificate has a pinned fingerprint and is within its validity period,
 * whoever issued it; any other peer must chain to one of the CA certificates, if there are any.
 *
 * <p>Every refusal names the leaf's fingerprint in its message ("certificate ni:///…: reason"), so
 * that the transport's log of a failed handshake ({@link HandshakeLog}) says who was refused.
 *
 * <p>It names no acceptable issuers in the handshake, so that a peer whose pinned certificate is
 * self-signed (or from another CA) still sends it, and a peer refused for its CA is refused by its
 * fingerprint rather than for sending no certificate.
 */
final class PinnedTrustManager extends X509ExtendedTrustManager {
  private final Set<PeerId> pinned;
  private final @Nullable X509ExtendedTrustManager cas;

  PinnedTrustManager(Set<PeerId> pinned, X509Certificate[] cas) {
    this.pinned = Set.copyOf(pinned);
    this.cas = cas.length == 0 ? null : caTrustManager(cas);
  }

  private static X509ExtendedTrustManager caTrustManager(X509Certificate[] cas) {
    try {
      KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
      store.load(null, null);
      for (int i = 0; i < cas.length; i++) {
        store.setCertificateEntry("ca-" + i, cas[i]);
      }
      TrustManagerFactory factory =
          TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      factory.init(store);
      for (TrustManager tm : factory.getTrustManagers()) {
        if (tm instanceof X509ExtendedTrustManager x) {
          return x;
        }
      }
      throw new IllegalStateException("the JDK offers no X.509 trust manager");
    } catch (GeneralSecurityException | IOException e) {
      throw new IllegalStateException("cannot build a trust manager for the CA certificates", e);
    }
  }

  /** The CA trust manager to consult, or none if the leaf is pinned and valid. */
  private @Nullable X509ExtendedTrustManager delegate(X509Certificate leaf, PeerId fingerprint)
      throws CertificateException {
    if (pinned.contains(fingerprint)) {
      leaf.checkValidity();
      return null;
    }
    if (cas == null) {
      throw new CertificateException("not pinned");
    }
    return cas;
  }

  /** A check by the CA trust manager. */
  @FunctionalInterface
  private interface CaCheck {
    void run(X509ExtendedTrustManager cas) throws CertificateException;
  }

  /** Trusts a pinned, valid leaf, or else asks the CAs; a refusal names the leaf's fingerprint. */
  private void check(X509Certificate[] chain, CaCheck caCheck) throws CertificateException {
    if (chain == null || chain.length == 0) {
      throw new CertificateException("no certificate");
    }
    PeerId fingerprint = Fingerprints.of(chain[0]);
    try {
      X509ExtendedTrustManager d = delegate(chain[0], fingerprint);
      if (d != null) {
        caCheck.run(d);
      }
    } catch (CertificateException e) {
      throw new CertificateException("certificate " + fingerprint + ": " + e.getMessage(), e);
    }
  }

  @Override
  public void checkClientTrusted(X509Certificate[] chain, String authType)
      throws CertificateException {
    check(chain, d -> d.checkClientTrusted(chain, authType));
  }

  @Override
  public void checkServerTrusted(X509Certificate[] chain, String authType)
      throws CertificateException {
    check(chain, d -> d.checkServerTrusted(chain, authType));
  }

  @Override
  public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket)
      throws CertificateException {
    check(chain, d -> d.checkClientTrusted(chain, authType, socket));
  }

  @Override
  public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket)
      throws CertificateException {
    check(chain, d -> d.checkServerTrusted(chain, authType, socket));
  }

  @Override
  public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine)
      throws CertificateException {
    check(chain, d -> d.checkClientTrusted(chain, authType, engine));
  }

  @Override
  public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine)
      throws CertificateException {
    check(chain, d -> d.checkServerTrusted(chain, authType, engine));
  }

  @Override
  public X509Certificate[] getAcceptedIssuers() {
    return new X509Certificate[0];
  }
}
