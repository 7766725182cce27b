-- Small files live in Postgres, written by the statement that writes their row: one commit
-- makes file and row durable together, and concurrent commits share Postgres' WAL flushes,
-- where each small file on disk cost a file, a link, two fsyncs and an unlink of its own.
ALTER TABLE files ADD COLUMN inline boolean NOT NULL DEFAULT false;

CREATE TABLE file_contents (
    file_id uuid  PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    bytes   bytea NOT NULL
);
-- Uploads are mostly compressed or random already: not worth trying to compress them again.
ALTER TABLE file_contents ALTER COLUMN bytes SET STORAGE EXTERNAL;
