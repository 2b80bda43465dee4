//! The recording-store suite against a real PostgreSQL server (Debian's `postgresql`, one
//! fresh private cluster per check, every instance its own connections as a second auth
//! server's), plus what only a shared database shows: two auth servers appending at once, a
//! refused password, a server restart, a part refused before it reaches the database, and
//! the cost of one append.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jumpgate_audit::BoxFuture;
use jumpgate_audit::recording::conformance::{self, Opener, sample};
use jumpgate_audit::recording::{
    MAX_PART_LEN, PostgresRecordingStore, RecordingError, RecordingStore, SessionId,
};
use jumpgate_test_support::Postgres;

fn uri(server: &Postgres) -> String {
    // The password in the URI, as an operator may write it (it is never printed).
    server
        .conn_string()
        .replacen("@", &format!(":{}@", server.password()), 1)
}

struct Database(Postgres);

impl Opener for Database {
    fn open(&self, max_len: u64) -> BoxFuture<'_, Arc<dyn RecordingStore>> {
        Box::pin(async move {
            let store = PostgresRecordingStore::open(&uri(&self.0))
                .await
                .unwrap()
                .with_max_len(max_len);
            Arc::new(store) as Arc<dyn RecordingStore>
        })
    }
}

async fn database() -> Database {
    Database(Postgres::start().await)
}

jumpgate_audit::recording_store_suite!(database());

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_servers_append_to_one_recording_at_once() {
    conformance::two_instances_append_concurrently(&database().await).await;
}

/// Different bytes at one offset from two auth servers at the same instant: the row lock
/// decides, so exactly one is stored and the other is a conflict (the S3 store cannot
/// promise this; PostgreSQL can).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_different_parts_racing_at_one_offset_store_exactly_one() {
    let db = database().await;
    let (a, b) = (db.open(1 << 20).await, db.open(1 << 20).await);
    let sid = id("race");
    for round in 0..20u64 {
        let offset = round * 8;
        let (ra, rb) = tokio::join!(
            a.append_part(&sid, offset, format!("a{round:06}\n").into_bytes()),
            b.append_part(&sid, offset, format!("b{round:06}\n").into_bytes()),
        );
        let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {ra:?} {rb:?}");
        for r in [ra, rb] {
            if let Err(err) = r {
                assert!(matches!(err, RecordingError::Conflict { .. }), "{err}");
            }
        }
    }
    let stored = a.read(&sid).await.unwrap();
    assert_eq!(stored.len(), 160);
    for line in stored.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.starts_with(b"a") || line.starts_with(b"b"));
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_it() {
    let server = Postgres::start().await;
    let wrong = server.conn_string().replacen("@", ":not-the-password@", 1);
    let err = PostgresRecordingStore::open(&wrong).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RecordingError::StoreConfig { .. }), "{text}");
    assert!(text.contains("refused the login"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(!format!("{err:?}").contains("not-the-password"));
    // The password given apart (as from a file) replaces the one in the URI.
    PostgresRecordingStore::open_with(&wrong, Some(server.password()), Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_uris_are_refused_naming_the_problem() {
    for (uri, expected) in [
        ("postgresql://db/j?sslmode=prefer", "falls back"),
        (
            "postgresql://u@h:notaport/d",
            "not a PostgreSQL connection string",
        ),
    ] {
        let err = PostgresRecordingStore::open(uri).await.unwrap_err();
        assert!(matches!(err, RecordingError::StoreConfig { .. }), "{err:?}");
        assert!(err.to_string().contains(expected), "{uri}: {err}");
    }
}

/// Nothing the database need look at: a part over the limit is refused before any request
/// (the database is down here), and an invalid session id cannot even be named.
#[tokio::test]
async fn oversized_parts_are_refused_before_the_database() {
    let mut server = Postgres::start().await;
    let store = PostgresRecordingStore::open_with(&uri(&server), None, Duration::from_secs(2))
        .await
        .unwrap();
    server.stop().await;
    let err = store
        .append_part(&id("big"), 0, vec![b'x'; MAX_PART_LEN + 1])
        .await
        .unwrap_err();
    assert!(matches!(err, RecordingError::PartTooLarge { .. }), "{err}");
    assert!(SessionId::new("x'; DROP TABLE jumpgate_recordings; --").is_err());
}

/// The server restarts under a running auth server: appends fail clearly while it is down
/// (naming the server, never the password), and the upload resumes afterwards with
/// nothing lost that was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_and_loses_nothing() {
    let mut server = Postgres::start().await;
    let store = PostgresRecordingStore::open_with(&uri(&server), None, Duration::from_secs(2))
        .await
        .unwrap();
    let bytes = sample();
    store
        .append_part(&id("s"), 0, bytes[..100].to_vec())
        .await
        .unwrap();
    server.stop().await;
    let started = Instant::now();
    let err = store
        .append_part(&id("s"), 100, bytes[100..].to_vec())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(
        matches!(err, RecordingError::StoreUnavailable { .. }),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    assert!(!text.contains(server.password()), "{text}");

    server.start_again().await;
    assert_eq!(
        store
            .append_part(&id("s"), 100, bytes[100..].to_vec())
            .await
            .unwrap(),
        bytes.len() as u64
    );
    store.complete(&id("s")).await.unwrap();
    assert_eq!(store.read(&id("s")).await.unwrap(), bytes);
}

/// What a part costs: appends of 64 KiB parts (what a node sends for a busy session) and
/// of full 1 MiB parts, one after another on one recording, printed for the docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_latency() {
    let server = Postgres::start_durable().await;
    let store = PostgresRecordingStore::open(&uri(&server)).await.unwrap();
    for (name, part, count) in [("small", 64 * 1024, 64), ("full", MAX_PART_LEN, 16)] {
        let sid = id(name);
        let data: Vec<u8> = (0..part).map(|i| b'a' + (i % 26) as u8).collect();
        let mut took = Vec::with_capacity(count);
        let mut offset = 0;
        for _ in 0..count {
            let started = Instant::now();
            offset = store.append_part(&sid, offset, data.clone()).await.unwrap();
            took.push(started.elapsed());
        }
        took.sort();
        let median = took[count / 2];
        let p90 = took[count * 9 / 10];
        let started = Instant::now();
        let read = store.read(&sid).await.unwrap();
        let read_took = started.elapsed();
        assert_eq!(read.len() as u64, offset);
        println!(
            "{count} appends of {part} bytes: median {median:?}, p90 {p90:?}; \
             reading {offset} bytes back: {read_took:?}"
        );
    }
}
