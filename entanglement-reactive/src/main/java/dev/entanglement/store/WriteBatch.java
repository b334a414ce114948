package dev.entanglement.store;

import java.util.ArrayList;
import java.util.List;

/**
 * An ordered group of changes written as one transaction. Mutable while the engine fills it;
 * handed to the store only once complete.
 */
public final class WriteBatch {
  /** One change, in order. */
  public sealed interface Change {}

  public record PutOwner(StoredData.OwnerRecord owner) implements Change {}

  public record PutObject(StoredData.ObjectRecord object) implements Change {}

  public record RemoveObject(String type, String key) implements Change {}

  public record PutWatermark(StoredData.WatermarkRecord watermark) implements Change {}

  /** Records that an owner's tombstones up to this version were dropped, replacing an older record. */
  public record PutPurge(StoredData.PurgeRecord purge) implements Change {}

  /**
   * Removes a remote owner's objects and purge record up to its epoch and its watermark, and
   * records it as removed.
   */
  public record RemoveOwner(String owner, long epoch) implements Change {}

  private final List<Change> changes = new ArrayList<>();

  public WriteBatch add(Change change) {
    changes.add(change);
    return this;
  }

  public List<Change> changes() {
    return changes;
  }

  public boolean isEmpty() {
    return changes.isEmpty();
  }

  public int size() {
    return changes.size();
  }
}
