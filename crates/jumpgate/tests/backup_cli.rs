//! `jumpgate backup create|restore` against a running daemon whose state keeps changing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;
use jumpgate_backend::{Action, Backend, Key, KeyRange, NewItem, SqliteBackend, SqliteOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::{run, start_daemon, text};

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_running_then_restore_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    let mut daemon = start_daemon(&["--dev", "--data-dir", &data_arg], &dir.path().join("log"));
    let db = data.join("backend").join("sqlite.db");
    assert!(support::wait_until(
        std::time::Duration::from_secs(10),
        || db.exists()
    ));

    // Another writer on the live database (SQLite WAL allows it) commits pairs of keys
    // atomically while the CLI takes the backup.
    let writer_db = SqliteBackend::open(SqliteOptions::new(&db)).await.unwrap();
    writer_db
        .put(NewItem::new(key("/users/alice"), "password-v1"))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let backend = writer_db.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                backend
                    .atomic_write(
                        vec![],
                        vec![
                            Action::Put(NewItem::new(key(&format!("/pairs/{i:06}/a")), "a")),
                            Action::Put(NewItem::new(key(&format!("/pairs/{i:06}/b")), "b")),
                        ],
                    )
                    .await
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let snapshot = dir.path().join("snapshot.db");
    let snapshot_arg = snapshot.to_str().unwrap().to_string();
    let created = tokio::task::spawn_blocking({
        let (snapshot_arg, data_arg) = (snapshot_arg.clone(), data_arg.clone());
        move || {
            run(
                &["backup", "create", &snapshot_arg, "--data-dir", &data_arg],
                None,
            )
        }
    })
    .await
    .unwrap();
    assert!(created.status.success(), "{}", text(&created.stderr));
    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A change after the backup: the restore must take it back.
    writer_db
        .put(NewItem::new(key("/users/alice"), "password-v2"))
        .await
        .unwrap();
    writer_db.close().await.unwrap();

    // Restore is refused while the daemon runs...
    let refused = run(
        &["backup", "restore", &snapshot_arg, "--data-dir", &data_arg],
        None,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("daemon to be stopped"),
        "{}",
        text(&refused.stderr)
    );
    assert!(daemon.terminate());

    // ...and works once it stopped, keeping the replaced state aside.
    let restored = run(
        &["backup", "restore", &snapshot_arg, "--data-dir", &data_arg],
        None,
    );
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    assert!(
        text(&restored.stdout).contains("previous state was kept"),
        "{}",
        text(&restored.stdout)
    );

    let backend = SqliteBackend::open(SqliteOptions::new(&db)).await.unwrap();
    assert_eq!(
        backend.get(&key("/users/alice")).await.unwrap().value,
        b"password-v1"
    );
    let pairs = backend
        .get_range(&KeyRange::prefix("/pairs/").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(pairs.len() % 2, 0, "the snapshot split an atomic write");
    for pair in pairs.chunks(2) {
        assert_eq!(
            pair[0].key.as_str().trim_end_matches("/a"),
            pair[1].key.as_str().trim_end_matches("/b")
        );
    }
}

#[test]
fn restoring_garbage_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "definitely not sqlite").unwrap();
    let out = run(
        &[
            "backup",
            "restore",
            junk.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("junk.db"),
        "{}",
        text(&out.stderr)
    );
    assert!(!data.join("backend").join("sqlite.db").exists());
}

#[test]
fn backup_of_a_missing_data_dir_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "backup",
            "create",
            dir.path().join("x.db").to_str().unwrap(),
            "--data-dir",
            dir.path().join("nothing-here").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--data-dir"),
        "{}",
        text(&out.stderr)
    );
}
