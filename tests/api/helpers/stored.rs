//! What was stored, read past the server: rows, objects on disk or in the bucket, journal
//! entries, and the consistency of rows and objects.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use futures_util::TryStreamExt;
use intake::base::configuration::S3Settings;
use object_store::{ObjectStore, ObjectStoreExt, path::Path as Key};
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use super::TestApp;

impl TestApp {
    pub async fn row_ids(&self) -> BTreeSet<Uuid> {
        row_ids(&self.pool).await
    }

    /// The objects stored, on either backend.
    pub async fn object_ids(&self) -> BTreeSet<Uuid> {
        match &self.bucket {
            Some(bucket) => bucket.object_ids().await,
            None => object_ids(self.storage.path()),
        }
    }

    /// Takes an object away behind the server's back.
    pub async fn remove_object(&self, id: Uuid) {
        match &self.bucket {
            Some(bucket) => bucket
                .client
                .delete(&bucket.key(id))
                .await
                .expect("deleted"),
            None => std::fs::remove_file(object_path(self.storage.path(), id)).expect("removed"),
        }
    }

    /// Object changes still under way: journal files on disk, intents in Postgres for a bucket.
    pub async fn leftovers(&self) -> Vec<String> {
        match &self.bucket {
            Some(_) => sqlx::query_scalar::<_, Uuid>("SELECT object_id FROM storage_intents")
                .fetch_all(&self.pool)
                .await
                .expect("intents")
                .iter()
                .map(Uuid::to_string)
                .collect(),
            None => journal_files(self.storage.path())
                .iter()
                .map(|path| path.display().to_string())
                .collect(),
        }
    }

    /// The promise: every row has its object (or, inline, its bytes in Postgres), every object its
    /// row, nothing half-done remains
    /// once the server has finished with every upload (a committed upload's journal entry is
    /// removed after its answer).
    pub async fn assert_consistent(&self) -> BTreeSet<Uuid> {
        self.uploads_settled().await;
        assert_eq!(
            stored_ids(&self.pool).await,
            self.object_ids().await,
            "rows and objects differ"
        );
        assert_inline_intact(&self.pool).await;
        assert_eq!(self.leftovers().await, Vec::<String>::new(), "leftovers");
        let stray = match &self.bucket {
            Some(bucket) => bucket.stray_keys().await,
            None => stray_files(&self.pool, self.storage.path()).await,
        };
        assert_eq!(stray, Vec::<String>::new(), "stored outside its place");
        self.row_ids().await
    }
}

pub async fn row_ids(pool: &PgPool) -> BTreeSet<Uuid> {
    ids(pool, "SELECT id FROM files").await
}

/// The rows whose bytes are in the storage backend (not inline in Postgres).
pub async fn stored_ids(pool: &PgPool) -> BTreeSet<Uuid> {
    ids(pool, "SELECT id FROM files WHERE NOT inline").await
}

async fn ids(pool: &PgPool, query: &'static str) -> BTreeSet<Uuid> {
    sqlx::query_scalar::<_, Uuid>(query)
        .fetch_all(pool)
        .await
        .expect("rows")
        .into_iter()
        .collect()
}

/// Every inline row has its bytes, of its size, and no bytes are kept for any other.
pub async fn assert_inline_intact(pool: &PgPool) {
    let broken = ids(
        pool,
        "SELECT coalesce(f.id, c.file_id) FROM files f
         FULL JOIN file_contents c ON c.file_id = f.id
         WHERE f.inline IS DISTINCT FROM true OR c.file_id IS NULL
            OR length(c.bytes) <> f.size",
    )
    .await;
    let broken: BTreeSet<Uuid> = broken
        .difference(&stored_ids(pool).await)
        .copied()
        .collect();
    assert_eq!(
        broken,
        BTreeSet::new(),
        "inline rows without their bytes, or bytes without a row"
    );
}

/// Where the server keeps object `id` under `root` (see `storage`).
pub fn object_path(root: &Path, id: Uuid) -> PathBuf {
    let hex = id.simple().to_string();
    root.join("objects")
        .join(&hex[28..30])
        .join(&hex[30..32])
        .join(id.to_string())
}

pub fn object_ids(root: &Path) -> BTreeSet<Uuid> {
    files_under(&root.join("objects"))
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            Uuid::parse_str(name).expect("objects are named by id")
        })
        .collect()
}

/// Files in the journal (uploads in progress or abandoned); lock files excluded.
pub fn journal_files(root: &Path) -> Vec<PathBuf> {
    files_under(&root.join("tmp"))
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "lock"))
        .collect()
}

pub async fn assert_consistent(pool: &PgPool, root: &Path) -> BTreeSet<Uuid> {
    assert_eq!(
        stored_ids(pool).await,
        object_ids(root),
        "rows and objects differ"
    );
    assert_inline_intact(pool).await;
    let rows = row_ids(pool).await;
    assert_eq!(
        journal_files(root),
        Vec::<PathBuf>::new(),
        "journal leftovers"
    );
    assert_eq!(
        stray_files(pool, root).await,
        Vec::<String>::new(),
        "stored outside its place"
    );
    rows
}

/// Every file under the whole storage root that is not where the layout (see `storage::fs`)
/// allows it: an object at its id's place, an instance's lock, the journal (see
/// `journal_files`), a resumable upload whose row exists. Whatever a bug writes anywhere else
/// is found, under `objects/` or not.
pub async fn stray_files(pool: &PgPool, root: &Path) -> Vec<String> {
    let resumable = ids(pool, "SELECT id FROM resumable_uploads").await;
    let journal = journal_files(root);
    files_under(root)
        .into_iter()
        .filter(|path| {
            let id = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| Uuid::parse_str(name).ok());
            let in_tmp = path.parent() == Some(&root.join("tmp"));
            let allowed = match id {
                Some(id) => {
                    *path == object_path(root, id)
                        || (*path == root.join("uploads").join(id.to_string())
                            && resumable.contains(&id))
                }
                None => in_tmp && path.extension().is_some_and(|e| e == "lock"),
            };
            !allowed && !journal.contains(path)
        })
        .map(|path| path.display().to_string())
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// `INTAKE_TEST_S3=http://KEY:SECRET@HOST:PORT/BUCKET`: the suite stores in that bucket instead
/// of on disk (`.ci/run` runs the suite both ways, against s3s-fs).
pub fn test_bucket_url() -> Option<reqwest::Url> {
    let url = std::env::var("INTAKE_TEST_S3").ok()?;
    Some(reqwest::Url::parse(&url).expect("INTAKE_TEST_S3 is a URL"))
}

/// Points `s3` at the bucket of `url`, under a prefix of its own, so that tests sharing the
/// bucket never see each other's objects.
pub fn use_bucket(s3: &mut S3Settings, url: &reqwest::Url) {
    s3.bucket = url.path().trim_matches('/').to_owned();
    s3.endpoint = format!(
        "http://{}",
        url.host_str()
            .zip(url.port())
            .map(|(h, p)| format!("{h}:{p}"))
            .expect("host and port")
    );
    s3.access_key_id = url.username().to_owned();
    s3.secret_access_key = SecretString::from(url.password().unwrap_or_default().to_owned());
    s3.path_style = true;
    // The smallest S3 allows, so that the suite's larger files go as several parts.
    s3.part_size_bytes = 5 * 1024 * 1024;
    s3.prefix = format!("test-{}/", Uuid::now_v7().simple());
}

/// A test's view of its part of the bucket, through the S3 API.
pub struct TestBucket {
    client: object_store::aws::AmazonS3,
    pub prefix: String,
}

impl TestBucket {
    pub fn new(s3: &S3Settings) -> Self {
        Self {
            client: intake::storage::s3::client(s3).expect("an S3 client for the test bucket"),
            prefix: s3.prefix.clone(),
        }
    }

    /// Where the server keeps object `id`.
    pub fn key(&self, id: Uuid) -> Key {
        intake::storage::s3::object_key(&self.prefix, id)
    }

    /// The objects at their id's key.
    pub async fn object_ids(&self) -> BTreeSet<Uuid> {
        self.keys()
            .await
            .iter()
            .filter_map(|key| self.object_id(key))
            .collect()
    }

    /// Every key under the whole prefix that is not an object at its id's key: a readiness
    /// probe's object left behind, or whatever a bug put anywhere else.
    pub async fn stray_keys(&self) -> Vec<String> {
        self.keys()
            .await
            .into_iter()
            .filter(|key| self.object_id(key).is_none())
            .map(|key| key.to_string())
            .collect()
    }

    fn object_id(&self, key: &Key) -> Option<Uuid> {
        let id = Uuid::parse_str(key.filename()?).ok()?;
        (*key == self.key(id)).then_some(id)
    }

    async fn keys(&self) -> Vec<Key> {
        let prefix = Key::from(self.prefix.trim_end_matches('/'));
        self.client
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .expect("the bucket lists")
    }
}
