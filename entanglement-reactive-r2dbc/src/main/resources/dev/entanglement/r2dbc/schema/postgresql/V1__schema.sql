-- Entanglement Reactive store, schema version 1 (PostgreSQL).
CREATE TABLE IF NOT EXISTS ent_owner (
  owner       TEXT    PRIMARY KEY,
  epoch       BIGINT  NOT NULL,
  serial      BIGINT  NOT NULL,
  local_owner BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS ent_object (
  obj_type     TEXT    NOT NULL,
  obj_key      TEXT    NOT NULL,
  owner        TEXT    NOT NULL,
  epoch        BIGINT  NOT NULL,
  serial       BIGINT  NOT NULL,
  committed_at BIGINT  NOT NULL,
  deleted      BOOLEAN NOT NULL,
  attributes   TEXT    NOT NULL,
  PRIMARY KEY (obj_type, obj_key)
);
CREATE INDEX IF NOT EXISTS ent_object_owner ON ent_object (owner, epoch, serial);
CREATE TABLE IF NOT EXISTS ent_watermark (
  owner  TEXT   PRIMARY KEY,
  epoch  BIGINT NOT NULL,
  serial BIGINT NOT NULL
);
