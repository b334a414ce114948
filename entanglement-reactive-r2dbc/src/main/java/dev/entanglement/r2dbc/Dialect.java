package dev.entanglement.r2dbc;

import org.jspecify.annotations.Nullable;

/**
 * The SQL that differs between databases: upserts, taking the claim (date arithmetic), and where
 * the schema scripts live.
 */
enum Dialect {
  H2(
      "h2",
      "MERGE INTO ent_owner (owner, epoch, serial, local_owner) KEY (owner) VALUES ($1, $2, $3, $4)",
      "MERGE INTO ent_object (obj_type, obj_key, owner, epoch, serial, committed_at, deleted, attributes)"
          + " KEY (obj_type, obj_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      "MERGE INTO ent_watermark (owner, epoch, serial) KEY (owner) VALUES ($1, $2, $3)",
      "MERGE INTO ent_purge (owner, epoch, serial) KEY (owner) VALUES ($1, $2, $3)",
      "UPDATE ent_claim SET instance = $1, ttl_ms = $2, renewed_at = CURRENT_TIMESTAMP WHERE id = 1"
          + " AND (instance = $1 OR instance = '' OR DATEADD(MILLISECOND, ttl_ms, renewed_at) < CURRENT_TIMESTAMP)",
      null),
  POSTGRESQL(
      "postgresql",
      "INSERT INTO ent_owner (owner, epoch, serial, local_owner) VALUES ($1, $2, $3, $4)"
          + " ON CONFLICT (owner) DO UPDATE SET epoch = EXCLUDED.epoch, serial = EXCLUDED.serial,"
          + " local_owner = EXCLUDED.local_owner",
      "INSERT INTO ent_object (obj_type, obj_key, owner, epoch, serial, committed_at, deleted, attributes)"
          + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
          + " ON CONFLICT (obj_type, obj_key) DO UPDATE SET owner = EXCLUDED.owner, epoch = EXCLUDED.epoch,"
          + " serial = EXCLUDED.serial, committed_at = EXCLUDED.committed_at, deleted = EXCLUDED.deleted,"
          + " attributes = EXCLUDED.attributes",
      "INSERT INTO ent_watermark (owner, epoch, serial) VALUES ($1, $2, $3)"
          + " ON CONFLICT (owner) DO UPDATE SET epoch = EXCLUDED.epoch, serial = EXCLUDED.serial",
      "INSERT INTO ent_purge (owner, epoch, serial) VALUES ($1, $2, $3)"
          + " ON CONFLICT (owner) DO UPDATE SET epoch = EXCLUDED.epoch, serial = EXCLUDED.serial",
      "UPDATE ent_claim SET instance = $1, ttl_ms = $2, renewed_at = clock_timestamp() WHERE id = 1"
          + " AND (instance = $1 OR instance = ''"
          + " OR renewed_at + ttl_ms * INTERVAL '1 millisecond' < clock_timestamp())",
      "SET LOCAL lock_timeout = '1s'");

  final String scripts;
  final String upsertOwner;
  final String upsertObject;
  final String upsertWatermark;
  final String upsertPurge;
  /**
   * Takes the claim for instance $1 with time to live $2 (ms): if it holds it already, if nobody
   * does, or if the holder's claim lapsed by the database's clock. One row updated if taken.
   */
  final String takeClaim;
  /**
   * Run first in a claim attempt's transaction, to bound its wait for the claim's lock (H2's
   * default lock timeout, 2 s, bounds it already); null if none is needed.
   */
  final @Nullable String boundLockWait;

  Dialect(
      String scripts, String upsertOwner, String upsertObject, String upsertWatermark, String upsertPurge,
      String takeClaim, @Nullable String boundLockWait) {
    this.scripts = scripts;
    this.upsertOwner = upsertOwner;
    this.upsertObject = upsertObject;
    this.upsertWatermark = upsertWatermark;
    this.upsertPurge = upsertPurge;
    this.takeClaim = takeClaim;
    this.boundLockWait = boundLockWait;
  }
}
