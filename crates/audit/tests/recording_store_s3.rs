//! The recording-store suite against a real S3-compatible server (`s3s-fs`, which checks
//! SigV4 signatures), plus what only a shared object store has: two auth servers at once,
//! refused credentials, an unreachable endpoint, and crashes between the steps of completing.
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
    RecordingError, RecordingStore, S3Credentials, S3Options, S3RecordingStore, SessionId,
};
use jumpgate_test_support::{S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};

const PREFIX: &str = "cluster/records";

fn options(server: &S3Server, secret: &str) -> S3Options {
    let mut options = S3Options::new(S3_BUCKET);
    options.prefix = PREFIX.to_string();
    options.region = Some("us-east-1".to_string());
    options.endpoint = Some(server.endpoint());
    options.path_style = true;
    options.credentials = Some(S3Credentials {
        access_key_id: S3_ACCESS_KEY.to_string(),
        secret_access_key: secret.to_string(),
    });
    options
}

struct Bucket(S3Server);

impl Bucket {
    async fn store(&self, max_len: u64) -> S3RecordingStore {
        let mut options = options(&self.0, S3_SECRET_KEY);
        options.max_len = max_len;
        S3RecordingStore::open(options).await.unwrap()
    }

    /// Writes an object behind the store's back, as a crashed writer left it (s3s-fs keeps
    /// each object as a file).
    fn plant(&self, key: &str, bytes: &[u8]) {
        let path = self.0.data_dir().join(S3_BUCKET).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn exists(&self, key: &str) -> bool {
        self.0.data_dir().join(S3_BUCKET).join(key).exists()
    }
}

impl Opener for Bucket {
    fn open(&self, max_len: u64) -> BoxFuture<'_, Arc<dyn RecordingStore>> {
        Box::pin(async move { Arc::new(self.store(max_len).await) as Arc<dyn RecordingStore> })
    }
}

async fn bucket() -> Bucket {
    Bucket(S3Server::start().await)
}

jumpgate_audit::recording_store_suite!(bucket());

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_servers_append_to_one_recording_at_once() {
    conformance::two_instances_append_concurrently(&bucket().await).await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused_naming_the_key_id_and_endpoint() {
    let server = S3Server::start().await;
    let err = S3RecordingStore::open(options(&server, "not-the-secret"))
        .await
        .unwrap_err();
    assert!(matches!(err, RecordingError::StoreDenied { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(S3_ACCESS_KEY), "{text}");
    assert!(text.contains(&server.endpoint()), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
    assert!(!format!("{err:?}").contains("not-the-secret"));
    // The right secret works against the same server.
    S3RecordingStore::open(options(&server, S3_SECRET_KEY))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let server = S3Server::start().await;
    let mut options = options(&server, S3_SECRET_KEY);
    options.bucket = "no-such-bucket".to_string();
    let err = S3RecordingStore::open(options).await.unwrap_err();
    assert!(matches!(err, RecordingError::StoreConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable_within_bounded_time() {
    let mut server = S3Server::start().await;
    let mut options = options(&server, S3_SECRET_KEY);
    options.connect_timeout = Duration::from_secs(1);
    options.request_timeout = Duration::from_secs(2);
    let store = S3RecordingStore::open(options.clone()).await.unwrap();
    store
        .append_part(&id("s"), 0, b"hello".to_vec())
        .await
        .unwrap();
    server.stop();

    let started = Instant::now();
    let err = store
        .append_part(&id("s"), 5, b" world".to_vec())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        matches!(err, RecordingError::StoreUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&server.endpoint()), "{err}");
    let err = S3RecordingStore::open(options).await.unwrap_err();
    assert!(
        matches!(err, RecordingError::StoreUnavailable { .. }),
        "{err:?}"
    );

    // Back up: the upload resumes where it was, nothing lost.
    server.start_again().await;
    assert_eq!(
        store
            .append_part(&id("s"), 5, b" world".to_vec())
            .await
            .unwrap(),
        11
    );
    assert_eq!(store.read(&id("s")).await.unwrap(), b"hello world");
}

/// Crashes between the steps: a part stored but not acknowledged, a seal without a length, a
/// length without the assembled object, leftover parts beside it, and a late part past the
/// decided length. Each is resolved by the next call from another instance, with no byte
/// lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_between_steps_lose_and_duplicate_nothing() {
    let bucket = bucket().await;
    let first = bucket.store(256 << 20).await;
    let second = bucket.store(256 << 20).await;
    let bytes = sample();
    let sid = id("crash");
    let len = bytes.len() as u64;

    // 1. A part stored, the acknowledgement lost (the auth server died after the PUT): the
    //    node resends the same bytes from its last acknowledged offset and they are
    //    acknowledged without being stored twice.
    first
        .append_part(&sid, 0, bytes[..100].to_vec())
        .await
        .unwrap();
    bucket.plant(
        &first.part_key(&sid, 100, &bytes[100..200]),
        &bytes[100..200],
    );
    assert_eq!(
        second
            .append_part(&sid, 100, bytes[100..].to_vec())
            .await
            .unwrap(),
        len
    );
    assert_eq!(second.read(&sid).await.unwrap(), bytes);

    // 2. `complete` died after sealing, before deciding the length: still readable and
    //    growing is decided by the next caller; complete from another instance finishes.
    bucket.plant(&format!("{PREFIX}/crash/state"), b"sealing");
    assert_eq!(first.read(&sid).await.unwrap(), bytes);
    let info = second.complete(&sid).await.unwrap();
    assert_eq!((info.size, info.completed), (len, true));
    assert_eq!(first.read(&sid).await.unwrap(), bytes);
    assert!(bucket.exists(&first.cast_key(&sid)));
    assert!(!bucket.exists(&first.part_key(&sid, 0, &bytes[..100])));

    // 3. The length decided, the assembly not done: readable from its parts, listed as
    //    complete, assembled by the next `complete`.
    let sid = id("decided");
    first.append_part(&sid, 0, bytes.clone()).await.unwrap();
    assert_eq!(first.decide_length(&sid).await.unwrap(), Some(len));
    let info = second.stat(&sid).await.unwrap().unwrap();
    assert_eq!((info.size, info.completed), (len, true));
    assert_eq!(second.read(&sid).await.unwrap(), bytes);
    assert!(!bucket.exists(&first.cast_key(&sid)));
    // 4. ... and a late part past the decided length (an append that lost the race with
    //    the seal) is not part of the recording.
    bucket.plant(&first.part_key(&sid, len, b"late bytes\n"), b"late bytes\n");
    assert_eq!(second.read(&sid).await.unwrap(), bytes);
    assert!(matches!(
        second.append_part(&sid, len, b"late bytes\n".to_vec()).await,
        Err(RecordingError::AlreadyComplete { stored, .. }) if stored == len
    ));
    second.complete(&sid).await.unwrap();
    assert_eq!(first.read(&sid).await.unwrap(), bytes);

    // 5. Assembled, but died before deleting the parts: the object wins, the next
    //    `complete` removes the leftovers, the list shows the recording once.
    let leftover = first.part_key(&sid, 0, &bytes[..50]);
    bucket.plant(&leftover, &bytes[..50]);
    assert_eq!(first.read(&sid).await.unwrap(), bytes);
    let listed: Vec<_> = second
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|info| info.session_id == sid)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].size, listed[0].completed), (len, true));
    first.complete(&sid).await.unwrap();
    assert!(!bucket.exists(&leftover));
    assert_eq!(second.read(&sid).await.unwrap(), bytes);
}

#[tokio::test]
async fn part_objects_are_durable_at_once_and_the_completed_recording_is_one_object() {
    let bucket = bucket().await;
    let store = bucket.store(256 << 20).await;
    let sid = id("layout");
    let bytes = sample();
    store
        .append_part(&sid, 0, bytes[..64].to_vec())
        .await
        .unwrap();
    // Stored as its own object the moment it is acknowledged.
    let part = bucket
        .0
        .data_dir()
        .join(S3_BUCKET)
        .join(store.part_key(&sid, 0, &bytes[..64]));
    assert_eq!(std::fs::read(&part).unwrap(), &bytes[..64]);
    store
        .append_part(&sid, 64, bytes[64..].to_vec())
        .await
        .unwrap();
    store.complete(&sid).await.unwrap();
    let cast = bucket
        .0
        .data_dir()
        .join(S3_BUCKET)
        .join(store.cast_key(&sid));
    assert_eq!(std::fs::read(cast).unwrap(), bytes);
    assert!(!part.exists());
}
