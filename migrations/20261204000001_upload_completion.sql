-- Whether an upload is whole once its bytes reach its length. A tus upload always is. An upload
-- of the IETF resumable-upload draft is whole when the client says so (`Upload-Complete: ?1`):
-- until a request saying so has brought its last byte, a length declared up front is a bound.
ALTER TABLE resumable_uploads ADD COLUMN ends_at_length boolean NOT NULL DEFAULT true;
