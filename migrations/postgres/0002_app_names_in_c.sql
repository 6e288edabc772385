-- Every column that holds an app's name compares as apps.name does: COLLATE "C", byte
-- order, as SQLite compares all text. releases.app, rollouts.app and events.app were in
-- the database's default collation, so a join on the name had to compare in theirs to
-- use their indexes (src/store/pass-inputs.ts did), and one in "C" scanned every release.
-- Equality is unchanged (both collations are deterministic); only their indexes are rebuilt.
ALTER TABLE releases ALTER COLUMN app TYPE TEXT COLLATE "C";
ALTER TABLE rollouts ALTER COLUMN app TYPE TEXT COLLATE "C";
ALTER TABLE events ALTER COLUMN app TYPE TEXT COLLATE "C";
