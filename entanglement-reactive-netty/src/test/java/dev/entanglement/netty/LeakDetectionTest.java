package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertFalse;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import org.junit.jupiter.api.Test;

/** The leak check used by the transport tests can fail: a dropped buffer is reported. */
class LeakDetectionTest {
  @Test
  void aDroppedBufferIsReported() {
    LeakDetection.LEAKS.clear();
    leak();
    for (int round = 0; round < 20 && LeakDetection.LEAKS.isEmpty(); round++) {
      System.gc();
      for (int i = 0; i < 256; i++) {
        PooledByteBufAllocator.DEFAULT.buffer(16).release();
      }
    }
    assertFalse(LeakDetection.LEAKS.isEmpty(), "the recording detector missed a leak");
    LeakDetection.LEAKS.clear();
  }

  private static void leak() {
    ByteBuf b = PooledByteBufAllocator.DEFAULT.buffer(32);
    b.writeInt(42);
  }
}
