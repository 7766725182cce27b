-- Share links: a file downloaded without a token, through a URL that carries a random secret.
-- Only the secret's SHA-256 is kept (it has 256 random bits: a plain hash is enough, as for
-- tokens). A link goes with its file; revoking one deletes its row.
CREATE TABLE share_links (
    id            uuid        PRIMARY KEY,
    file_id       uuid        NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    secret_hash   bytea       NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- NULL: until revoked, which only an operator's `sharing.max_expiry_secs = 0` allows.
    expires_at    timestamptz,
    max_downloads integer     CHECK (max_downloads > 0),
    -- Whole downloads: responses that sent the file's last byte.
    downloads     integer     NOT NULL DEFAULT 0 CHECK (downloads >= 0)
);

CREATE INDEX share_links_file_id_idx ON share_links (file_id, created_at);
