package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class BackoffTest {
  private final Backoff backoff = new Backoff(Duration.ofSeconds(1), Duration.ofSeconds(60));

  @Test
  void ceilingDoublesUpToTheCap() {
    assertEquals(Duration.ofSeconds(1), backoff.ceiling(0));
    assertEquals(Duration.ofSeconds(2), backoff.ceiling(1));
    assertEquals(Duration.ofSeconds(32), backoff.ceiling(5));
    assertEquals(Duration.ofSeconds(60), backoff.ceiling(6));
    assertEquals(Duration.ofSeconds(60), backoff.ceiling(1_000));
  }

  @ParameterizedTest
  @ValueSource(ints = {0, 1, 3, 6, 40})
  void delayIsFullJitterBelowTheCeiling(int attempt) {
    long ceiling = backoff.ceiling(attempt).toMillis();
    long max = 0;
    long min = Long.MAX_VALUE;
    for (int i = 0; i < 2_000; i++) {
      long d = backoff.delay(attempt).toMillis();
      assertTrue(d >= 0 && d <= ceiling, d + " outside [0, " + ceiling + "]");
      max = Math.max(max, d);
      min = Math.min(min, d);
    }
    // Full jitter spreads over the whole range, not around the ceiling.
    assertTrue(min < ceiling / 10 && max > ceiling * 9 / 10, "spread " + min + ".." + max);
  }

  @Test
  void invalidBoundsAreRefused() {
    assertThrows(IllegalArgumentException.class, () -> new Backoff(Duration.ZERO, Duration.ofSeconds(1)));
    assertThrows(IllegalArgumentException.class, () -> new Backoff(Duration.ofSeconds(2), Duration.ofSeconds(1)));
  }
}
