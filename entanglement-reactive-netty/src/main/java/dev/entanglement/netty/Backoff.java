package dev.entanglement.netty;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Exponential backoff with full jitter: attempt {@code n} (from 0) waits a uniformly random time in
 * {@code [0, min(cap, first * 2^n)]}.
 */
record Backoff(Duration first, Duration cap) {
  Backoff {
    if (first.isNegative() || first.isZero() || cap.compareTo(first) < 0) {
      throw new IllegalArgumentException("backoff needs 0 < first <= cap: " + first + ", " + cap);
    }
  }

  /** The upper bound of the wait before attempt {@code n}. */
  Duration ceiling(int attempt) {
    long ms = first.toMillis();
    for (int i = 0; i < attempt && ms < cap.toMillis(); i++) {
      ms *= 2;
    }
    return Duration.ofMillis(Math.min(ms, cap.toMillis()));
  }

  /** A random wait before attempt {@code n}. */
  Duration delay(int attempt) {
    long ceiling = ceiling(attempt).toMillis();
    return Duration.ofMillis(ThreadLocalRandom.current().nextLong(ceiling + 1));
  }
}
