-- An intent whose settling failed or whose row's outcome was unknown: the instance that made
-- it settles it on its next sweep, and keeps trying until that succeeds. Kept here rather than
-- in the process's memory, so that no failure and no restart can lose it.
ALTER TABLE storage_intents ADD COLUMN deferred boolean NOT NULL DEFAULT false;
