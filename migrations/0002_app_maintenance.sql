-- berth schema, version 2: maintenance mode per app.
-- NULL = live; otherwise the message the per-host proxies answer with (503).
ALTER TABLE apps ADD COLUMN maintenance TEXT;
