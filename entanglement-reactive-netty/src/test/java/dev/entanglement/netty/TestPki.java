package dev.entanglement.netty;

import java.math.BigInteger;
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
