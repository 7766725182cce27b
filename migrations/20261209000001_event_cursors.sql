-- Events are delivered by reading them in order past each sink's place in the outbox (its
-- cursor), instead of through a delivery row per event and sink written by every commit that
-- stores a file: that row, and its updates as it was claimed and settled, cost half of the
-- uploads per second of small files with a webhook configured. A delivery row is now written
-- only for an event that needs one: an attempt failed (it is retried on its own schedule), or
-- an earlier event of the same file is still waiting in the rows (it may not be overtaken).

-- The transaction that wrote the event. Events are read in (xid, seq) order, and only those
-- whose transaction is older than every transaction still running (the snapshot's xmin): none
-- of them can still appear, so a cursor that passes an event never misses one. A file's events
-- keep their order: the transaction that deletes a file gets its xid at its first write, and
-- every one here deletes the file first (src/api/files, src/catalog/lifetimes), after the
-- transaction that stored the file had committed, so with a larger xid.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_xid_seq_idx ON events (xid, seq);

-- Each sink's place: the last event read for it, and the instance reading (one at a time, for
-- as long as its lease lasts; another takes over when it is over). A new sink starts at the
-- newest events; a sink that is disabled keeps its place, and goes on from it when enabled.
ALTER TABLE event_sinks
    ADD COLUMN cursor_xid xid8        NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot()),
    ADD COLUMN cursor_seq bigint      NOT NULL DEFAULT 0,
    ADD COLUMN holder     uuid,
    ADD COLUMN held_until timestamptz;

-- The sinks there are already have delivery rows for every event written so far.
UPDATE event_sinks
SET cursor_xid = pg_current_xact_id(), cursor_seq = COALESCE((SELECT max(seq) FROM events), 0);

DROP TRIGGER events_queue_deliveries ON events;
DROP FUNCTION queue_event_deliveries();
