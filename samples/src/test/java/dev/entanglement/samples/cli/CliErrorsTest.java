package dev.entanglement.samples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every bad input ends with one line on standard error and a documented exit code. */
class CliErrorsTest {
  static final int USAGE = 2;
  static final int RUNTIME = 1;

  @TempDir Path dir;

  /** Checks the exit code and that standard error is exactly one line containing {@code expected}. */
  private static Cli.Result fails(int code, String expected, String... args) {
    Cli.Result r = Cli.run(args);
    assertEquals(code, r.exitCode(), () -> "exit code of " + List.of(args) + "; stderr: " + r.err());
    List<String> lines = r.err().lines().toList();
    assertEquals(1, lines.size(), () -> "one line on stderr for " + List.of(args) + ", got: " + r.err());
    assertTrue(lines.get(0).contains(expected), () -> "'" + expected + "' in: " + lines.get(0));
    assertFalse(r.err().contains("\tat "), "no stack trace without --debug");
    return r;
  }

  private String data() {
    return dir.resolve("data").toString();
  }

  @Test
  @DisplayName("no arguments: the usage on stderr, exit 2")
  void noArguments() {
    Cli.Result r = Cli.run();
    assertEquals(USAGE, r.exitCode());
    assertTrue(r.err().contains("Usage: entanglement"), r.err());
    assertTrue(r.err().contains("node") && r.err().contains("pki"), r.err());
    assertEquals("", r.out());
  }

  @Test
  @DisplayName("--help prints the usage on stdout, exit 0")
  void help() {
    Cli.Result r = Cli.run("node", "--help");
    assertEquals(0, r.exitCode());
    assertTrue(r.out().contains("--connect=FINGERPRINT@HOST:PORT"), r.out());
  }

  @Test
  @DisplayName("bad options and values: exit 2 with the option named")
  void badOptions() {
    fails(USAGE, "Unknown option: '--bogus'", "node", "--bogus");
    fails(USAGE, "nothing to do", "node", "--data", data());
    fails(USAGE, "'--listen': expected HOST:PORT", "node", "--listen", "7000");
    fails(USAGE, "port out of range", "node", "--http", "127.0.0.1:70000");
    fails(USAGE, "'--http': expected HOST:PORT", "node", "--http", "127.0.0.1:http");
    fails(USAGE, "'--bandwidth'", "node", "--http", "127.0.0.1:0", "--bandwidth", "fast");
    fails(USAGE, "--bandwidth must not be negative", "node", "--http", "127.0.0.1:0", "--bandwidth", "-1");
    fails(USAGE, "--metrics must not be negative", "node", "--http", "127.0.0.1:0", "--metrics", "-5");
    fails(USAGE, "'--policy'", "node", "--http", "127.0.0.1:0", "--policy", "closed");
    fails(USAGE, "'--store': expected h2:PATH, mem or postgresql://", "node", "--http", "127.0.0.1:0", "--store", "mysql://x");
    fails(USAGE, "--cert needs --key", "node", "--http", "127.0.0.1:0", "--cert", "a.crt");
    fails(USAGE, "--id must be", "node", "--http", "127.0.0.1:0", "--id", "no spaces");
    fails(USAGE, "unknown level 'LOUD'", "node", "--log-level", "LOUD", "--http", "127.0.0.1:0");
    fails(USAGE, "--listen needs --ca, --allow or --connect", "node", "--listen", "127.0.0.1:0", "--data", data());
    fails(USAGE, "'--allow' (FINGERPRINT): not a SHA-256 certificate fingerprint", "node", "--http", "127.0.0.1:0", "--allow", "abc");
    fails(USAGE, "Missing required option: '--dir=DIR'", "pki", "init");
    fails(USAGE, "--san: expected DNS:NAME or IP:ADDRESS", "pki", "issue", "--dir", data(), "--name", "a", "--san", "IP:nope");
  }

  @Test
  @DisplayName("bad --connect syntax: exit 2")
  void badConnect() {
    fails(USAGE, "'--connect' (FINGERPRINT@HOST:PORT): expected FINGERPRINT@HOST:PORT", "node", "--connect", "127.0.0.1:7000");
    fails(USAGE, "'--connect' (FINGERPRINT@HOST:PORT): not a SHA-256 certificate fingerprint", "node", "--connect", "abc@127.0.0.1:7000");
    String fp = "ni:///sha-256;" + "A".repeat(43) + "=";
    fails(USAGE, "'--connect' (FINGERPRINT@HOST:PORT): expected HOST:PORT", "node", "--connect", fp + "@127.0.0.1");
  }

  @Test
  @DisplayName("a port in use: exit 1, 'address already in use'")
  void portInUse() throws IOException {
    try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
      String address = "127.0.0.1:" + taken.getLocalPort();
      fails(RUNTIME, "cannot listen on " + address + " (HTTP): address already in use",
          "node", "--http", address, "--store", "mem", "--data", data());
      String fp = "ni:///sha-256;" + "A".repeat(43) + "=";
      fails(RUNTIME, "cannot listen on " + address + " (TLS): address already in use",
          "node", "--listen", address, "--allow", fp, "--store", "mem", "--data", data());
    }
  }

  @Test
  @DisplayName("unreadable, mismatching or missing certificate and key: exit 1")
  void badCertificates() throws IOException {
    Path pki = dir.resolve("pki");
    assertEquals(0, Cli.run("pki", "init", "--dir", pki.toString()).exitCode());
    assertEquals(0, Cli.run("pki", "issue", "--dir", pki.toString(), "--name", "a").exitCode());
    assertEquals(0, Cli.run("pki", "issue", "--dir", pki.toString(), "--name", "b").exitCode());
    String a = pki.resolve("a.crt").toString();
    String bKey = pki.resolve("b.key").toString();
    fails(RUNTIME, "does not match the certificate", "node", "--http", "127.0.0.1:0", "--cert", a, "--key", bKey, "--data", data());
    fails(RUNTIME, "cannot read certificate " + dir.resolve("none.crt") + ": no such file",
        "node", "--http", "127.0.0.1:0", "--cert", dir.resolve("none.crt").toString(), "--key", bKey, "--data", data());
    Path garbage = Files.writeString(dir.resolve("garbage.crt"), "not a certificate\n");
    fails(RUNTIME, "cannot read certificate " + garbage,
        "node", "--http", "127.0.0.1:0", "--cert", garbage.toString(), "--key", bKey, "--data", data());
    fails(RUNTIME, "holds no unencrypted private key",
        "node", "--http", "127.0.0.1:0", "--cert", a, "--key", a, "--data", data());
    fails(RUNTIME, "cannot read certificate",
        "node", "--http", "127.0.0.1:0", "--ca", garbage.toString(), "--data", data(), "--store", "mem");
    Path half = dir.resolve("half");
    Files.createDirectories(half);
    Files.copy(pki.resolve("a.crt"), half.resolve("node.crt"));
    fails(RUNTIME, "without " + half.resolve("node.key"), "node", "--http", "127.0.0.1:0", "--data", half.toString());
  }

  @Test
  @DisplayName("an unreachable database: exit 1, naming the store")
  void unreachableDatabase() throws IOException {
    int closedPort;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
      closedPort = s.getLocalPort();
    }
    fails(RUNTIME, "cannot open the store r2dbc:postgresql://nobody:***@127.0.0.1:" + closedPort + "/none: connection refused",
        "node", "--http", "127.0.0.1:0", "--data", data(),
        "--store", "postgresql://nobody:secret@127.0.0.1:" + closedPort + "/none");
  }

  @Test
  @DisplayName("pki: refuses to overwrite, and to issue without a CA; exit 1")
  void pkiRefusals() {
    Path pki = dir.resolve("pki");
    fails(RUNTIME, "no CA in " + pki, "pki", "issue", "--dir", pki.toString(), "--name", "a");
    assertEquals(0, Cli.run("pki", "init", "--dir", pki.toString()).exitCode());
    fails(RUNTIME, "a CA already exists in " + pki, "pki", "init", "--dir", pki.toString());
    assertEquals(0, Cli.run("pki", "issue", "--dir", pki.toString(), "--name", "a").exitCode());
    fails(RUNTIME, "already exists", "pki", "issue", "--dir", pki.toString(), "--name", "a");
    fails(USAGE, "--name must be", "pki", "issue", "--dir", pki.toString(), "--name", "ca");
  }

  @Test
  @DisplayName("--debug adds the stack trace to the one-line error")
  void debugShowsStackTrace() {
    Cli.Result r = Cli.run("pki", "issue", "--debug", "--dir", dir.resolve("nothing").toString(), "--name", "a");
    assertEquals(RUNTIME, r.exitCode());
    assertTrue(r.err().startsWith("entanglement pki issue: no CA in "), r.err());
    assertTrue(r.err().contains("\tat dev.entanglement.samples.cli."), r.err());
  }
}
