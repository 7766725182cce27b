-- Events: what happened to files, written in the transaction that made it happen (an outbox),
-- then delivered in the background to each configured sink (webhooks, NATS JetStream) by
-- whichever instance claims the delivery first.

-- A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so that ids sort
-- by time. Postgres 18 has uuidv7(); this works on older servers too.
CREATE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

CREATE TABLE events (
    -- The consumer's deduplication key (`webhook-id`, `Nats-Msg-Id`).
    id          uuid        PRIMARY KEY DEFAULT uuid_v7(),
    -- Commit order within a transaction and across them, for per-file order.
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    type        text        NOT NULL
                            CHECK (type IN ('file.stored', 'file.deleted', 'upload.expired')),
    -- The file (or unfinished upload) it is about.
    subject     uuid        NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- The event's `data`.
    payload     jsonb       NOT NULL
);

CREATE INDEX events_occurred_at_idx ON events (occurred_at);

-- The sinks instances are configured with (each upserts its own at start, and says it still
-- has it every 15 seconds), and whether one was disabled: an endpoint that answered 410 Gone
-- is disabled for every instance. A sink no instance has had for an hour gets no new events,
-- and with no live sink at all no event is written.
CREATE TABLE event_sinks (
    name             text        PRIMARY KEY,
    -- The event types it takes; empty: all.
    types            text[]      NOT NULL DEFAULT '{}',
    seen_at          timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz,
    disabled_because text
);

-- The sinks that get new events: queued, or (while disabled) kept as failed for
-- `intake events retry`.
CREATE VIEW live_event_sinks AS
    SELECT name, types, disabled_because FROM event_sinks
    WHERE seen_at > now() - interval '1 hour';

-- One row per event and sink: whether it has arrived there. No foreign keys: checking them
-- cost a quarter of an event's writes in every commit that stores files; the rows are written
-- only by the trigger below (from the events and sinks as they are), and pruned with their
-- event.
CREATE TABLE event_deliveries (
    event_id        uuid        NOT NULL,
    sink            text        NOT NULL,
    -- The event's, so that claims need not join events to keep per-file order.
    seq             bigint      NOT NULL,
    subject         uuid        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Attempts made (or under way); a claim counts one, and its count is its token.
    attempts        integer     NOT NULL DEFAULT 0,
    -- A pending delivery is due then; one being attempted is due again when its lease is over.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    PRIMARY KEY (event_id, sink)
);

CREATE INDEX event_deliveries_due_idx ON event_deliveries (sink, next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX event_deliveries_undelivered_idx ON event_deliveries (sink, subject, seq)
    WHERE state <> 'delivered';

-- Every new event is queued for each live sink that takes its type. It is failed at once for a
-- disabled sink, so that nothing is lost while an endpoint is gone, and behind a failed event
-- of the same file, which it may not overtake: `intake events retry` sends them again.
CREATE FUNCTION queue_event_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_deliveries (event_id, sink, seq, subject, state, last_error)
    SELECT e.id, s.name, e.seq, e.subject,
           CASE WHEN held.why IS NULL THEN 'pending' ELSE 'failed' END, held.why
    FROM new_events e
    JOIN live_event_sinks s ON cardinality(s.types) = 0 OR e.type = ANY (s.types)
    CROSS JOIN LATERAL (
        SELECT COALESCE(s.disabled_because,
                        CASE WHEN EXISTS (
                            SELECT FROM event_deliveries f
                            WHERE f.sink = s.name AND f.subject = e.subject AND f.state = 'failed')
                        THEN 'an earlier event of the same file failed' END) AS why
    ) held;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_queue_deliveries AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION queue_event_deliveries();

-- What the upload hook attached to a file (its 2xx answer's `metadata`), shown in the file
-- object; kept on an unfinished resumable upload until its file is made.
ALTER TABLE files ADD COLUMN metadata jsonb;
ALTER TABLE resumable_uploads ADD COLUMN file_metadata jsonb;

-- A time as the API writes it (RFC 3339 in UTC, as the `time` crate does): the fraction of a
-- second without its trailing zeros, none when it is zero, so that an event's times equal the
-- file object's as strings.
CREATE FUNCTION rfc3339(at timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT rtrim(rtrim(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z'
$$;

-- A file as events show it: the file object of the API, without its URL.
CREATE FUNCTION file_json(f files) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', f.id,
        'owner', f.owner_id,
        'filename', f.filename,
        'content_type', f.content_type,
        'size', f.size,
        'sha256', encode(f.sha256, 'hex'),
        'created_at', rfc3339(f.created_at),
        'expires_at', rfc3339(f.expires_at),
        'upload_link', f.upload_link_id,
        'metadata', f.metadata)
$$;

-- Whatever deletes a file's row (DELETE /files/{id}, the lifetime sweep) announces it in the
-- same transaction.
CREATE FUNCTION announce_file_deletions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, subject, payload)
    SELECT 'file.deleted', f.id,
           jsonb_build_object(
               'file', file_json(f),
               'reason', CASE WHEN f.expires_at <= now() THEN 'expired' ELSE 'deleted' END)
    FROM old_files f
    WHERE EXISTS (SELECT FROM live_event_sinks)
    ORDER BY f.created_at, f.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER files_announce_deletions AFTER DELETE ON files
    REFERENCING OLD TABLE AS old_files
    FOR EACH STATEMENT EXECUTE FUNCTION announce_file_deletions();
