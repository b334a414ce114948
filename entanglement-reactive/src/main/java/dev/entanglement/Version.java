package dev.entanglement;

/**
 * The version an owner assigns to each commit. A higher epoch always wins: an owner starts a new
 * epoch when its store is lost or reset, and its serial starts again. Within an epoch, the higher
 * serial wins.
 */
public record Version(long epoch, long serial) implements Comparable<Version> {

  @Override
  public int compareTo(Version o) {
    int c = Long.compare(epoch, o.epoch);
    return c != 0 ? c : Long.compare(serial, o.serial);
  }

  /** True if this version is strictly newer than {@code other}. */
  public boolean isNewerThan(Version other) {
    return compareTo(other) > 0;
  }

  @Override
  public String toString() {
    return epoch + ":" + serial;
  }
}
