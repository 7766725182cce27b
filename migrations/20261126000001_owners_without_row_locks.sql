-- Every upload's commit inserts a file row and a usage change naming its owner. As foreign keys,
-- each insert took a KEY SHARE lock on the owner's `users` row; concurrent uploads of one user
-- (every upload, with auth off) shared those locks through multixacts, which cost Postgres more
-- CPU than the inserts themselves and grew with every upload (the 1 KiB benchmark fell from
-- 1,990 to 1,230 uploads/s over six rounds; 2,060-2,190 without the keys). The commit now
-- checks that the owner exists in its own statement (files::record::insert_all), and deleting a
-- user locks out concurrent commits (auth::store::delete_user).
ALTER TABLE files DROP CONSTRAINT files_owner_id_fkey;
ALTER TABLE usage_changes DROP CONSTRAINT usage_changes_user_id_fkey;
