-- Entanglement Reactive store, schema version 2 (PostgreSQL): each owner's newest dropped tombstone.
CREATE TABLE IF NOT EXISTS ent_purge (
  owner  TEXT   PRIMARY KEY,
  epoch  BIGINT NOT NULL,
  serial BIGINT NOT NULL
);
