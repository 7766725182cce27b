-- A file may have a lifetime: past `expires_at` it is gone at once for every reader, and the
-- sweep deletes it (row, bytes, links, quota) as DELETE would. NULL: until deleted.
ALTER TABLE files ADD COLUMN expires_at timestamptz;

CREATE INDEX files_expires_at_idx ON files (expires_at) WHERE expires_at IS NOT NULL;
