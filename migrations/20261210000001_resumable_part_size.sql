-- The size a resumable upload's parts are cut at on S3, chosen when its first bytes arrive (one
-- that divides the client's chunks, so that a PATCH leaves no tail to record) and kept for the
-- whole upload, since a bucket such as R2 wants every part but the last of one size. NULL: the
-- store's configured part size (uploads begun before this column, and those on disk).
ALTER TABLE resumable_uploads ADD COLUMN part_size bigint CHECK (part_size > 0);
