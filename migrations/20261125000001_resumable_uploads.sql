-- Resumable (tus) uploads under way. The row is the whole state of one upload, so that any
-- instance can continue it where another stopped: how far it is, the SHA-256 state of the bytes
-- so far, and on S3 the multipart upload with its parts and the tail too short to be a part.
-- While the row exists its bytes are its own; the statement that turns it into a file deletes
-- it, so that an upload is either resumable or a file, never both and never neither.
CREATE TABLE resumable_uploads (
    -- Also the id of the file it becomes.
    id            uuid        PRIMARY KEY,
    owner_id      bigint      NOT NULL REFERENCES users (id),
    -- NULL while the client defers it (creation-defer-length).
    length        bigint      CHECK (length >= 0),
    received      bigint      NOT NULL DEFAULT 0 CHECK (received >= 0),
    -- Upload-Metadata as the client sent it, to give back on HEAD.
    metadata      text,
    filename      text        NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    -- The client's `filetype`, until the first bytes decide the content type.
    declared_type text,
    content_type  text,
    -- The SHA-256 state after `received` bytes.
    hash_state    bytea       NOT NULL,
    -- S3: the multipart upload, the ETags of its parts in order, and the bytes after them.
    multipart_id  text,
    parts         text[]      NOT NULL DEFAULT '{}',
    tail          bytea       NOT NULL DEFAULT '',
    -- A PATCH under way holds the lease, so that two can never write at once; a lease whose
    -- instance is gone may be taken over.
    lease         uuid,
    lease_holder  uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CHECK (length IS NULL OR received <= length)
);
-- The tail is random bytes up to a part's size: compressing it would cost CPU for nothing.
ALTER TABLE resumable_uploads ALTER COLUMN tail SET STORAGE EXTERNAL;
CREATE INDEX resumable_uploads_expires_at_idx ON resumable_uploads (expires_at);

-- A resumable upload's reservation outlives the instance that made it: it has none (NULL), is
-- never given back for an instance's death, and goes with the upload.
ALTER TABLE quota_reservations ALTER COLUMN instance DROP NOT NULL;
