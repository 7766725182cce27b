-- One row per stored object. The object's storage key is derived from `id`.
CREATE TABLE files (
    id           uuid        PRIMARY KEY,
    filename     text        NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type text        NOT NULL,
    size         bigint      NOT NULL CHECK (size >= 0),
    sha256       bytea       NOT NULL CHECK (length(sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Keyset pagination, newest first.
CREATE INDEX files_created_at_id_idx ON files (created_at DESC, id DESC);
