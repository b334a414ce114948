package dev.entanglement.store;

import java.util.List;

/**
 * What a store holds.
 *
 * @param owners owners with their epoch and last serial; {@code local} ones belong to this node
 * @param objects objects and tombstones, with the owner's version
 * @param watermarks for each remote owner, the version up to which the node holds every state
 * @param purges for each owner whose expired tombstones the node dropped, the newest version
 *     dropped
 */
public record StoredData(
    List<OwnerRecord> owners,
    List<ObjectRecord> objects,
    List<WatermarkRecord> watermarks,
    List<PurgeRecord> purges) {

  public static StoredData empty() {
    return new StoredData(List.of(), List.of(), List.of(), List.of());
  }

  /** An owner of this node (local), or a removed owner (not local, serial unused). */
  public record OwnerRecord(String owner, long epoch, long serial, boolean local) {}

  /** One object state; {@code attributes} is the JSON of the attributes (empty for tombstones). */
  public record ObjectRecord(
      String type,
      String key,
      String owner,
      long epoch,
      long serial,
      long committedAt,
      boolean deleted,
      String attributes) {}

  /** A remote owner's watermark. */
  public record WatermarkRecord(String owner, long epoch, long serial) {}

  /**
   * The newest version of an owner's tombstones dropped after the retention: a peer that holds
   * less of that owner's epoch may keep an object deleted meanwhile, so it is resynced fully.
   */
  public record PurgeRecord(String owner, long epoch, long serial) {}
}
