package dev.entanglement.netty;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.util.ResourceLeakDetector;
import io.netty.util.ResourceLeakDetectorFactory;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Fails a test class if Netty reports a leaked buffer during it. Surefire runs with paranoid leak
 * detection; this extension turns the detector's reports, which Netty only logs, into a failure.
 */
final class LeakDetection implements BeforeAllCallback, AfterAllCallback {
  static final List<String> LEAKS = new CopyOnWriteArrayList<>();

  static {
    ResourceLeakDetector.setLevel(ResourceLeakDetector.Level.PARANOID);
    ResourceLeakDetectorFactory.setResourceLeakDetectorFactory(
        new ResourceLeakDetectorFactory() {
          @Override
          public <T> ResourceLeakDetector<T> newResourceLeakDetector(
              Class<T> resource, int samplingInterval, long maxActive) {
            return new ResourceLeakDetector<T>(resource, samplingInterval) {
              @Override
              protected void reportTracedLeak(String type, String records) {
                LEAKS.add(type + records);
                super.reportTracedLeak(type, records);
              }

              @Override
              protected void reportUntracedLeak(String type) {
                LEAKS.add(type);
                super.reportUntracedLeak(type);
              }
            };
          }
        });
  }

  /**
   * Installs the recording detector before any test runs, so that Netty's static detectors (created
   * when Netty's classes load) are recording ones whatever the test order.
   */
  public static final class Installer implements org.junit.platform.launcher.TestExecutionListener {
    @Override
    public void testPlanExecutionStarted(org.junit.platform.launcher.TestPlan plan) {
      LEAKS.clear();
    }
  }

  @Override
  public void beforeAll(ExtensionContext context) {
    LEAKS.clear();
  }

  @Override
  public void afterAll(ExtensionContext context) {
    // Leaks are reported when a leaked buffer is collected and a later allocation polls the queue.
    for (int round = 0; round < 3 && LEAKS.isEmpty(); round++) {
      System.gc();
      for (int i = 0; i < 64; i++) {
        ByteBuf b = PooledByteBufAllocator.DEFAULT.buffer(16);
        b.release();
      }
    }
    if (!LEAKS.isEmpty()) {
      throw new AssertionError("Netty reported leaked buffers:\n" + String.join("\n", LEAKS));
    }
  }
}
