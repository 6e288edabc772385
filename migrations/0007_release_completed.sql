-- berth schema, version 7: when a release's rollout completed (NULL: it never did).
-- `rollback {}` goes to the newest release of another version that completed: one that
-- never served the fleet (a broken version whose rollout failed) is not "the previous release".
ALTER TABLE releases ADD COLUMN completed_at TEXT;

-- Releases that completed before this column existed: their RolloutComplete event (one
-- scan of the events), or the revision the status says the fleet converged on.
UPDATE releases SET completed_at = c.at
FROM (SELECT app, revision, MIN(created_at) AS at FROM events WHERE type = 'RolloutComplete' AND revision IS NOT NULL GROUP BY app, revision) AS c
WHERE c.app = releases.app AND c.revision = releases.revision;
UPDATE releases SET completed_at = s.updated_at
FROM status AS s
WHERE s.app = releases.app AND s.observed_revision = releases.revision AND releases.completed_at IS NULL;
