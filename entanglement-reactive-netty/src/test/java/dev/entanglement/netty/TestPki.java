package dev.entanglement.netty;

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
import java.time.Duration;
import java.time.Instant;
import java.util.Date;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.openssl.jcajce.JcaPKCS8Generator;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/** A throw-away certificate authority for tests: EC P-256 keys, certificates for 127.0.0.1. */
final class TestPki {
  record Identity(PrivateKey key, X509Certificate certificate, X509Certificate ca) {
    TlsConfig tls() {
      return TlsConfig.builder().keyCertChain(key, certificate).trustedCertificates(ca).build();
    }

    dev.entanglement.PeerId fingerprint() {
      return Fingerprints.of(certificate);
    }

    /** Writes this identity as PEM files trusting its own CA; see {@link #writePem(Path, String, X509Certificate)}. */
    PemFiles writePem(Path dir, String name) {
      return writePem(dir, name, ca);
    }

    /**
     * Writes {@code <name>.crt} (the leaf certificate), {@code <name>.key} (the private key as
     * unencrypted PKCS#8, "BEGIN PRIVATE KEY") and {@code <name>-ca.crt} ({@code trusted}) under
     * {@code dir}, as {@link TlsConfig.Builder#keyCertChain(File, File)} and
     * {@link TlsConfig.Builder#trustedCertificates(File)} read them.
     */
    PemFiles writePem(Path dir, String name, X509Certificate trusted) {
      File cert = dir.resolve(name + ".crt").toFile();
      File keyFile = dir.resolve(name + ".key").toFile();
      File caFile = dir.resolve(name + "-ca.crt").toFile();
      writePemObject(cert, certificate);
      writePemObject(keyFile, key);
      writePemObject(caFile, trusted);
      return new PemFiles(cert, keyFile, caFile);
    }
  }

  /** PEM files of one identity: its certificate, its PKCS#8 key, and the CA certificates it trusts. */
  record PemFiles(File certificate, File key, File ca) {}

  private static void writePemObject(File file, Object value) {
    try (JcaPEMWriter w =
        new JcaPEMWriter(Files.newBufferedWriter(file.toPath(), StandardCharsets.US_ASCII))) {
      if (value instanceof PrivateKey k) {
        w.writeObject(new JcaPKCS8Generator(k, null));
      } else {
        w.writeObject(value);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + file, e);
    }
  }

  private static final SecureRandom RANDOM = new SecureRandom();
  private final KeyPair caKeys;
  final X509Certificate ca;

  TestPki(String name) {
    caKeys = keys();
    ca = sign(new X500Name("CN=" + name), caKeys, new X500Name("CN=" + name), caKeys.getPrivate(), true,
        null, Instant.now().minus(Duration.ofDays(1)), Instant.now().plus(Duration.ofDays(30)));
  }

  /** A node certificate valid for DNS localhost and IP 127.0.0.1. */
  Identity issue(String cn) {
    return issue(cn, Instant.now().minus(Duration.ofDays(1)), Instant.now().plus(Duration.ofDays(30)));
  }

  Identity issue(String cn, Instant notBefore, Instant notAfter) {
    KeyPair kp = keys();
    X509Certificate cert =
        sign(new X500Name("CN=" + cn), kp, X500NameOf(ca), caKeys.getPrivate(), false,
            new GeneralNames(new GeneralName[] {
                new GeneralName(GeneralName.dNSName, "localhost"),
                new GeneralName(GeneralName.iPAddress, "127.0.0.1")}),
            notBefore, notAfter);
    return new Identity(kp.getPrivate(), cert, ca);
  }

  /** A self-signed node certificate valid for DNS localhost and IP 127.0.0.1; its own "CA". */
  static Identity selfSigned(String cn) {
    KeyPair kp = keys();
    X509Certificate cert =
        sign(new X500Name("CN=" + cn), kp, new X500Name("CN=" + cn), kp.getPrivate(), false,
            new GeneralNames(new GeneralName[] {
                new GeneralName(GeneralName.dNSName, "localhost"),
                new GeneralName(GeneralName.iPAddress, "127.0.0.1")}),
            Instant.now().minus(Duration.ofDays(1)), Instant.now().plus(Duration.ofDays(30)));
    return new Identity(kp.getPrivate(), cert, cert);
  }

  private static X500Name X500NameOf(X509Certificate c) {
    return new X500Name(c.getSubjectX500Principal().getName());
  }

  private static KeyPair keys() {
    try {
      KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
      g.initialize(256, RANDOM);
      return g.generateKeyPair();
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static X509Certificate sign(
      X500Name subject, KeyPair subjectKeys, X500Name issuer, PrivateKey issuerKey, boolean isCa,
      GeneralNames san, Instant notBefore, Instant notAfter) {
    try {
      X509v3CertificateBuilder b =
          new JcaX509v3CertificateBuilder(
              issuer, new BigInteger(64, RANDOM), Date.from(notBefore), Date.from(notAfter),
              subject, subjectKeys.getPublic());
      b.addExtension(Extension.basicConstraints, true, new BasicConstraints(isCa));
      if (isCa) {
        b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
      } else {
        b.addExtension(Extension.keyUsage, true,
            new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyAgreement));
      }
      if (san != null) {
        b.addExtension(Extension.subjectAlternativeName, false, san);
      }
      return new JcaX509CertificateConverter()
          .getCertificate(b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(issuerKey)));
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }
}
