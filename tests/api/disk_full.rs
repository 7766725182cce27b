//! A full disk: storage on a small tmpfs.

use std::path::{Path, PathBuf};

use intake::base::configuration::StorageKind;

use crate::helpers::{assert_problem, may_skip, random_bytes, spawn_app_with};

/// A tmpfs mounted for one test and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(Self { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for SmallDisk {
    /// Lazily: the test's server still runs (until the test's runtime ends) and holds its
    /// journal lock there; the kernel frees the tmpfs once the last file on it is closed.
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .status();
        if !unmounted.is_ok_and(|status| status.success()) {
            eprintln!("could not unmount {}", self.dir.path().display());
        }
    }
}

fn used_bytes(path: &Path) -> u64 {
    let output = std::process::Command::new("df")
        .args(["--output=used", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_is_507_removes_the_partial_file_and_recovers() {
    let disk = match SmallDisk::mount("8m") {
        Ok(disk) => disk,
        // CI runs as root and must run this test: only a developer's machine may skip it.
        Err(reason) => {
            may_skip(&format!("cannot mount a tmpfs here (needs root): {reason}"));
            return;
        }
    };
    let root = disk.path();
    let app = spawn_app_with(|s| {
        s.storage.kind = StorageKind::Fs;
        s.storage.root = root.clone();
    })
    .await;
    let before = used_bytes(&root);

    let response = app
        .upload_file("big.bin", random_bytes(16 * 1024 * 1024, 21), None)
        .await;

    assert_problem(response, 507, "storage_full").await;
    app.uploads_settled().await;
    assert!(
        used_bytes(&root) <= before + 64 * 1024,
        "the partial file's space is freed"
    );
    assert!(
        crate::helpers::assert_consistent(&app.pool, &root)
            .await
            .is_empty()
    );
    let small = app.upload_file("small.txt", b"fits".to_vec(), None).await;
    assert_eq!(small.status(), 201, "the next upload that fits succeeds");
}
