package dev.entanglement.samples.cli;

import java.io.IOException;
import java.io.Reader;
import java.io.StringWriter;
import java.io.Writer;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Date;
import java.util.List;
import java.util.Locale;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x500.X500NameBuilder;
import org.bouncycastle.asn1.x500.style.BCStyle;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.openssl.PEMException;
import org.bouncycastle.openssl.PEMKeyPair;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.openssl.jcajce.JcaMiscPEMGenerator;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.openssl.jcajce.JcaPKCS8Generator;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.util.IPAddress;
import org.bouncycastle.util.io.pem.PemObjectGenerator;

/**
 * Keys and certificates for nodes, made with BouncyCastle: EC P-256 keys, ECDSA with SHA-256
 * signatures, PEM files (certificates, and keys as unencrypted PKCS#8 written with permissions 0600
 * where the file system supports POSIX permissions). Signing uses the JDK's own providers.
 */
final class Certificates {
  private static final SecureRandom RANDOM = new SecureRandom();
  private static final FileAttribute<?>[] PRIVATE =
      FileSystems.getDefault().supportedFileAttributeViews().contains("posix")
          ? new FileAttribute<?>[] {PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------"))}
          : new FileAttribute<?>[0];

  private Certificates() {}

  /** A new EC key pair on the P-256 curve. */
  static KeyPair newKeyPair() {
    try {
      KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
      g.initialize(new ECGenParameterSpec("secp256r1"), RANDOM);
      return g.generateKeyPair();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("this JDK cannot make EC P-256 keys", e);
    }
  }

  /** A CA certificate: self-signed, may sign node certificates (path length 0). */
  static X509Certificate caCertificate(KeyPair keys, String commonName, Duration validity) {
    X500Name name = name(commonName);
    return build(name, keys, name, keys, validity, true, List.of());
  }

  /**
   * A node certificate for TLS client and server use, signed by {@code issuerKeys} (its own keys for
   * a self-signed one) and valid for the subject alternative names {@code sans}.
   */
  static X509Certificate nodeCertificate(
      KeyPair subjectKeys,
      String commonName,
      List<GeneralName> sans,
      X509Certificate issuer,
      KeyPair issuerKeys,
      Duration validity) {
    return build(
        name(commonName), subjectKeys,
        X500Name.getInstance(issuer.getSubjectX500Principal().getEncoded()), issuerKeys,
        validity, false, sans);
  }

  /** A self-signed node certificate: trusted by peers that pin its fingerprint. */
  static X509Certificate selfSigned(KeyPair keys, String commonName, List<GeneralName> sans, Duration validity) {
    X500Name name = name(commonName);
    return build(name, keys, name, keys, validity, false, sans);
  }

  private static X500Name name(String commonName) {
    return new X500NameBuilder(BCStyle.INSTANCE).addRDN(BCStyle.CN, commonName).build();
  }

  private static X509Certificate build(
      X500Name subject,
      KeyPair subjectKeys,
      X500Name issuer,
      KeyPair issuerKeys,
      Duration validity,
      boolean ca,
      List<GeneralName> sans) {
    Instant now = Instant.now();
    try {
      JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
      X509v3CertificateBuilder b =
          new JcaX509v3CertificateBuilder(
              issuer,
              new BigInteger(127, RANDOM).add(BigInteger.ONE),
              Date.from(now.minus(Duration.ofMinutes(5))),
              Date.from(now.plus(validity)),
              subject,
              subjectKeys.getPublic());
      b.addExtension(Extension.subjectKeyIdentifier, false, ext.createSubjectKeyIdentifier(subjectKeys.getPublic()));
      b.addExtension(Extension.authorityKeyIdentifier, false, ext.createAuthorityKeyIdentifier(issuerKeys.getPublic()));
      if (ca) {
        b.addExtension(Extension.basicConstraints, true, new BasicConstraints(0));
        b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
      } else {
        b.addExtension(Extension.basicConstraints, true, new BasicConstraints(false));
        b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature));
        b.addExtension(Extension.extendedKeyUsage, false,
            new ExtendedKeyUsage(new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}));
        if (!sans.isEmpty()) {
          b.addExtension(Extension.subjectAlternativeName, false,
              new GeneralNames(sans.toArray(GeneralName[]::new)));
        }
      }
      return new JcaX509CertificateConverter()
          .getCertificate(b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(issuerKeys.getPrivate())));
    } catch (IOException | GeneralSecurityException | OperatorCreationException e) {
      throw new IllegalStateException("cannot make a certificate for " + subject, e);
    }
  }

  /**
   * A subject alternative name written as {@code DNS:name} or {@code IP:address} (IPv4 or IPv6
   * literal).
   *
   * @throws IllegalArgumentException if it is neither
   */
  static GeneralName subjectAltName(String text) {
    int colon = text.indexOf(':');
    String kind = colon < 0 ? "" : text.substring(0, colon).toUpperCase(Locale.ROOT);
    String value = colon < 0 ? "" : text.substring(colon + 1);
    if (kind.equals("DNS") && value.matches("(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")) {
      return new GeneralName(GeneralName.dNSName, value);
    }
    if (kind.equals("IP") && IPAddress.isValid(value)) {
      return new GeneralName(GeneralName.iPAddress, value);
    }
    throw new IllegalArgumentException(
        "expected DNS:NAME or IP:ADDRESS for a subject alternative name, got '" + text + "'");
  }

  /** Writes a certificate as PEM; fails if the file exists. */
  static void writeCertificate(Path file, X509Certificate certificate) {
    try {
      write(file, pem(new JcaMiscPEMGenerator(certificate)), new FileAttribute<?>[0]);
    } catch (IOException e) {
      throw new IllegalStateException("cannot encode the certificate", e);
    }
  }

  /** Writes a private key as unencrypted PKCS#8 PEM, readable by its owner only; fails if the file exists. */
  static void writePrivateKey(Path file, PrivateKey key) {
    try {
      write(file, pem(new JcaPKCS8Generator(key, null)), PRIVATE);
    } catch (IOException e) {
      throw new IllegalStateException("cannot encode the private key", e);
    }
  }

  private static String pem(PemObjectGenerator value) throws IOException {
    StringWriter text = new StringWriter();
    try (JcaPEMWriter w = new JcaPEMWriter(text)) {
      w.writeObject(value);
    }
    return text.toString();
  }

  private static void write(Path file, String content, FileAttribute<?>[] attributes) {
    try {
      Files.createFile(file, attributes);
      try (Writer w = Files.newBufferedWriter(file, StandardCharsets.US_ASCII, StandardOpenOption.WRITE)) {
        w.write(content);
      }
    } catch (FileAlreadyExistsException e) {
      throw new CliException(file + " already exists; remove it first or choose another name");
    } catch (IOException e) {
      throw new CliException("cannot write " + file + ": " + e.getMessage());
    }
  }

  /** The certificates of a PEM file, leaf first. */
  static List<X509Certificate> readCertificates(Path file) {
    try (var in = Files.newInputStream(file)) {
      List<X509Certificate> out = new ArrayList<>();
      for (var c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
        out.add((X509Certificate) c);
      }
      if (out.isEmpty()) {
        throw new CliException("no certificate in " + file);
      }
      return out;
    } catch (NoSuchFileException e) {
      throw new CliException("cannot read certificate " + file + ": no such file");
    } catch (IOException | CertificateException e) {
      throw new CliException("cannot read certificate " + file + ": " + oneLine(e.getMessage()));
    }
  }

  /** The private key of a PEM file: PKCS#8 ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"). */
  static PrivateKey readPrivateKey(Path file) {
    try (Reader r = Files.newBufferedReader(file, StandardCharsets.US_ASCII);
        PEMParser parser = new PEMParser(r)) {
      Object o = parser.readObject();
      JcaPEMKeyConverter converter = new JcaPEMKeyConverter();
      if (o instanceof PrivateKeyInfo info) {
        return converter.getPrivateKey(info);
      }
      if (o instanceof PEMKeyPair pair) {
        return converter.getKeyPair(pair).getPrivate();
      }
      throw new CliException(file + " holds no unencrypted private key (expected PEM \"PRIVATE KEY\")");
    } catch (NoSuchFileException e) {
      throw new CliException("cannot read key " + file + ": no such file");
    } catch (PEMException e) {
      throw new CliException("cannot read key " + file + ": " + oneLine(e.getMessage()));
    } catch (IOException e) {
      throw new CliException("cannot read key " + file + ": " + oneLine(e.getMessage()));
    }
  }

  /**
   * Checks that {@code key} is the private key of {@code certificate}, by signing a challenge and
   * verifying it with the certificate's public key.
   */
  static boolean matches(PrivateKey key, X509Certificate certificate) {
    String algorithm =
        switch (key.getAlgorithm()) {
          case "EC" -> "SHA256withECDSA";
          case "RSA" -> "SHA256withRSA";
          case "Ed25519", "EdDSA" -> "Ed25519";
          default -> null;
        };
    if (algorithm == null || !certificate.getPublicKey().getAlgorithm().equals(key.getAlgorithm())
        && !(algorithm.equals("Ed25519") && certificate.getPublicKey().getAlgorithm().startsWith("Ed"))) {
      return false;
    }
    try {
      byte[] challenge = new byte[32];
      RANDOM.nextBytes(challenge);
      Signature s = Signature.getInstance(algorithm);
      s.initSign(key);
      s.update(challenge);
      byte[] signature = s.sign();
      Signature v = Signature.getInstance(algorithm);
      v.initVerify(certificate.getPublicKey());
      v.update(challenge);
      return v.verify(signature);
    } catch (GeneralSecurityException e) {
      return false;
    }
  }

  static String oneLine(String message) {
    return message == null ? "" : message.strip().replaceAll("\\s*\\R\\s*", " ");
  }
}
