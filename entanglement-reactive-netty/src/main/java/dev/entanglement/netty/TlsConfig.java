package dev.entanglement.netty;

import dev.entanglement.PeerId;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.OpenSsl;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import java.io.File;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.Collection;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import javax.net.ssl.SSLException;
import org.jspecify.annotations.Nullable;

/**
 * Mutual TLS settings of a node: its key and certificate chain, and what it trusts for its peers:
 * CA certificates, pinned certificate fingerprints, or both (system CAs are never trusted). A peer
 * passes the handshake if its leaf certificate is pinned and within its validity period, or if its
 * chain verifies to one of the CAs. Protocols TLS 1.3 and 1.2. The OpenSSL provider (netty-tcnative)
 * is used when it is available, the JDK provider otherwise; {@link #provider()} says which.
 */
public final class TlsConfig {
  private static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};

  private final PrivateKey key;
  private final X509Certificate[] chain;
  private final X509Certificate[] trusted;
  private final Set<PeerId> pinned;
  private final SslProvider provider;
  private final SslContext server;
  private final SslContext client;

  /**
   * Builds the server and client contexts once, on the caller's thread: building one reads random
   * bytes, which may block, and a context is shared by every connection (a redial runs on a timer
   * thread, where blocking is not allowed).
   */
  private TlsConfig(Builder b) {
    this.key = Objects.requireNonNull(b.key, "key");
    this.chain = Objects.requireNonNull(b.chain, "certificate chain");
    this.trusted = b.trusted == null ? new X509Certificate[0] : b.trusted;
    this.pinned = Set.copyOf(b.pinned);
    if (trusted.length == 0 && pinned.isEmpty()) {
      throw new IllegalStateException(
          "trusted CA certificates or pinned fingerprints are required for mutual TLS");
    }
    this.provider = b.jdkOnly || !OpenSsl.isAvailable() ? SslProvider.JDK : SslProvider.OPENSSL;
    this.server = buildServerContext();
    this.client = buildClientContext();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** This node's identity: the fingerprint of its leaf certificate. */
  public PeerId identity() {
    return Fingerprints.of(chain[0]);
  }

  /** The TLS provider in use: {@code OPENSSL} or {@code JDK}. */
  public String provider() {
    return provider.name();
  }

  SslContext serverContext() {
    return server;
  }

  SslContext clientContext() {
    return client;
  }

  private SslContext buildServerContext() {
    try {
      return trust(SslContextBuilder.forServer(key, chain))
          .clientAuth(ClientAuth.REQUIRE)
          .protocols(PROTOCOLS)
          .sslProvider(provider)
          .build();
    } catch (SSLException e) {
      throw new IllegalStateException("invalid TLS server settings", e);
    }
  }

  private SslContext buildClientContext() {
    try {
      return trust(SslContextBuilder.forClient().keyManager(key, chain))
          .protocols(PROTOCOLS)
          .sslProvider(provider)
          // Host names are checked by the transport after the handshake (HostNames), against the
          // configured server name rather than the dialed address.
          .endpointIdentificationAlgorithm(null)
          .build();
    } catch (SSLException e) {
      throw new IllegalStateException("invalid TLS client settings", e);
    }
  }

  private SslContextBuilder trust(SslContextBuilder builder) {
    return builder.trustManager(new PinnedTrustManager(pinned, trusted));
  }

  /** Builds {@link TlsConfig}. */
  public static final class Builder {
    private @Nullable PrivateKey key;
    private X509Certificate @Nullable [] chain;
    private X509Certificate @Nullable [] trusted;
    private final Set<PeerId> pinned = new LinkedHashSet<>();
    private boolean jdkOnly;

    private Builder() {}

    /** The node's private key and certificate chain (leaf first). */
    public Builder keyCertChain(PrivateKey key, X509Certificate... chain) {
      this.key = key;
      this.chain = chain.clone();
      return this;
    }

    /** The node's key and certificate chain from PEM files. */
    public Builder keyCertChain(File certificateChainPem, File privateKeyPem) {
      this.key = Pem.privateKey(privateKeyPem);
      this.chain = Pem.certificates(certificateChainPem).toArray(X509Certificate[]::new);
      return this;
    }

    /** The CA certificates that peers' certificates must chain to. */
    public Builder trustedCertificates(X509Certificate... cas) {
      this.trusted = cas.clone();
      return this;
    }

    /** The CA certificates from a PEM file. */
    public Builder trustedCertificates(File caPem) {
      List<X509Certificate> cas = Pem.certificates(caPem);
      this.trusted = cas.toArray(X509Certificate[]::new);
      return this;
    }

    /**
     * Peers trusted by the fingerprint of their leaf certificate ({@link Fingerprints}), whoever
     * issued it: self-signed certificates work. Default: none. Trust decides only who may complete
     * the handshake; which peers are admitted is still the transports' decision.
     */
    public Builder trustedFingerprints(Collection<PeerId> fingerprints) {
      fingerprints.forEach(f -> pinned.add(Objects.requireNonNull(f)));
      return this;
    }

    /** Uses the JDK provider even when OpenSSL is available. Default: OpenSSL when available. */
    public Builder jdkProvider() {
      this.jdkOnly = true;
      return this;
    }

    public TlsConfig build() {
      return new TlsConfig(this);
    }
  }
}
