//! DynamoDB-specific behaviour and faults, with moto's server mode standing in for DynamoDB
//! (an emulator): an unreachable endpoint, refused credentials, an emulator that restarts
//! (and, being in memory, forgets everything) under a running backend and watcher, and two
//! auth servers sharing one table.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::conformance::next_event;
use jumpgate_backend::{
    Backend, BackendError, DynamoBackend, DynamoCredentials, DynamoOptions, Event, Key, NewItem,
    WatchError,
};
use jumpgate_test_support::{
    DynamoEmulator, EMULATOR_ACCESS_KEY_ID, EMULATOR_REGION, EMULATOR_SECRET_ACCESS_KEY, free_port,
};
use std::time::{Duration, Instant};

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

fn options(endpoint: String, table: &str) -> DynamoOptions {
    let mut options = DynamoOptions::new(EMULATOR_REGION, table);
    options.endpoint = Some(endpoint);
    options.credentials = Some(DynamoCredentials {
        access_key_id: EMULATOR_ACCESS_KEY_ID.to_string(),
        secret_access_key: EMULATOR_SECRET_ACCESS_KEY.to_string(),
    });
    options
}

#[tokio::test]
async fn an_endpoint_where_nothing_listens_fails_fast_naming_it() {
    let port = free_port();
    let mut options = options(format!("http://127.0.0.1:{port}"), "jumpgate-nowhere");
    options.request_timeout = Duration::from_secs(3);
    let started = Instant::now();
    let err = DynamoBackend::connect(options).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "{err}");
    let message = err.to_string();
    for part in [
        format!("127.0.0.1:{port}"),
        "jumpgate-nowhere".to_string(),
        EMULATOR_REGION.to_string(),
    ] {
        assert!(message.contains(&part), "{part} missing in {message}");
    }
    assert!(
        !message.contains(EMULATOR_SECRET_ACCESS_KEY),
        "secret in {message}"
    );
}

#[tokio::test]
async fn an_endpoint_that_is_not_a_url_is_refused() {
    let err = DynamoBackend::connect(options("localhost:8000".to_string(), "t1"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("storage.endpoint"), "{err}");
}

/// moto checks credentials against its own IAM when told to (`INITIAL_NO_AUTH_ACTION_COUNT=0`);
/// it knows no access key, so ours is refused as DynamoDB refuses an unknown key.
#[tokio::test]
async fn refused_credentials_name_the_access_key_id_never_the_secret() {
    let emulator = DynamoEmulator::start_checking_credentials().await;
    let started = Instant::now();
    let err = DynamoBackend::connect(options(emulator.endpoint(), "jumpgate-auth"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(!err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(message.contains(EMULATOR_ACCESS_KEY_ID), "{message}");
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(
        !message.contains(EMULATOR_SECRET_ACCESS_KEY),
        "secret in {message}"
    );
}

/// The table lives on: a second backend on it (another auth server, or this one after a
/// restart) continues the revisions and watches the first one's writes in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_servers_share_one_table_and_its_revisions() {
    let emulator = DynamoEmulator::start().await;
    let first = DynamoBackend::connect(options(emulator.endpoint(), "jumpgate-shared"))
        .await
        .unwrap();
    let before = first
        .put(NewItem::new(key("/users/alice"), "a"))
        .await
        .unwrap();
    let second = DynamoBackend::connect(options(emulator.endpoint(), "jumpgate-shared"))
        .await
        .unwrap();
    assert_eq!(
        second.get(&key("/users/alice")).await.unwrap().revision,
        before
    );
    let mut watcher = second.watch(vec![key("/users/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    let mut written = Vec::new();
    for i in 0..6 {
        let writer = if i % 2 == 0 { &first } else { &second };
        written.push(
            writer
                .put(NewItem::new(key(&format!("/users/u{i}")), "v"))
                .await
                .unwrap(),
        );
    }
    assert!(written[0] > before);
    assert!(written.windows(2).all(|w| w[0] < w[1]), "{written:?}");
    for (i, revision) in written.iter().enumerate() {
        match next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap()
        {
            Event::Put(item) => {
                assert_eq!(item.key, key(&format!("/users/u{i}")));
                assert_eq!(item.revision, *revision);
            }
            other => panic!("expected a put, got {other:?}"),
        }
    }
    drop(first);
    // A restarted auth server continues above every revision handed out.
    let third = DynamoBackend::connect(options(emulator.endpoint(), "jumpgate-shared"))
        .await
        .unwrap();
    let after = third
        .put(NewItem::new(key("/users/bob"), "b"))
        .await
        .unwrap();
    assert!(after > *written.last().unwrap());
}

/// moto keeps everything in memory, so a restarted emulator is an empty DynamoDB: the table
/// is gone. While it is down, requests fail as `Unavailable` naming the endpoint, within the
/// request timeout, and the watcher waits; once it is back without the table, requests and
/// the watcher end with an error saying the table is gone. Nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulator_restart_is_unavailable_while_down_then_names_the_lost_table() {
    let mut emulator = DynamoEmulator::start().await;
    let mut options = options(emulator.endpoint(), "jumpgate-restart");
    options.request_timeout = Duration::from_secs(2);
    let backend = DynamoBackend::connect(options).await.unwrap();
    let mut watcher = backend.watch(vec![key("/nodes/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    backend
        .put(NewItem::new(key("/nodes/n1"), "up"))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Put(_)
    ));

    emulator.stop();
    for attempt in 0..2 {
        let started = Instant::now();
        let err = match attempt {
            0 => backend.get(&key("/nodes/n1")).await.unwrap_err(),
            _ => backend
                .put(NewItem::new(key("/nodes/n2"), "x"))
                .await
                .unwrap_err(),
        };
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "hung {:?}",
            started.elapsed()
        );
        assert!(matches!(err, BackendError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains(&emulator.endpoint()), "{err}");
    }
    // The watcher keeps retrying while the endpoint is down.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), watcher.next()).await;
    assert!(quiet.is_err(), "the watcher gave up at once: {quiet:?}");

    emulator.start_again().await;
    let err = backend.get(&key("/nodes/n1")).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(err.to_string().contains("jumpgate-restart"), "{err}");
    match tokio::time::timeout(Duration::from_secs(15), watcher.next()).await {
        Ok(Some(Err(WatchError::Closed(reason)))) => {
            assert!(reason.contains("jumpgate-restart"), "{reason}");
        }
        other => panic!("expected the watch to end with a clear error, got {other:?}"),
    }
    assert!(watcher.next().await.is_none());
}

/// The change log is pruned after `change_retention`: a watcher that had not read that far
/// (here: another auth server polling rarely) is told it fell behind, never given a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_behind_the_pruned_log_is_told_it_fell_behind() {
    let emulator = DynamoEmulator::start().await;
    let mut writer_options = options(emulator.endpoint(), "jumpgate-prune");
    writer_options.change_retention = Duration::from_millis(200);
    writer_options.sweep_interval = Duration::from_millis(100);
    let writer = DynamoBackend::connect(writer_options).await.unwrap();
    let mut reader_options = options(emulator.endpoint(), "jumpgate-prune");
    reader_options.poll_interval = Duration::from_secs(3);
    let reader = DynamoBackend::connect(reader_options).await.unwrap();
    let mut watcher = reader.watch(vec![key("/nodes/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    for i in 0..5 {
        writer
            .put(NewItem::new(key(&format!("/nodes/{i}")), "v"))
            .await
            .unwrap();
    }
    match next_event(&mut watcher, Duration::from_secs(15)).await {
        Err(WatchError::FellBehind) => {}
        // The reader's first poll may have come before the prune: then it got the start
        // of the sequence in order, and nothing may follow out of order.
        Ok(Event::Put(item)) => panic!(
            "the watcher read {} before the log was pruned; the poll interval is too short \
             for this test",
            item.key
        ),
        other => panic!("expected FellBehind, got {other:?}"),
    }
    assert!(watcher.next().await.is_none());
}

/// A transaction holds at most 100 writes: a larger range delete runs in several atomic
/// steps, deletes everything in the range and nothing else, and watchers see every delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_delete_larger_than_one_transaction_deletes_all_of_it() {
    let emulator = DynamoEmulator::start().await;
    let backend = DynamoBackend::connect(options(emulator.endpoint(), "jumpgate-big-delete"))
        .await
        .unwrap();
    const COUNT: usize = 200;
    let items: Vec<jumpgate_backend::Action> = (0..COUNT)
        .map(|i| {
            jumpgate_backend::Action::Put(NewItem::new(key(&format!("/sessions/{i:03}")), "s"))
        })
        .collect();
    // Puts go in atomic writes of 40 (80 writes with their log entries' room to spare).
    for chunk in items.chunks(40) {
        backend.atomic_write(vec![], chunk.to_vec()).await.unwrap();
    }
    backend
        .put(NewItem::new(key("/sessionsX"), "outside"))
        .await
        .unwrap();
    let mut watcher = backend.watch(vec![key("/sessions/")]).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, Duration::from_secs(5))
            .await
            .unwrap(),
        Event::Ready
    );
    let range = jumpgate_backend::KeyRange::prefix("/sessions/").unwrap();
    assert_eq!(backend.delete_range(&range).await.unwrap(), COUNT as u64);
    assert!(backend.get_range(&range, None).await.unwrap().is_empty());
    assert!(backend.get(&key("/sessionsX")).await.is_ok());
    let mut deleted = Vec::new();
    while deleted.len() < COUNT {
        match next_event(&mut watcher, Duration::from_secs(10))
            .await
            .unwrap()
        {
            Event::Delete { key, .. } => deleted.push(key.to_string()),
            other => panic!("expected deletes only, got {other:?}"),
        }
    }
    deleted.sort();
    deleted.dedup();
    assert_eq!(deleted.len(), COUNT);
}

#[tokio::test]
async fn values_too_large_for_a_dynamodb_item_are_refused_naming_the_limit() {
    let emulator = DynamoEmulator::start().await;
    let backend = DynamoBackend::connect(options(emulator.endpoint(), "jumpgate-large"))
        .await
        .unwrap();
    let err = backend
        .put(NewItem::new(key("/big"), vec![7u8; 400 * 1024]))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("400 KB"), "{err}");
    // Just under the limit is fine, and reads back whole.
    let value = vec![7u8; 300 * 1024];
    backend
        .put(NewItem::new(key("/big"), value.clone()))
        .await
        .unwrap();
    assert_eq!(backend.get(&key("/big")).await.unwrap().value, value);
}
