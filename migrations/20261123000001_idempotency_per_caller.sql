-- Idempotency keys belong to their caller (the token's user, `anonymous` without one), as
-- payment APIs scope them: two users' equal keys are two keys.
ALTER TABLE idempotency_keys
    ADD COLUMN user_id bigint REFERENCES users (id) ON DELETE CASCADE,
    -- Chosen when the key is first claimed: a retry after a failure continues the same order,
    -- whose id is the providers' idempotency key, so that it can never be charged twice.
    ADD COLUMN order_id uuid,
    -- The instance running the request, which may take it over at once when that request has
    -- ended without an answer; other instances wait for the claim to go stale.
    ADD COLUMN instance uuid;
UPDATE idempotency_keys SET user_id = (SELECT id FROM users WHERE name = 'anonymous');
ALTER TABLE idempotency_keys
    ALTER COLUMN user_id SET NOT NULL,
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD PRIMARY KEY (user_id, key);
