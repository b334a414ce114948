package dev.entanglement.samples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.netty.Fingerprints;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PkiCommandTest {
  @TempDir Path dir;

  private static X509Certificate certificate(Path file) {
    return Certificates.readCertificates(file).get(0);
  }

  @Test
  @DisplayName("init and issue print the RFC 6920 fingerprints of the files they write; keys are 0600")
  void fingerprintsMatchFiles() throws Exception {
    Cli.Result init = Cli.run("pki", "init", "--dir", dir.toString());
    assertEquals(0, init.exitCode(), init.err());
    Path caFile = dir.resolve("ca.crt");
    X509Certificate ca = certificate(caFile);
    assertEquals(Fingerprints.of(ca) + "  " + caFile + System.lineSeparator(), init.out());
    assertTrue(init.out().startsWith("ni:///sha-256;"));

    Cli.Result issue = Cli.run("pki", "issue", "--dir", dir.toString(), "--name", "node-a");
    assertEquals(0, issue.exitCode(), issue.err());
    Path crt = dir.resolve("node-a.crt");
    X509Certificate cert = certificate(crt);
    assertEquals(Fingerprints.of(cert) + "  " + crt + System.lineSeparator(), issue.out());

    cert.verify(ca.getPublicKey());
    assertEquals(ca.getSubjectX500Principal(), cert.getIssuerX500Principal());
    assertEquals("CN=node-a", cert.getSubjectX500Principal().getName());
    assertEquals(-1, cert.getBasicConstraints(), "a node certificate is not a CA");
    assertEquals(0, ca.getBasicConstraints());
    assertEquals(List.of(List.of(2, "localhost"), List.of(7, "127.0.0.1")), List.copyOf(cert.getSubjectAlternativeNames()));
    assertTrue(cert.getExtendedKeyUsage().containsAll(List.of("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2")));
    assertTrue(Certificates.matches(Certificates.readPrivateKey(dir.resolve("node-a.key")), cert));
    for (String key : List.of("ca.key", "node-a.key")) {
      assertEquals(Set.of(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE),
          Files.getPosixFilePermissions(dir.resolve(key)), key);
      assertTrue(Files.readString(dir.resolve(key)).startsWith("-----BEGIN PRIVATE KEY-----"), key);
    }
  }

  @Test
  @DisplayName("--san replaces the default names; --days sets the validity")
  void subjectAlternativeNames() throws Exception {
    assertEquals(0, Cli.run("pki", "init", "--dir", dir.toString()).exitCode());
    Cli.Result r = Cli.run("pki", "issue", "--dir", dir.toString(), "--name", "b",
        "--san", "DNS:b.example", "--san", "IP:10.0.0.2", "--san", "IP:::1", "--days", "30");
    assertEquals(0, r.exitCode(), r.err());
    X509Certificate cert = certificate(dir.resolve("b.crt"));
    assertEquals(List.of(List.of(2, "b.example"), List.of(7, "10.0.0.2"), List.of(7, "0:0:0:0:0:0:0:1")),
        List.copyOf(cert.getSubjectAlternativeNames()));
    long days = (cert.getNotAfter().getTime() - cert.getNotBefore().getTime()) / 86_400_000L;
    assertEquals(30, days);
  }
}
