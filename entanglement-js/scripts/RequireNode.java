import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * Run by Maven (as a single-file Java program) before {@code npm ci}: fails the build with a clear
 * message when Node.js 20+ or npm is not on the PATH, instead of the exec plugin's bare "Cannot run
 * program". Skipped with the tests ({@code -DskipTests}).
 */
public class RequireNode {
  private static final int MIN_NODE_MAJOR = 20;

  public static void main(String[] args) throws InterruptedException {
    boolean windows = System.getProperty("os.name").startsWith("Windows");
    String node = version("node");
    String npm = version(windows ? "npm.cmd" : "npm");
    int major = Integer.parseInt(node.replaceFirst("^v", "").split("\\.")[0]);
    if (major < MIN_NODE_MAJOR) {
      fail("found Node.js " + node + "; the JavaScript client's tests need Node.js " + MIN_NODE_MAJOR + " or later");
    }
    System.out.println("entanglement-js: Node.js " + node + ", npm " + npm);
  }

  private static String version(String tool) throws InterruptedException {
    try {
      Process p = new ProcessBuilder(tool, "--version").redirectErrorStream(true).start();
      String out;
      try (InputStream in = p.getInputStream()) {
        out = new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
      }
      if (p.waitFor() != 0) {
        fail("'" + tool + " --version' failed: " + out);
      }
      return out;
    } catch (IOException e) {
      fail("'" + tool + "' is not on the PATH");
      throw new IllegalStateException(e);
    }
  }

  private static void fail(String why) {
    System.err.println("entanglement-js: " + why + ". The module's tests (npm ci, npm test and the Java"
        + " interop test) need Node.js " + MIN_NODE_MAJOR + "+ and npm on the PATH; install them,"
        + " or skip the tests with -DskipTests.");
    System.exit(1);
  }
}
