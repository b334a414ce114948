package dev.entanglement;

import java.time.Duration;
import java.util.Arrays;

/**
 * The ages of the last {@link #SIZE} states sent on one link, in milliseconds, for percentiles.
 * Recorded on the engine's serial executor; read there too ({@link Engine#stats} copies it).
 */
final class AgeWindow {
  static final int SIZE = 256;

  private final long[] ages = new long[SIZE];
  private long recorded;

  void record(long ageMillis) {
    ages[(int) (recorded++ % SIZE)] = Math.max(0, ageMillis);
  }

  /** The {@code q} quantile (0 to 1, nearest rank) of the window; zero when nothing was recorded. */
  Duration quantile(double q) {
    int n = (int) Math.min(recorded, SIZE);
    if (n == 0) {
      return Duration.ZERO;
    }
    long[] sorted = Arrays.copyOf(ages, n);
    Arrays.sort(sorted);
    int rank = (int) Math.ceil(q * n);
    return Duration.ofMillis(sorted[Math.max(0, Math.min(n - 1, rank - 1))]);
  }
}
