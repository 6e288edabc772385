-- berth schema, version 6: an app being deleted (DELETE /v1/apps/:app).
-- NULL = not being deleted; otherwise when the deletion was asked for. The controller
-- drains the app's routes and removes its containers on every host, then deletes the row.
ALTER TABLE apps ADD COLUMN deleting_since TEXT;
