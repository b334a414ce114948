package dev.entanglement.r2dbc;

import org.jspecify.annotations.Nullable;

/**
 * The SQL that differs between databases: upserts, where the schema scripts live, and how a store
 * claims its database for one node.
 */
enum Dialect {
  H2(
      "h2",
      null, // a file is locked by the process that opened it; memory belongs to one JVM
      "MERGE INTO ent_owner (owner, epoch, serial, local_owner) KEY (owner) VALUES ($1, $2, $3, $4)",
      "MERGE INTO ent_object (obj_type, obj_key, owner, epoch, serial, committed_at, deleted, attributes)"
          + " KEY (obj_type, obj_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      "MERGE INTO ent_watermark (owner, epoch, serial) KEY (owner) VALUES ($1, $2, $3)",
      "MERGE INTO ent_purge (owner, epoch, serial) KEY (owner) VALUES ($1, $2, $3)"),
  POSTGRESQL(
      "postgresql",
      // A session-level advisory lock on this schema's store: released when the connection ends.
      "SELECT pg_try_advisory_lock(" + Dialect.LOCK_CLASS + ", hashtext(current_schema()))",
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
          + " ON CONFLICT (owner) DO UPDATE SET epoch = EXCLUDED.epoch, serial = EXCLUDED.serial");

  /** The first key of the advisory lock: "Ent!" in ASCII. */
  private static final int LOCK_CLASS = 0x456e7421;

  final String scripts;
  /** A query answering whether this connection now holds the store alone; null if not needed. */
  final @Nullable String claim;
  final String upsertOwner;
  final String upsertObject;
  final String upsertWatermark;
  final String upsertPurge;

  Dialect(
      String scripts,
      @Nullable String claim,
      String upsertOwner,
      String upsertObject,
      String upsertWatermark,
      String upsertPurge) {
    this.scripts = scripts;
    this.claim = claim;
    this.upsertOwner = upsertOwner;
    this.upsertObject = upsertObject;
    this.upsertWatermark = upsertWatermark;
    this.upsertPurge = upsertPurge;
  }
}
