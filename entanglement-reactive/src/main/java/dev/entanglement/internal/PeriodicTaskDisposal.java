package dev.entanglement.internal;

import reactor.blockhound.BlockHound;
import reactor.blockhound.integration.BlockHoundIntegration;

/**
 * Lets a periodic Reactor task be disposed on a non-blocking thread under BlockHound, as Reactor's
 * own integration lets the one-shot tasks be ({@code SchedulerTask#dispose}, {@code
 * WorkerTask#dispose}): cancelling removes the task from its executor's queue, which may park a
 * moment on the queue's lock. The engine disposes its keepalive task when a link detaches, often on
 * an event loop.
 *
 * <p>Without it the park is reported by throwing from inside the lock's acquisition, which leaves a
 * dead waiter in the lock's queue: the executor's lock is never granted again and every timer of
 * that scheduler worker stops (a whole test JVM hung on {@code Mono.delay}).
 *
 * <p>Shipped with the library, not only its tests, because an application that runs BlockHound
 * (as Reactor recommends for its tests) meets the same hang once a link of a node detaches on an
 * event loop. BlockHound finds it through {@code META-INF/services} when it is installed; without
 * BlockHound on the class path the class is never loaded (the dependency is optional).
 */
public final class PeriodicTaskDisposal implements BlockHoundIntegration {
  @Override
  public void applyTo(BlockHound.Builder builder) {
    builder.allowBlockingCallsInside("reactor.core.scheduler.PeriodicSchedulerTask", "dispose");
    builder.allowBlockingCallsInside("reactor.core.scheduler.PeriodicWorkerTask", "dispose");
  }
}
