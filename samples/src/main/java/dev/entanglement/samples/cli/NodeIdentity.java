package dev.entanglement.samples.cli;

import dev.entanglement.PeerId;
import dev.entanglement.netty.Fingerprints;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.PrivateKey;
import java.security.cert.CertificateExpiredException;
import java.security.cert.CertificateNotYetValidException;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A node's TLS identity: its private key, its certificate chain (leaf first) and the fingerprint of
 * the leaf, which is how peers name it.
 */
record NodeIdentity(PrivateKey key, List<X509Certificate> chain, PeerId fingerprint) {
  private static final Logger log = LoggerFactory.getLogger(NodeIdentity.class);

  /** The files of the certificate generated on first run, under the data directory. */
  static final String GENERATED_CERTIFICATE = "node.crt";
  static final String GENERATED_KEY = "node.key";

  /** How long a generated self-signed certificate is valid: ten years (peers pin it, not a CA). */
  static final Duration GENERATED_VALIDITY = Duration.ofDays(3650);

  NodeIdentity {
    chain = List.copyOf(chain);
  }

  /**
   * Reads a certificate chain and its key from PEM files, and checks that they belong together and
   * that the certificate is valid now.
   */
  static NodeIdentity load(Path certificate, Path keyFile) {
    List<X509Certificate> chain = Certificates.readCertificates(certificate);
    PrivateKey key = Certificates.readPrivateKey(keyFile);
    if (!Certificates.matches(key, chain.get(0))) {
      throw new CliException("the key in " + keyFile + " does not match the certificate in " + certificate);
    }
    try {
      chain.get(0).checkValidity();
    } catch (CertificateExpiredException e) {
      throw new CliException("the certificate in " + certificate + " expired on " + chain.get(0).getNotAfter().toInstant());
    } catch (CertificateNotYetValidException e) {
      throw new CliException("the certificate in " + certificate + " is not valid before " + chain.get(0).getNotBefore().toInstant());
    }
    return new NodeIdentity(key, chain, Fingerprints.of(chain.get(0)));
  }

  /**
   * The identity kept in {@code dataDir}: {@code node.crt} and {@code node.key}, made on first use
   * as a self-signed EC P-256 certificate valid for {@code localhost}, {@code 127.0.0.1} and
   * {@code ::1}, and reused afterwards.
   */
  static NodeIdentity loadOrCreate(Path dataDir) {
    Path certificate = dataDir.resolve(GENERATED_CERTIFICATE);
    Path keyFile = dataDir.resolve(GENERATED_KEY);
    boolean hasCertificate = Files.exists(certificate);
    boolean hasKey = Files.exists(keyFile);
    if (hasCertificate != hasKey) {
      throw new CliException("found " + (hasCertificate ? certificate : keyFile) + " without "
          + (hasCertificate ? keyFile : certificate) + "; restore it or remove both to make a new identity");
    }
    if (!hasCertificate) {
      PkiCommand.createDirectory(dataDir);
      KeyPair keys = Certificates.newKeyPair();
      X509Certificate self =
          Certificates.selfSigned(
              keys,
              "entanglement node",
              List.of(
                  Certificates.subjectAltName("DNS:localhost"),
                  Certificates.subjectAltName("IP:127.0.0.1"),
                  Certificates.subjectAltName("IP:::1")),
              GENERATED_VALIDITY);
      Certificates.writePrivateKey(keyFile, keys.getPrivate());
      Certificates.writeCertificate(certificate, self);
      log.info("made a self-signed certificate {} and key {}", certificate, keyFile);
    }
    return load(certificate, keyFile);
  }

  /** The default node id: {@code node-} and the first 8 characters of the fingerprint's digest. */
  String defaultNodeId() {
    String v = fingerprint.value();
    return "node-" + v.substring(v.indexOf(';') + 1, v.indexOf(';') + 9);
  }
}
