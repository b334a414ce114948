package dev.entanglement.benchmarks;

import dev.entanglement.PeerId;
import dev.entanglement.netty.Fingerprints;
import dev.entanglement.netty.TlsConfig;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.openssl.jcajce.JcaPKCS8Generator;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A throw-away certificate authority for the TLS runs of the harnesses, made at start and never
 * stored: EC P-256 keys, leaf certificates valid for one day with SAN {@code DNS:localhost} and
 * {@code IP:127.0.0.1}, for both client and server authentication.
 */
final class BenchPki {
  private static final SecureRandom RANDOM = new SecureRandom();

  private final KeyPair caKeys;
  private final X500Name caName;
  final X509Certificate ca;

  /** A key, its certificate and the CA certificate that every peer trusts. */
  record Identity(PrivateKey key, X509Certificate certificate, X509Certificate ca) {
    TlsConfig tls(boolean jdkProvider) {
      TlsConfig.Builder b = TlsConfig.builder().keyCertChain(key, certificate).trustedCertificates(ca);
      if (jdkProvider) {
        b.jdkProvider();
      }
      return b.build();
    }

    PeerId fingerprint() {
      return Fingerprints.of(certificate);
    }

    /**
     * Writes {@code name.crt}, {@code name.key} (unencrypted PKCS#8) and {@code ca.crt} in {@code
     * dir}, all deleted (with {@code dir}) when this JVM exits.
     */
    void writePem(Path dir, String name) {
      // Throw-away material: removed when the JVM exits (files first, then the directory).
      dir.toFile().deleteOnExit();
      for (String f : new String[] {name + ".crt", name + ".key", "ca.crt"}) {
        dir.resolve(f).toFile().deleteOnExit();
      }
      write(dir.resolve(name + ".crt").toFile(), certificate);
      write(dir.resolve(name + ".key").toFile(), key);
      write(dir.resolve("ca.crt").toFile(), ca);
    }
  }

  BenchPki(String name) {
    caKeys = keyPair();
    caName = new X500Name("CN=" + name);
    ca = sign(caName, caKeys, caName, caKeys.getPrivate(), true);
  }

  /** A leaf identity signed by this CA. */
  Identity issue(String commonName) {
    KeyPair kp = keyPair();
    return new Identity(
        kp.getPrivate(),
        sign(new X500Name("CN=" + commonName), kp, caName, caKeys.getPrivate(), false),
        ca);
  }

  /** Reads an identity written by {@link Identity#writePem} as a {@link TlsConfig}. */
  static TlsConfig readTls(Path dir, String name, boolean jdkProvider) {
    TlsConfig.Builder b =
        TlsConfig.builder()
            .keyCertChain(dir.resolve(name + ".crt").toFile(), dir.resolve(name + ".key").toFile())
            .trustedCertificates(dir.resolve("ca.crt").toFile());
    if (jdkProvider) {
      b.jdkProvider();
    }
    return b.build();
  }

  private static KeyPair keyPair() {
    try {
      KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
      g.initialize(new ECGenParameterSpec("secp256r1"), RANDOM);
      return g.generateKeyPair();
    } catch (java.security.GeneralSecurityException e) {
      throw new IllegalStateException("cannot generate an EC P-256 key", e);
    }
  }

  private static X509Certificate sign(
      X500Name subject, KeyPair subjectKeys, X500Name issuer, PrivateKey issuerKey, boolean isCa) {
    Instant now = Instant.now();
    try {
      X509v3CertificateBuilder b =
          new JcaX509v3CertificateBuilder(
              issuer,
              new BigInteger(96, RANDOM),
              Date.from(now.minus(Duration.ofHours(1))),
              Date.from(now.plus(Duration.ofDays(1))),
              subject,
              subjectKeys.getPublic());
      b.addExtension(Extension.basicConstraints, true, new BasicConstraints(isCa));
      if (isCa) {
        b.addExtension(
            Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
      } else {
        b.addExtension(
            Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyAgreement));
        b.addExtension(
            Extension.extendedKeyUsage,
            false,
            new ExtendedKeyUsage(
                new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}));
        b.addExtension(
            Extension.subjectAlternativeName,
            false,
            new GeneralNames(
                new GeneralName[] {
                  new GeneralName(GeneralName.dNSName, "localhost"),
                  new GeneralName(GeneralName.iPAddress, "127.0.0.1")
                }));
      }
      return new JcaX509CertificateConverter()
          .getCertificate(b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(issuerKey)));
    } catch (Exception e) {
      throw new IllegalStateException("cannot sign a certificate for " + subject, e);
    }
  }

  private static void write(File file, Object value) {
    try (JcaPEMWriter w =
        new JcaPEMWriter(Files.newBufferedWriter(file.toPath(), StandardCharsets.US_ASCII))) {
      w.writeObject(value instanceof PrivateKey k ? new JcaPKCS8Generator(k, null) : value);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + file, e);
    }
  }
}
