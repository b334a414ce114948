package dev.entanglement.r2dbc.internal;

import reactor.blockhound.BlockHound;
import reactor.blockhound.integration.BlockHoundIntegration;

/**
 * Lets a task be handed to the stores' threads from a non-blocking thread under BlockHound: when no
 * thread is idle, the pool takes its lock to add one, and may park a moment on it. Without it, the
 * park would be reported by throwing from inside the lock's acquisition, which leaves a dead waiter
 * in the lock's queue: the pool would never add a thread again, and every store would stop.
 *
 * <p>Shipped with the library, found through {@code META-INF/services} when BlockHound is installed;
 * without BlockHound on the class path the class is never loaded (the dependency is optional).
 */
public final class StoreThreadsHandOff implements BlockHoundIntegration {
  @Override
  public void applyTo(BlockHound.Builder builder) {
    builder.allowBlockingCallsInside("dev.entanglement.r2dbc.StoreThreads", "execute");
  }
}
