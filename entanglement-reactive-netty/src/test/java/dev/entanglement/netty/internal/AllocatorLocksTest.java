package dev.entanglement.netty.internal;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.ServiceLoader;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.blockhound.integration.BlockHoundIntegration;

class AllocatorLocksTest {

  @Test
  @DisplayName("BlockHound finds the allowance through the transports' service file")
  void registeredForBlockHound() {
    assertTrue(ServiceLoader.load(BlockHoundIntegration.class).stream()
        .anyMatch(p -> p.type() == AllocatorLocks.class));
  }

  @Test
  @DisplayName("the method it allows still exists in the Netty on the class path")
  void namesNettysMethod() throws ClassNotFoundException {
    Class<?> magazine = Class.forName("io.netty.buffer.AdaptivePoolingAllocator$Magazine");
    assertTrue(Arrays.stream(magazine.getDeclaredMethods()).anyMatch(m -> m.getName().equals("free")),
        "AdaptivePoolingAllocator$Magazine#free: update AllocatorLocks for this Netty");
  }
}
