-- Entanglement Reactive store, schema version 2 (H2): each owner's newest dropped tombstone.
CREATE TABLE IF NOT EXISTS ent_purge (
  owner  VARCHAR(200) PRIMARY KEY,
  epoch  BIGINT       NOT NULL,
  serial BIGINT       NOT NULL
);
