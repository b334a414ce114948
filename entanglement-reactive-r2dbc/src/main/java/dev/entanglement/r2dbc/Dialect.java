package dev.entanglement.r2dbc;

/** The SQL that differs between databases: upserts, and where the schema scripts live. */
enum Dialect {
  H2(
      "h2",
      "MERGE INTO ent_owner (owner, epoch, serial, local_owner) KEY (owner) VALUES ($1, $2, $3, $4)",
      "MERGE INTO ent_object (obj_type, obj_key, owner, epoch, serial, committed_at, deleted, attributes)"
          + " KEY (obj_type, obj_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      "MERGE INTO ent_watermark (owner, epoch, serial) KEY (owner) VALUES ($1, $2, $3)",
      "MERGE INTO ent_purge (owner, epoch, serial) KEY (owner) VALUES ($1, $2, $3)"),
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
          + " ON CONFLICT (owner) DO UPDATE SET epoch = EXCLUDED.epoch, serial = EXCLUDED.serial");

  final String scripts;
  final String upsertOwner;
  final String upsertObject;
  final String upsertWatermark;
  final String upsertPurge;

  Dialect(
      String scripts, String upsertOwner, String upsertObject, String upsertWatermark, String upsertPurge) {
    this.scripts = scripts;
    this.upsertOwner = upsertOwner;
    this.upsertObject = upsertObject;
    this.upsertWatermark = upsertWatermark;
    this.upsertPurge = upsertPurge;
  }
}
