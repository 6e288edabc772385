-- berth schema, version 1.
--
-- Applied by src/store/migrate.ts inside ONE transaction together with
-- `PRAGMA user_version = 1`; so no BEGIN/COMMIT here, and nothing that cannot
-- run inside a transaction (PRAGMA foreign_keys, VACUUM, journal_mode).
--
-- Conventions: times are ISO-8601 UTC text (`2025-01-02T03:04:05.678Z`), which
-- sorts correctly as text; JSON documents are text checked with json_valid();
-- booleans are INTEGER 0/1. STRICT tables so a wrong type is an error, not a
-- silent coercion. Secret VALUES are never stored anywhere: AppSpec.secrets
-- only holds variable names.

-- Desired state per app: the normalised AppSpec (JSON), from the config file or
-- `PUT /v1/apps/:app`.
CREATE TABLE apps (
  name       TEXT    NOT NULL PRIMARY KEY,
  spec       TEXT    NOT NULL CHECK (json_valid(spec)),
  paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
  created_at TEXT    NOT NULL,
  updated_at TEXT    NOT NULL
) STRICT;

-- Append-only release history. revision is per app and only grows; the newest
-- revision is the desired release. A rollback is a new revision (reason
-- 'rollback') pointing at an older version. spec is the snapshot the release
-- was made from.
CREATE TABLE releases (
  app        TEXT    NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
  revision   INTEGER NOT NULL CHECK (revision > 0),
  version    TEXT    NOT NULL,
  spec       TEXT    NOT NULL CHECK (json_valid(spec)),
  reason     TEXT    NOT NULL CHECK (reason IN ('deploy', 'rollback')),
  actor      TEXT    NOT NULL,
  created_at TEXT    NOT NULL,
  PRIMARY KEY (app, revision)
) STRICT, WITHOUT ROWID;

-- "newest release of version X" (rollback to a version).
CREATE INDEX releases_app_version ON releases (app, version, revision);

-- Observed status, written only by the controller.
CREATE TABLE status (
  app               TEXT    NOT NULL PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
  phase             TEXT    CHECK (phase IS NULL OR phase IN ('Progressing', 'Complete', 'Failed', 'Paused', 'RolledBack')),
  observed_revision INTEGER,
  conditions        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(conditions)),
  hosts             TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(hosts)),
  updated_at        TEXT    NOT NULL
) STRICT;

-- The controller's rollout record: one per app, for the revision being rolled
-- out. state is an opaque JSON document owned by the reconciler (batch index,
-- per-host step, started_at, failures, ...).
CREATE TABLE rollouts (
  app        TEXT    NOT NULL PRIMARY KEY REFERENCES apps (name) ON DELETE CASCADE,
  revision   INTEGER NOT NULL,
  state      TEXT    NOT NULL CHECK (json_valid(state)),
  updated_at TEXT    NOT NULL
) STRICT;

-- Append-only audit of API mutations and controller steps. No foreign key on
-- app: the audit trail outlives a deleted app. app is NULL for events that
-- belong to no app (host reachability, daemon start). AUTOINCREMENT so an id is
-- never reused, which SSE resume (Last-Event-ID) relies on.
CREATE TABLE events (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  app        TEXT,
  host       TEXT,
  revision   INTEGER,
  type       TEXT    NOT NULL,
  message    TEXT    NOT NULL,
  actor      TEXT,
  created_at TEXT    NOT NULL
) STRICT;

CREATE INDEX events_app_id ON events (app, id);

-- Last reachability check of each host.
CREATE TABLE hosts_status (
  host           TEXT    NOT NULL PRIMARY KEY,
  up             INTEGER NOT NULL CHECK (up IN (0, 1)),
  docker_version TEXT,
  last_error     TEXT,
  checked_at     TEXT    NOT NULL
) STRICT;
