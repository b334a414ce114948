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
import java.util.List;
import java.util.Objects;
import javax.net.ssl.SSLException;
import org.jspecify.annotations.Nullable;

/**
 * Mutual TLS settings of a node: its key and certificate chain, and the CA certificates it trusts
 * for its peers (system CAs are never trusted). Protocols TLS 1.3 and 1.2. The OpenSSL provider
 * (netty-tcnative) is used when it is available, the JDK provider otherwise; {@link #provider()}
 * says which.
 */
public final class TlsConfig {
  private static final String[] PROTOCOLS = {"TLSv1.3", "TLSv1.2"};

  private final PrivateKey key;
  private final X509Certificate[] chain;
  private final X509Certificate[] trusted;
  private final SslProvider provider;

  private TlsConfig(Builder b) {
    this.key = Objects.requireNonNull(b.key, "key");
    this.chain = Objects.requireNonNull(b.chain, "certificate chain");
    if (b.trusted == null || b.trusted.length == 0) {
      throw new IllegalStateException("trusted CA certificates are required for mutual TLS");
    }
    this.trusted = b.trusted;
    this.provider = b.jdkOnly || !OpenSsl.isAvailable() ? SslProvider.JDK : SslProvider.OPENSSL;
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
    try {
      return SslContextBuilder.forServer(key, chain)
          .trustManager(trusted)
          .clientAuth(ClientAuth.REQUIRE)
          .protocols(PROTOCOLS)
          .sslProvider(provider)
          .build();
    } catch (SSLException e) {
      throw new IllegalStateException("invalid TLS server settings", e);
    }
  }

  SslContext clientContext() {
    try {
      return SslContextBuilder.forClient()
          .keyManager(key, chain)
          .trustManager(trusted)
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

  /** Builds {@link TlsConfig}. */
  public static final class Builder {
    private @Nullable PrivateKey key;
    private X509Certificate @Nullable [] chain;
    private X509Certificate @Nullable [] trusted;
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
