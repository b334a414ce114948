package dev.entanglement.netty;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import reactor.core.publisher.Mono;

/** Waits for a condition in a test, polling every 10 ms up to a deadline. */
final class Eventually {
  private Eventually() {}

  /**
   * Returns how long {@code condition} took to hold, polled every 10 ms; fails with {@code what}
   * after {@code timeout}.
   */
  static Duration until(String what, Duration timeout, BooleanSupplier condition) {
    long start = System.nanoTime();
    long deadline = start + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("not within " + timeout + ": " + what);
      }
      Mono.delay(Duration.ofMillis(10)).block();
    }
    return Duration.ofNanos(System.nanoTime() - start);
  }
}
