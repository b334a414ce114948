-- Entanglement Reactive store, schema version 1 (H2).
CREATE TABLE IF NOT EXISTS ent_owner (
  owner       VARCHAR(200) PRIMARY KEY,
  epoch       BIGINT       NOT NULL,
  serial      BIGINT       NOT NULL,
  local_owner BOOLEAN      NOT NULL
);
CREATE TABLE IF NOT EXISTS ent_object (
  obj_type     VARCHAR(200)  NOT NULL,
  obj_key      VARCHAR(2000) NOT NULL,
  owner        VARCHAR(200)  NOT NULL,
  epoch        BIGINT        NOT NULL,
  serial       BIGINT        NOT NULL,
  committed_at BIGINT        NOT NULL,
  deleted      BOOLEAN       NOT NULL,
  attributes   CLOB          NOT NULL,
  PRIMARY KEY (obj_type, obj_key)
);
CREATE INDEX IF NOT EXISTS ent_object_owner ON ent_object (owner, epoch, serial);
CREATE TABLE IF NOT EXISTS ent_watermark (
  owner  VARCHAR(200) PRIMARY KEY,
  epoch  BIGINT       NOT NULL,
  serial BIGINT       NOT NULL
);
