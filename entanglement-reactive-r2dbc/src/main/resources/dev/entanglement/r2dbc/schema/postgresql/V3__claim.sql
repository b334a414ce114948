-- Entanglement Reactive store, schema version 3 (PostgreSQL): the node that writes this database.
-- One row: the store instance holding the claim (empty: none), how long its claim lasts without
-- renewal, and when it last renewed it, by the database's clock.
CREATE TABLE IF NOT EXISTS ent_claim (
  id         INT         PRIMARY KEY,
  instance   TEXT        NOT NULL,
  ttl_ms     BIGINT      NOT NULL,
  renewed_at TIMESTAMPTZ NOT NULL
);
INSERT INTO ent_claim (id, instance, ttl_ms, renewed_at)
  VALUES (1, '', 0, TIMESTAMPTZ '1970-01-01 00:00:00+00');
