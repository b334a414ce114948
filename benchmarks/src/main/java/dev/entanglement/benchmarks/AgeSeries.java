package dev.entanglement.benchmarks;

import java.util.Arrays;

/**
 * A growable series of (time since the start of the run, age) samples, both in milliseconds, with
 * nearest-rank percentiles over a time window. Thread-safe (synchronized; a few thousand adds per
 * second at most).
 */
final class AgeSeries {
  private long[] times = new long[1 << 14];
  private long[] ages = new long[1 << 14];
  private int size;

  synchronized void add(long timeMs, long ageMs) {
    if (size == times.length) {
      times = Arrays.copyOf(times, size * 2);
      ages = Arrays.copyOf(ages, size * 2);
    }
    times[size] = timeMs;
    ages[size] = ageMs;
    size++;
  }

  synchronized int size() {
    return size;
  }

  /** The ages of samples taken in {@code [fromMs, toMs)}, sorted. */
  synchronized long[] window(long fromMs, long toMs) {
    long[] out = new long[size];
    int n = 0;
    for (int i = 0; i < size; i++) {
      if (times[i] >= fromMs && times[i] < toMs) {
        out[n++] = ages[i];
      }
    }
    long[] w = Arrays.copyOf(out, n);
    Arrays.sort(w);
    return w;
  }

  /** Nearest-rank percentile of sorted values, or -1 if there are none. */
  static long percentile(long[] sorted, double p) {
    if (sorted.length == 0) {
      return -1;
    }
    int rank = (int) Math.ceil(p / 100.0 * sorted.length);
    return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
  }
}
