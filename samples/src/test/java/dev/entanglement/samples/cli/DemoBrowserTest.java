package dev.entanglement.samples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The browser demo end to end: a node started through the command line ({@code --policy teams},
 * {@code --store mem}, HTTP on 127.0.0.1 port 0) and {@code entanglement-js/e2e/demo-e2e.mjs}, which
 * drives pages of the demo in headless Chromium through playwright-core (installed by the {@code
 * entanglement-js} module's {@code npm ci}).
 *
 * <p>Without Chromium ({@code /usr/bin/chromium}, or the file named by the environment variable
 * {@code CHROMIUM}), Node.js or playwright-core the test is skipped with the reason, unless the
 * environment variable {@code ENTANGLEMENT_REQUIRE_BROWSER} is {@code true}: then it fails.
 */
class DemoBrowserTest {
  private static final Duration SCRIPT_TIMEOUT = Duration.ofSeconds(100);
  private static final Path CLIENT_MODULE = Path.of("..", "entanglement-js");
  private static final List<String> STEPS =
      List.of(
          "a cursor moved in page A appears in page B",
          "red pages never receive blue objects, blue pages never red ones, staff both",
          "closing the dragging page mid-drag expires the tentative state everywhere",
          "a drag shows as tentative in the other page, then commits",
          "a drag of a locked shape is rejected by its owner and snaps back",
          "a page under a bandwidth limit converges to the final cursor position after a burst");

  @TempDir Path dir;

  @Test
  void theDemoWorksInABrowser() throws Exception {
    requireBrowser();
    try (Cli cli = new Cli()) {
      RunningNode node =
          cli.start("--http", "127.0.0.1:0", "--store", "mem", "--policy", "teams", "--data", dir.toString());
      String url = "http://" + node.httpAddress() + "/";
      Process script =
          new ProcessBuilder("node", "e2e/demo-e2e.mjs", url)
              .directory(CLIENT_MODULE.toFile())
              .redirectErrorStream(true)
              .start();
      ByteArrayOutputStream output = new ByteArrayOutputStream();
      Thread reader = new Thread(() -> copy(script.getInputStream(), output), "e2e-output");
      reader.start();
      if (!script.waitFor(SCRIPT_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
        script.descendants().forEach(ProcessHandle::destroyForcibly);
        script.destroyForcibly();
        fail("demo-e2e.mjs did not finish within " + SCRIPT_TIMEOUT.toSeconds() + " s:\n" + output);
      }
      reader.join(TimeUnit.SECONDS.toMillis(10));
      String out = output.toString(StandardCharsets.UTF_8);
      System.out.println(out);
      assertEquals(0, script.exitValue(), out);
      for (String step : STEPS) {
        assertTrue(out.lines().anyMatch(l -> l.startsWith("ok " + step)), "step missing: " + step + "\n" + out);
      }
      assertTrue(out.lines().anyMatch("PASS"::equals), out);
    }
  }

  /** Skips (or, when the environment requires the browser, fails) without what the script needs. */
  private static void requireBrowser() {
    Path chromium = Path.of(System.getenv().getOrDefault("CHROMIUM", "/usr/bin/chromium"));
    String missing = null;
    if (!Files.isExecutable(chromium)) {
      missing = "Chromium is not installed at " + chromium + " (apt-get install chromium)";
    } else if (!Files.isDirectory(CLIENT_MODULE.resolve("node_modules/playwright-core"))) {
      missing = "playwright-core is not installed in entanglement-js (run npm ci there, or build that module)";
    } else if (!nodeRuns()) {
      missing = "Node.js is not on the PATH";
    }
    if (missing == null) {
      return;
    }
    if (Boolean.parseBoolean(System.getenv("ENTANGLEMENT_REQUIRE_BROWSER"))) {
      fail("ENTANGLEMENT_REQUIRE_BROWSER is true but " + missing);
    }
    Assumptions.abort("browser test skipped: " + missing + "; set ENTANGLEMENT_REQUIRE_BROWSER=true to fail instead");
  }

  private static boolean nodeRuns() {
    try {
      Process p = new ProcessBuilder("node", "--version").redirectErrorStream(true).start();
      p.getInputStream().readAllBytes();
      return p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  private static void copy(InputStream in, ByteArrayOutputStream out) {
    try (in) {
      in.transferTo(out);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
