-- tus concatenation: a partial upload is a piece of a file that a final upload puts together
-- with others. Whole, it stays an upload (it never becomes a file of its own) until a final
-- upload takes it, or it expires.
ALTER TABLE resumable_uploads ADD COLUMN partial boolean NOT NULL DEFAULT false;
