-- Upload links: a URL whose secret lets someone without an account upload files to the link's
-- creator, within the link's limits and the creator's quota. As for share links, only the
-- secret's SHA-256 is kept. Revoking a link deletes its row.
CREATE TABLE upload_links (
    id                    uuid        PRIMARY KEY,
    owner_id              bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash           bytea       NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- NULL: until revoked, which only an operator's `sharing.max_expiry_secs = 0` allows.
    expires_at            timestamptz,
    max_files             integer     CHECK (max_files > 0),
    max_file_bytes        bigint      CHECK (max_file_bytes > 0),
    -- Media types or `type/*`; empty: whatever the server allows.
    allowed_content_types text[]      NOT NULL DEFAULT '{}',
    -- Files committed through the link; counted in the transaction that writes their rows.
    files                 integer     NOT NULL DEFAULT 0 CHECK (files >= 0)
);

CREATE INDEX upload_links_owner_id_idx ON upload_links (owner_id, created_at);

-- The link a file came through. No foreign key: the file stays, and says where it came from,
-- after its link is revoked.
ALTER TABLE files ADD COLUMN upload_link_id uuid;

-- What a resumable upload's file is to have when it is whole: the link it came through, and
-- the lifetime it asked for (`expires_in` in Upload-Metadata), counted from its commit.
ALTER TABLE resumable_uploads
    ADD COLUMN upload_link_id uuid,
    ADD COLUMN lifetime_secs bigint CHECK (lifetime_secs > 0);
