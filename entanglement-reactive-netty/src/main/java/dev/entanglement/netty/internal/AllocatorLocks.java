package dev.entanglement.netty.internal;

import reactor.blockhound.BlockHound;
import reactor.blockhound.integration.BlockHoundIntegration;

/**
 * Lets Netty's adaptive buffer allocator take its magazine lock on an event loop under BlockHound.
 * When threads contend for a magazine the allocator adds magazines and frees the old ones, each
 * under a {@code StampedLock} held for a few instructions; a thread that meets it held parks a
 * moment. That is synchronization, not blocking I/O, and BlockHound reports it only because it
 * parks (the same exception is known to other Netty 4.2 users' BlockHound rules).
 *
 * <p>Without it the park is reported by throwing from inside the lock's acquisition: the write of
 * the run a link's event loop was encoding fails, and on an event loop that does not catch a task's
 * error (Netty's {@code DefaultEventLoop}) the loop itself stops. Seen in {@code BurstWriterTest}
 * when two in-JVM channels' event loops allocated and released buffers at once.
 *
 * <p>Shipped with the transports, not only their tests, because an application that runs
 * BlockHound meets the same failure on its links. BlockHound finds it through {@code
 * META-INF/services} when it is installed; without BlockHound on the class path the class is never
 * loaded (the dependency is optional).
 */
public final class AllocatorLocks implements BlockHoundIntegration {
  @Override
  public void applyTo(BlockHound.Builder builder) {
    builder.allowBlockingCallsInside("io.netty.buffer.AdaptivePoolingAllocator$Magazine", "free");
  }
}
