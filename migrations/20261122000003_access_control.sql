-- Access control: API tokens, file owners and per-user storage accounting.

-- With auth off every request acts as this user; files stored before this migration are its.
INSERT INTO users (name) VALUES ('anonymous') ON CONFLICT (name) DO NOTHING;

-- used_bytes: the sizes of the user's files. reserved_bytes: what uploads still streaming
-- hold. A quota check compares their sum. Both lag behind usage_changes not yet applied, on
-- the safe side: a committed upload's reservation is given back when its size is counted.
ALTER TABLE users
    ADD COLUMN used_bytes     bigint NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
    ADD COLUMN reserved_bytes bigint NOT NULL DEFAULT 0 CHECK (reserved_bytes >= 0);

-- Only the SHA-256 of a token is stored: the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id           uuid        PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

-- No cascade: removing a user must not leave their objects without rows.
ALTER TABLE files ADD COLUMN owner_id bigint REFERENCES users (id);
UPDATE files SET owner_id = (SELECT id FROM users WHERE name = 'anonymous');
ALTER TABLE files ALTER COLUMN owner_id SET NOT NULL;
UPDATE users
SET used_bytes = (SELECT coalesce(sum(size), 0) FROM files WHERE files.owner_id = users.id);

-- Every listing is one owner's, newest first.
DROP INDEX files_created_at_id_idx;
CREATE INDEX files_owner_id_created_at_id_idx ON files (owner_id, created_at DESC, id DESC);

-- What each streaming upload holds, and which instance runs it, so that a sweep can give back
-- what a dead instance held.
CREATE TABLE quota_reservations (
    upload_id  uuid        PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instance   uuid        NOT NULL,
    bytes      bigint      NOT NULL CHECK (bytes > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quota_reservations_instance_idx ON quota_reservations (instance);

-- What commits and deletes changed in a user's usage, not yet applied to the user's row. Each
-- writes a row of its own, so concurrent uploads of one user never wait on each other's
-- commit; the rows are applied right after, and by the sweep if that failed.
CREATE TABLE usage_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_delta bigint NOT NULL,
    released   bigint NOT NULL DEFAULT 0 CHECK (released >= 0)
);
CREATE INDEX usage_changes_user_id_idx ON usage_changes (user_id);
