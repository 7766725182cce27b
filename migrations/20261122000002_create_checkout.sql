-- POST /checkout: one row per order, with both provider outcomes.
CREATE TABLE orders (
    id                     uuid        PRIMARY KEY,
    customer_email         text        NOT NULL,
    amount_cents           bigint      NOT NULL CHECK (amount_cents > 0),
    currency               text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    items                  jsonb       NOT NULL,
    status                 text        NOT NULL DEFAULT 'pending'
                                       CHECK (status IN ('pending', 'paid', 'payment_failed')),
    payment_status         text        CHECK (payment_status IN ('succeeded', 'declined', 'failed', 'timed_out')),
    payment_transaction_id text,
    payment_elapsed_ms     integer,
    email_status           text        CHECK (email_status IN ('sent', 'failed', 'timed_out')),
    email_elapsed_ms       integer,
    elapsed_ms             integer,
    created_at             timestamptz NOT NULL DEFAULT now(),
    completed_at           timestamptz
);

-- Idempotency-Key: the request's hash and, once done, the response to replay.
CREATE TABLE idempotency_keys (
    key             text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea       NOT NULL,
    response_status smallint,
    response_body   jsonb,
    locked_at       timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- GET /users/{id}: the async database lesson.
CREATE TABLE users (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    email      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
