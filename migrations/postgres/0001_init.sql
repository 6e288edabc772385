-- berth's schema on PostgreSQL: the same tables, columns and rules as the SQLite schema
-- at its version 7 (migrations/0001..0007), plus the leader lease, which only a
-- database several daemons share needs. Integers are BIGINT (read back as numbers),



CREATE TABLE apps (
  name           TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
  spec           TEXT    NOT NULL CHECK (spec::jsonb IS NOT NULL),
  paused         BIGINT  NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
  maintenance    TEXT,
  deleting_since TEXT,
  created_at     TEXT    NOT NULL,
  updated_at     TEXT    NOT NULL
);

CREATE TABLE specs (
  digest TEXT NOT NULL PRIMARY KEY,       -- sha256 (hex) of spec
  spec   TEXT NOT NULL CHECK (spec::jsonb IS NOT NULL)
);

CREATE TABLE releases (
  app          TEXT    NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
  revision     BIGINT  NOT NULL CHECK (revision > 0),
  version      TEXT    NOT NULL,
  spec_digest  TEXT    NOT NULL REFERENCES specs (digest),
  reason       TEXT    NOT NULL CHECK (reason IN ('deploy', 'rollback')),
  actor        TEXT    NOT NULL,
  created_at   TEXT    NOT NULL,
  completed_at TEXT,
  PRIMARY KEY (app, revision)
);

CREATE INDEX releases_app_version ON releases (app, version, revision);
CREATE INDEX releases_spec ON releases (spec_digest);

-- A spec no release names any more goes with its last release (SQLite: the same trigger).
CREATE FUNCTION releases_spec_gc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM releases WHERE spec_digest = OLD.spec_digest) THEN
    DELETE FROM specs WHERE digest = OLD.spec_digest;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER releases_spec_gc AFTER DELETE ON releases
  FOR EACH ROW EXECUTE FUNCTION releases_spec_gc();

CREATE TABLE status (
  app               TEXT    COLLATE "C" NOT NULL PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
  phase             TEXT    CHECK (phase IS NULL OR phase IN ('Progressing', 'Complete', 'Failed', 'Paused', 'RolledBack')),
  observed_revision BIGINT,
  conditions        TEXT    NOT NULL DEFAULT '[]' CHECK (conditions::jsonb IS NOT NULL),
  hosts             TEXT    NOT NULL DEFAULT '[]' CHECK (hosts::jsonb IS NOT NULL),
  updated_at        TEXT    NOT NULL
);

CREATE TABLE rollouts (
  app        TEXT    NOT NULL PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
  revision   BIGINT  NOT NULL,
  state      TEXT    NOT NULL CHECK (state::jsonb IS NOT NULL),
  updated_at TEXT    NOT NULL
);

CREATE TABLE events (
  id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  app        TEXT,
  host       TEXT,
  revision   BIGINT,
  type       TEXT    NOT NULL,
  message    TEXT    NOT NULL,
  actor      TEXT,
  created_at TEXT    NOT NULL
);

CREATE INDEX events_app_id ON events (app, id);

CREATE TABLE hosts_status (
  host           TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
  up             BIGINT  NOT NULL CHECK (up IN (0, 1)),
  docker_version TEXT,
  last_error     TEXT,
  checked_at     TEXT    NOT NULL
);

CREATE TABLE certificates (
  host_name       TEXT   COLLATE "C" PRIMARY KEY,
  certificate     TEXT   NOT NULL,
  private_key     TEXT   NOT NULL,
  serial          TEXT   NOT NULL,
  not_after       TEXT   NOT NULL,
  issued_at       TEXT   NOT NULL,
  renew_before_ms BIGINT NOT NULL
);

CREATE TABLE acme_accounts (
  directory   TEXT PRIMARY KEY,
  private_key TEXT NOT NULL,
  url         TEXT,
  created_at  TEXT NOT NULL
);

-- Who reconciles (src/cluster/lease.ts): one row per lease. `epoch` grows at every change
-- of holder; a leader's writes check it (fencing). Times are the database's clock.
CREATE TABLE leases (
  name       TEXT        NOT NULL PRIMARY KEY,
  holder     TEXT        NOT NULL,
  epoch      BIGINT      NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  renewed_at TIMESTAMPTZ NOT NULL
);
