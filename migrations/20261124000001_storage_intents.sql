-- Object changes under way in a bucket, so that nothing is left behind whatever fails: an
-- upload records its intent before its first byte reaches the bucket, a delete in the
-- transaction that deletes the row. An intent without a row is settled by removing the object
-- (and aborting its multipart upload); committing an upload's rows deletes its intents in the
-- same statement (`claim_intents`).
CREATE TABLE storage_intents (
    object_id uuid PRIMARY KEY,
    -- The instance doing the change: its intents are settled by others once it is gone.
    instance uuid NOT NULL,
    -- The multipart upload to abort, once one was started.
    upload_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX storage_intents_instance ON storage_intents (instance);

-- Deletes the intents of `ids`, and fails the statement that called it unless every one was
-- still there: a sweep that settled one (believing its instance gone) has removed its object,
-- and a row must then not be written.
CREATE FUNCTION claim_intents(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    claimed integer;
BEGIN
    DELETE FROM storage_intents WHERE object_id = ANY(ids);
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF claimed <> coalesce(cardinality(ids), 0) THEN
        RAISE EXCEPTION 'an object of this upload was settled by a storage sweep'
            USING ERRCODE = 'P0001';
    END IF;
    RETURN claimed;
END
$$;
