package dev.entanglement.samples.cli;

import dev.entanglement.netty.Fingerprints;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import org.bouncycastle.asn1.x509.GeneralName;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code entanglement pki}: a small certificate authority for a group of nodes, in one directory:
 * {@code ca.crt} and {@code ca.key} for the CA, {@code NAME.crt} and {@code NAME.key} for each node.
 * Keys are EC P-256, unencrypted PKCS#8 PEM, written with permissions 0600 where the file system
 * has POSIX permissions. Existing files are never overwritten. Each command prints the fingerprint
 * of the certificate it made and the file, as {@code FINGERPRINT  FILE}.
 */
@Command(
    name = "pki",
    description = "Creates a certificate authority and node certificates for mutual TLS.",
    subcommands = {PkiCommand.Init.class, PkiCommand.Issue.class})
final class PkiCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  /** Prints the usage: a command is required. */
  @Override
  public Integer call() {
    spec.commandLine().usage(spec.commandLine().getErr());
    return CommandLine.ExitCode.USAGE;
  }

  static final Duration DAY = Duration.ofDays(1);

  static void print(PrintWriter out, X509Certificate certificate, Path file) {
    out.println(Fingerprints.of(certificate) + "  " + file);
    out.flush();
  }

  static void createDirectory(Path dir) {
    try {
      Files.createDirectories(dir);
    } catch (java.io.IOException e) {
      throw new CliException("cannot create directory " + dir + ": " + e.getMessage());
    }
  }

  /** {@code pki init}: makes the CA. */
  @Command(
      name = "init",
      description = "Creates a CA: DIR/ca.crt and DIR/ca.key. Prints its fingerprint.")
  static final class Init implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--dir", required = true, paramLabel = "DIR", description = "Where the files go (created if missing).")
    Path dir;

    @Option(names = "--name", paramLabel = "NAME", defaultValue = "Entanglement CA",
        description = "The CA's common name. Default: ${DEFAULT-VALUE}.")
    String name;

    @Option(names = "--days", paramLabel = "DAYS", defaultValue = "3650",
        description = "Validity in days. Default: ${DEFAULT-VALUE}.")
    int days;

    @Override
    public Integer call() {
      if (days < 1) {
        throw new ParameterException(spec.commandLine(), "--days must be at least 1");
      }
      createDirectory(dir);
      Path crt = dir.resolve("ca.crt");
      Path key = dir.resolve("ca.key");
      if (Files.exists(crt) || Files.exists(key)) {
        throw new CliException(
            "a CA already exists in " + dir + " (ca.crt or ca.key); remove it first or use another --dir");
      }
      KeyPair keys = Certificates.newKeyPair();
      X509Certificate ca = Certificates.caCertificate(keys, name, DAY.multipliedBy(days));
      Certificates.writePrivateKey(key, keys.getPrivate());
      Certificates.writeCertificate(crt, ca);
      print(spec.commandLine().getOut(), ca, crt);
      return 0;
    }
  }

  /** {@code pki issue}: makes a node certificate signed by the CA. */
  @Command(
      name = "issue",
      description =
          "Creates a node certificate signed by the CA in DIR: DIR/NAME.crt and DIR/NAME.key. "
              + "Prints its fingerprint, which peers use in --connect and --allow.")
  static final class Issue implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--dir", required = true, paramLabel = "DIR", description = "The directory of the CA (see pki init).")
    Path dir;

    @Option(names = "--name", required = true, paramLabel = "NAME",
        description = "The node's name: the certificate's common name and the files' base name.")
    String name;

    @Option(names = "--san", paramLabel = "DNS:NAME|IP:ADDRESS",
        description = "A subject alternative name: a name peers may dial this node by (repeatable). "
            + "Default: DNS:localhost and IP:127.0.0.1; giving --san replaces the default.")
    List<String> sans = new ArrayList<>();

    @Option(names = "--days", paramLabel = "DAYS", defaultValue = "825",
        description = "Validity in days. Default: ${DEFAULT-VALUE}.")
    int days;

    @Override
    public Integer call() {
      if (!name.matches("[A-Za-z0-9][A-Za-z0-9._-]{0,63}") || name.equals("ca")) {
        throw new ParameterException(spec.commandLine(),
            "--name must be 1-64 letters, digits, '.', '_' or '-' (and not 'ca'): '" + name + "'");
      }
      if (days < 1) {
        throw new ParameterException(spec.commandLine(), "--days must be at least 1");
      }
      List<GeneralName> names = new ArrayList<>();
      for (String san : sans.isEmpty() ? List.of("DNS:localhost", "IP:127.0.0.1") : sans) {
        try {
          names.add(Certificates.subjectAltName(san));
        } catch (IllegalArgumentException e) {
          throw new ParameterException(spec.commandLine(), "--san: " + e.getMessage());
        }
      }
      Path caCrt = dir.resolve("ca.crt");
      Path caKeyFile = dir.resolve("ca.key");
      if (!Files.exists(caCrt) || !Files.exists(caKeyFile)) {
        throw new CliException("no CA in " + dir + " (ca.crt and ca.key); run 'entanglement pki init --dir " + dir + "' first");
      }
      X509Certificate ca = Certificates.readCertificates(caCrt).get(0);
      PrivateKey caKey = Certificates.readPrivateKey(caKeyFile);
      if (!Certificates.matches(caKey, ca)) {
        throw new CliException(caKeyFile + " is not the key of " + caCrt);
      }
      Path crt = dir.resolve(name + ".crt");
      Path key = dir.resolve(name + ".key");
      if (Files.exists(crt) || Files.exists(key)) {
        throw new CliException(crt + " or " + key + " already exists; remove them first or choose another --name");
      }
      KeyPair keys = Certificates.newKeyPair();
      X509Certificate cert =
          Certificates.nodeCertificate(keys, name, names, ca, new KeyPair(ca.getPublicKey(), caKey), DAY.multipliedBy(days));
      Certificates.writePrivateKey(key, keys.getPrivate());
      Certificates.writeCertificate(crt, cert);
      print(spec.commandLine().getOut(), cert, crt);
      return 0;
    }
  }
}
