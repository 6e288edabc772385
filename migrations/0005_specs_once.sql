-- berth schema, version 5: each distinct release spec stored once.
-- berth:foreign-keys=off
--
-- Up to version 4 every release row held its full spec snapshot: 600 releases of an
-- app with a 238 KB spec made a 142 MB database, though most releases only change
-- the version. Specs now live in `specs`, keyed by the sha256 of their text
-- (berth_sha256: a function src/store/migrate.ts gives the connection, the same
-- digest the store computes when it inserts a release), and a release names its
-- spec's digest. The rebuild follows SQLite's 12-step ALTER with foreign keys off,
-- so dropping the old table does not first delete its rows one by one.

CREATE TABLE specs (
  digest TEXT NOT NULL PRIMARY KEY,       -- sha256 (hex) of spec
  spec   TEXT NOT NULL CHECK (json_valid(spec))
) STRICT;

INSERT OR IGNORE INTO specs (digest, spec) SELECT berth_sha256(spec), spec FROM releases;

CREATE TABLE releases_v5 (
  app         TEXT    NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
  revision    INTEGER NOT NULL CHECK (revision > 0),
  version     TEXT    NOT NULL,
  spec_digest TEXT    NOT NULL REFERENCES specs (digest),
  reason      TEXT    NOT NULL CHECK (reason IN ('deploy', 'rollback')),
  actor       TEXT    NOT NULL,
  created_at  TEXT    NOT NULL,
  PRIMARY KEY (app, revision)
) STRICT, WITHOUT ROWID;

INSERT INTO releases_v5 (app, revision, version, spec_digest, reason, actor, created_at)
  SELECT app, revision, version, berth_sha256(spec), reason, actor, created_at FROM releases;

DROP TABLE releases;
ALTER TABLE releases_v5 RENAME TO releases;

-- "newest release of version X" (rollback to a version).
CREATE INDEX releases_app_version ON releases (app, version, revision);
-- "is this spec still used" (the trigger below, and the foreign key check on delete).
CREATE INDEX releases_spec ON releases (spec_digest);

-- A spec no release names any more goes with its last release: pruned by history
-- retention, or deleted with its app (ON DELETE CASCADE fires this trigger too).
CREATE TRIGGER releases_spec_gc AFTER DELETE ON releases
  WHEN NOT EXISTS (SELECT 1 FROM releases WHERE spec_digest = old.spec_digest)
BEGIN
  DELETE FROM specs WHERE digest = old.spec_digest;
END;
