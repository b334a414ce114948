package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.Random;
import java.util.stream.LongStream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class AgeWindowTest {

  @Test
  @DisplayName("empty window: zero; negative ages (clock skew) count as zero")
  void emptyAndNegative() {
    AgeWindow w = new AgeWindow();
    assertEquals(Duration.ZERO, w.quantile(0.5));
    w.record(-40);
    assertEquals(Duration.ZERO, w.quantile(0.99));
  }

  @Test
  @DisplayName("nearest-rank quantiles of 1..100 ms")
  void nearestRank() {
    AgeWindow w = new AgeWindow();
    for (long i = 100; i >= 1; i--) {
      w.record(i);
    }
    assertEquals(Duration.ofMillis(50), w.quantile(0.5));
    assertEquals(Duration.ofMillis(99), w.quantile(0.99));
    assertEquals(Duration.ofMillis(100), w.quantile(1.0));
    assertEquals(Duration.ofMillis(1), w.quantile(0.0));
  }

  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {1, 7, 42, 2026})
  @DisplayName("only the last SIZE ages count: the window forgets older ones")
  void keepsTheLastSize(long seed) {
    Random random = new Random(seed);
    AgeWindow w = new AgeWindow();
    int older = AgeWindow.SIZE + random.nextInt(3 * AgeWindow.SIZE);
    for (int i = 0; i < older; i++) {
      w.record(1_000_000 + random.nextInt(1000)); // forgotten
    }
    long[] recent = LongStream.range(0, AgeWindow.SIZE).map(i -> random.nextInt(500)).toArray();
    for (long age : recent) {
      w.record(age);
    }
    long[] sorted = recent.clone();
    java.util.Arrays.sort(sorted);
    assertEquals(Duration.ofMillis(sorted[AgeWindow.SIZE / 2 - 1]), w.quantile(0.5));
    assertEquals(Duration.ofMillis(sorted[AgeWindow.SIZE - 1]), w.quantile(1.0));
  }
}
