//! SQLite-specific properties: durability across reopen, refusing foreign or damaged
//! files, and online backup/restore while writers keep going.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::{
    Backend, BackendError, Key, KeyRange, NewItem, SqliteBackend, SqliteOptions, backup_sqlite,
    restore_sqlite,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_revisions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let before = {
        let backend = SqliteBackend::open(SqliteOptions::new(&path))
            .await
            .unwrap();
        backend
            .put(NewItem::new(key("/users/alice"), "pw-v2"))
            .await
            .unwrap()
    };
    let backend = SqliteBackend::open(SqliteOptions::new(&path))
        .await
        .unwrap();
    assert_eq!(
        backend.get(&key("/users/alice")).await.unwrap().value,
        b"pw-v2"
    );
    let after = backend
        .put(NewItem::new(key("/users/bob"), "x"))
        .await
        .unwrap();
    assert!(
        after > before,
        "revision went backwards after reopen: {before} then {after}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the state database holds CA keys");
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(
        &path,
        b"this is a text file, not SQLite, padded to look big enough....",
    )
    .unwrap();
    let err = SqliteBackend::open(SqliteOptions::new(&path))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("state.db"), "{err}");
    // Nothing was overwritten.
    assert!(
        std::fs::read(&path)
            .unwrap()
            .starts_with(b"this is a text file")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_is_consistent_while_writes_continue_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let backend = SqliteBackend::open(SqliteOptions::new(&path))
        .await
        .unwrap();
    for i in 0..200 {
        backend
            .put(NewItem::new(key(&format!("/base/{i:03}")), "v"))
            .await
            .unwrap();
    }
    // A writer keeps committing pairs atomically during the backups: a consistent
    // snapshot holds either both keys of a pair or neither.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let backend = backend.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                backend
                    .atomic_write(
                        vec![],
                        vec![
                            jumpgate_backend::Action::Put(NewItem::new(
                                key(&format!("/pair/{i:05}/a")),
                                "a",
                            )),
                            jumpgate_backend::Action::Put(NewItem::new(
                                key(&format!("/pair/{i:05}/b")),
                                "b",
                            )),
                        ],
                    )
                    .await
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let backup_path = dir.path().join("snapshot.db");
    let source = path.clone();
    let dest = backup_path.clone();
    // A separate connection, as `jumpgate backup create` uses from another process.
    tokio::task::spawn_blocking(move || backup_sqlite(&source, &dest))
        .await
        .unwrap()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let pairs_written = writer.await.unwrap();
    assert!(pairs_written > 0);
    backend
        .put(NewItem::new(key("/after-backup"), "x"))
        .await
        .unwrap();
    backend.close().await.unwrap();

    // Restore into the live path: the snapshot comes back, the old state is kept aside.
    let saved = restore_sqlite(&backup_path, &path)
        .unwrap()
        .expect("old state saved");
    assert!(saved.exists());
    let restored = SqliteBackend::open(SqliteOptions::new(&path))
        .await
        .unwrap();
    let base = restored
        .get_range(&KeyRange::prefix("/base/").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(base.len(), 200);
    let pairs = restored
        .get_range(&KeyRange::prefix("/pair/").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(pairs.len() % 2, 0, "snapshot split an atomic write");
    for pair in pairs.chunks(2) {
        let a = pair[0].key.as_str();
        let b = pair[1].key.as_str();
        assert_eq!(
            a.trim_end_matches("/a"),
            b.trim_end_matches("/b"),
            "torn pair {a} {b}"
        );
    }
    assert!(
        restored
            .get(&key("/after-backup"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    // Revisions keep moving forward past what the replaced database had handed out.
    let old = SqliteBackend::open(SqliteOptions::new(&saved))
        .await
        .unwrap();
    let old_last = old.get(&key("/after-backup")).await.unwrap().revision;
    let next = restored.put(NewItem::new(key("/x"), "x")).await.unwrap();
    assert!(next > old_last, "{next} <= {old_last}");
}

#[test]
fn restoring_a_foreign_or_damaged_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("state.db");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let err = restore_sqlite(&junk, &target).unwrap_err();
    assert!(err.to_string().contains("junk.db"), "{err}");
    assert!(!target.exists(), "a failed restore created the target");

    // A valid SQLite file that is not a Jumpgate database.
    let other = dir.path().join("other.db");
    rusqlite_free_other_db(&other);
    let err = restore_sqlite(&other, &target).unwrap_err();
    assert!(
        err.to_string().contains("not a Jumpgate state database"),
        "{err}"
    );
}

/// Builds an unrelated SQLite database through a backend file, then strips our tables.
fn rusqlite_free_other_db(path: &std::path::Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        SqliteBackend::open(SqliteOptions::new(path)).await.unwrap();
    });
    drop(runtime);
    let backup = path.with_extension("tmp");
    backup_sqlite(path, &backup).unwrap();
    // Overwrite the meta table's marker: copy over a database with a renamed table.
    let text = std::fs::read(&backup).unwrap();
    let renamed: Vec<u8> = replace_all(&text, b"schema_version", b"something_else");
    std::fs::write(path, renamed).unwrap();
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_never_overwrite_a_saved_state_even_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("sqlite.db");
    let snapshot = dir.path().join("snapshot.db");
    {
        let backend = SqliteBackend::open(SqliteOptions::new(&live))
            .await
            .unwrap();
        backend
            .put(NewItem::new(key("/v"), "snapshot"))
            .await
            .unwrap();
        backend.close().await.unwrap();
    }
    backup_sqlite(&live, &snapshot).unwrap();
    {
        let backend = SqliteBackend::open(SqliteOptions::new(&live))
            .await
            .unwrap();
        backend
            .put(NewItem::new(key("/v"), "original"))
            .await
            .unwrap();
        backend.close().await.unwrap();
        // Every handle is closed now: a late call fails instead of touching the files.
        let err = backend.get(&key("/v")).await.unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
    }
    // Two restores in the same second: each keeps its own copy of what it replaced.
    let first = restore_sqlite(&snapshot, &live).unwrap().unwrap();
    let second = restore_sqlite(&snapshot, &live).unwrap().unwrap();
    assert_ne!(
        first, second,
        "the second restore reused the first one's safety copy"
    );
    let original = SqliteBackend::open(SqliteOptions::new(&first))
        .await
        .unwrap();
    assert_eq!(original.get(&key("/v")).await.unwrap().value, b"original");
    original.close().await.unwrap();

    // A damaged live file can be restored over; its bytes are kept as they were.
    std::fs::write(&live, b"damaged beyond repair, not a database at all.....").unwrap();
    let _ = std::fs::remove_file(dir.path().join("sqlite.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("sqlite.db-shm"));
    let kept = restore_sqlite(&snapshot, &live).unwrap().unwrap();
    assert!(
        std::fs::read(&kept)
            .unwrap()
            .starts_with(b"damaged beyond repair")
    );
    let restored = SqliteBackend::open(SqliteOptions::new(&live))
        .await
        .unwrap();
    assert_eq!(restored.get(&key("/v")).await.unwrap().value, b"snapshot");
}

#[tokio::test]
async fn a_backup_onto_the_live_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("sqlite.db");
    let backend = SqliteBackend::open(SqliteOptions::new(&live))
        .await
        .unwrap();
    backend.put(NewItem::new(key("/v"), "x")).await.unwrap();
    let err = backup_sqlite(&live, &live).unwrap_err();
    assert!(err.to_string().contains("live database"), "{err}");
    assert_eq!(backend.get(&key("/v")).await.unwrap().value, b"x");
    // No staging files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
