//! The one suite every [`RecordingStore`] must pass (like `jumpgate_backend::conformance`):
//! parts, retries, overlaps, gaps, the size limit, complete, stat, list, read, read_range and
//! read_header.
//!
//! Each check is an `async fn(&dyn Opener)`; the opener gives store instances over one fresh,
//! empty storage. [`recording_store_suite!`](crate::recording_store_suite) turns the list into
//! one `#[tokio::test]` per check for a given opener, so a check added here runs for every
//! store. [`two_instances_append_concurrently`] is for stores shared by several auth servers
//! (not the file store, which one process owns).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{
    CastEncoder, Header, LineProblem, MAX_PART_LEN, ParseOptions, RecordingError, RecordingStore,
    SessionId, SessionMeta, parse_cast, read_header,
};
use crate::BoxFuture;

/// Gives store instances over one storage (a directory, a bucket and prefix).
pub trait Opener: Send + Sync {
    /// A store instance refusing recordings over `max_len` bytes. Every call gives a new
    /// instance over the same storage, as a second auth server would open it.
    fn open(&self, max_len: u64) -> BoxFuture<'_, Arc<dyn RecordingStore>>;
}

/// Generates one test per check. `$opener` is an async expression that yields an
/// [`Opener`] (which owns the temp dir or server the check runs on).
#[macro_export]
macro_rules! recording_store_suite {
    ($opener:expr) => {
        $crate::recording_store_suite!(@tests $opener;
            appends_parts_idempotently,
            lists_reads_and_refuses_bad_input,
            reads_ranges_and_headers_alone,
            concurrent_retries_of_one_part_are_safe,
            a_second_instance_sees_everything,
            big_recordings_round_trip,
        );
    };
    (@tests $opener:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let opener = $opener.await;
                $crate::recording::conformance::$check(&opener).await;
            }
        )+
    };
}

const DEFAULT_MAX: u64 = 256 * 1024 * 1024;

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The header of [`sample`].
pub fn header() -> Header {
    let mut header = Header::new(80, 24);
    header.timestamp = Some(1_767_225_600);
    header.title = Some("alice@web-1".into());
    header.env = BTreeMap::from([
        ("SHELL".into(), "/bin/bash".into()),
        ("TERM".into(), "xterm-256color".into()),
    ]);
    header.jumpgate = Some(SessionMeta {
        session_id: id("0b6c2a8e-5f3c-4c7e-9d1e-2f8b6a4c1d00"),
        user: "alice".into(),
        login: "root".into(),
        node: "web-1".into(),
        node_uuid: "5c0f6f0e-9c1b-4f4e-8a39-0e4b1b7d7c11".into(),
        cluster: "example".into(),
    });
    header
}

/// A small session: prompt, a typed command with its output, a resize, a marker, an exit.
pub fn sample() -> Vec<u8> {
    let mut enc = CastEncoder::new();
    let mut out = Vec::new();
    CastEncoder::header(&header(), &mut out);
    enc.output(ms(10), b"\x1b[1;32mroot@web-1\x1b[0m:~# ", &mut out);
    enc.input(ms(1000), b"l", &mut out);
    enc.output(ms(1001), b"l", &mut out);
    enc.input(ms(1200), b"s\r", &mut out);
    enc.output(ms(1201), b"s\r\ncaf\xc3\xa9\r\n", &mut out);
    enc.resize(ms(5000), 120, 40, &mut out);
    enc.marker(ms(5000), "after resize", &mut out);
    enc.output(ms(9000), b"\x1b[31mlogout\x1b[0m\r\n", &mut out);
    enc.finish(ms(9000), &mut out);
    out
}

/// Parts, retries, overlaps, gaps, complete and what may follow it.
pub async fn appends_parts_idempotently(opener: &dyn Opener) {
    let store = opener.open(DEFAULT_MAX).await;
    let sid = id("0b6c2a8e-5f3c-4c7e-9d1e-2f8b6a4c1d00");
    let bytes = sample();
    let (p1, rest) = bytes.split_at(100);
    let (p2, p3) = rest.split_at(150);

    assert_eq!(store.stat(&sid).await.unwrap(), None);
    assert!(matches!(
        store.append_part(&sid, 5, p1.to_vec()).await,
        Err(RecordingError::Gap {
            offset: 5,
            stored: 0,
            ..
        })
    ));
    // An empty part at the start stores nothing.
    assert_eq!(store.append_part(&sid, 0, Vec::new()).await.unwrap(), 0);
    assert_eq!(store.stat(&sid).await.unwrap(), None);
    assert_eq!(store.append_part(&sid, 0, p1.to_vec()).await.unwrap(), 100);
    // The same part again (a lost acknowledgement): acknowledged, nothing written.
    assert_eq!(store.append_part(&sid, 0, p1.to_vec()).await.unwrap(), 100);
    assert_eq!(
        store.append_part(&sid, 100, p2.to_vec()).await.unwrap(),
        250
    );
    // A gap is refused with where to resume.
    let err = store.append_part(&sid, 300, p3.to_vec()).await.unwrap_err();
    assert!(
        matches!(
            err,
            RecordingError::Gap {
                offset: 300,
                stored: 250,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("resend from offset 250"), "{err}");
    // A part that overlaps what is stored with different bytes is refused.
    let mut forged = bytes[200..300].to_vec();
    forged[0] ^= 1;
    assert!(matches!(
        store.append_part(&sid, 200, forged).await,
        Err(RecordingError::Conflict { offset: 200, .. })
    ));
    // A resumed uploader resending from an older offset with a bigger part: only the new
    // bytes are appended.
    let len = bytes.len() as u64;
    assert_eq!(
        store
            .append_part(&sid, 200, bytes[200..].to_vec())
            .await
            .unwrap(),
        len
    );
    assert_eq!(store.read(&sid).await.unwrap(), bytes);

    let info = store.stat(&sid).await.unwrap().unwrap();
    assert_eq!((info.size, info.completed), (len, false));
    let info = store.complete(&sid).await.unwrap();
    assert_eq!((info.size, info.completed), (len, true));
    let again = store.complete(&sid).await.unwrap(); // idempotent
    assert_eq!((again.size, again.completed), (len, true));
    // Complete: a retried last part is still acknowledged, growing is refused, and a retried
    // part with different bytes is still a conflict.
    assert_eq!(
        store.append_part(&sid, 250, p3.to_vec()).await.unwrap(),
        len
    );
    assert!(matches!(
        store
            .append_part(&sid, len, b"[99, \"o\", \"x\"]\n".to_vec())
            .await,
        Err(RecordingError::AlreadyComplete { stored, .. }) if stored == len
    ));
    let mut forged = bytes[250..].to_vec();
    forged[3] ^= 1;
    assert!(matches!(
        store.append_part(&sid, 250, forged).await,
        Err(RecordingError::Conflict { offset: 250, .. })
    ));
    let info = store.stat(&sid).await.unwrap().unwrap();
    assert_eq!((info.size, info.completed), (len, true));

    let rec = parse_cast(&store.read(&sid).await.unwrap(), &ParseOptions::strict()).unwrap();
    assert_eq!(rec.header.jumpgate.unwrap().session_id, sid);
}

/// list, read, NotFound, the part and recording size limits, session id rules.
pub async fn lists_reads_and_refuses_bad_input(opener: &dyn Opener) {
    let store = opener.open(1000).await;
    for (name, n) in [("a", 10), ("b", 20), ("c", 30)] {
        store
            .append_part(&id(name), 0, vec![b'x'; n])
            .await
            .unwrap();
    }
    store.complete(&id("b")).await.unwrap();

    let mut list = store.list().await.unwrap();
    list.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    let summary: Vec<_> = list
        .iter()
        .map(|i| (i.session_id.as_str(), i.size, i.completed))
        .collect();
    assert_eq!(
        summary,
        [("a", 10, false), ("b", 20, true), ("c", 30, false)]
    );

    assert!(matches!(
        store.read(&id("zz")).await,
        Err(RecordingError::NotFound { .. })
    ));
    assert!(matches!(
        store.complete(&id("zz")).await,
        Err(RecordingError::NotFound { .. })
    ));
    assert_eq!(store.stat(&id("zz")).await.unwrap(), None);
    assert!(matches!(
        store
            .append_part(&id("a"), 10, vec![0; MAX_PART_LEN + 1])
            .await,
        Err(RecordingError::PartTooLarge { .. })
    ));
    assert!(matches!(
        store.append_part(&id("a"), 10, vec![0; 991]).await,
        Err(RecordingError::TooLarge {
            size: 1001,
            max: 1000
        })
    ));
    assert_eq!(
        store.append_part(&id("a"), 10, vec![0; 990]).await.unwrap(),
        1000
    );
    assert_eq!(store.read(&id("a")).await.unwrap().len(), 1000);

    for bad in [
        "../x",
        "",
        &"a".repeat(65),
        "a/b",
        "..",
        "a.cast",
        "a\\b",
        "\u{e9}",
    ] {
        let err = SessionId::new(bad).unwrap_err();
        assert!(
            matches!(err, RecordingError::InvalidSessionId { .. }),
            "{bad:?}"
        );
    }
}

/// read_range at every edge, and read_header on whole, partial, long and endless headers.
pub async fn reads_ranges_and_headers_alone(opener: &dyn Opener) {
    let store = opener.open(DEFAULT_MAX).await;
    let sid = id("0b6c2a8e-5f3c-4c7e-9d1e-2f8b6a4c1d00");
    let bytes = sample();
    // In two parts, so that ranges cross a part boundary.
    store
        .append_part(&sid, 0, bytes[..150].to_vec())
        .await
        .unwrap();
    store
        .append_part(&sid, 150, bytes[150..].to_vec())
        .await
        .unwrap();

    let check_ranges = |store: Arc<dyn RecordingStore>, sid: SessionId, bytes: Vec<u8>| async move {
        let range = |offset: u64, len: u64| {
            let store = store.clone();
            let sid = sid.clone();
            async move { store.read_range(&sid, offset, len).await.unwrap() }
        };
        assert_eq!(range(0, 10).await, &bytes[..10]);
        assert_eq!(range(5, 10).await, &bytes[5..15]);
        assert_eq!(range(140, 20).await, &bytes[140..160]);
        assert_eq!(range(0, u64::MAX).await, bytes);
        assert_eq!(
            range(bytes.len() as u64 - 3, 10).await,
            &bytes[bytes.len() - 3..]
        );
        assert!(range(bytes.len() as u64, 10).await.is_empty());
        assert!(range(u64::MAX - 5, 10).await.is_empty());
    };
    check_ranges(store.clone(), sid.clone(), bytes.clone()).await;
    assert!(matches!(
        store.read_range(&id("zz"), 0, 10).await,
        Err(RecordingError::NotFound { .. })
    ));
    assert_eq!(read_header(store.as_ref(), &sid).await.unwrap(), header());
    // The same once complete.
    store.complete(&sid).await.unwrap();
    check_ranges(store.clone(), sid.clone(), bytes.clone()).await;
    assert_eq!(read_header(store.as_ref(), &sid).await.unwrap(), header());

    // The header alone, without its newline yet (an upload in progress).
    let line_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let partial = id("partial");
    store
        .append_part(&partial, 0, bytes[..line_end].to_vec())
        .await
        .unwrap();
    assert_eq!(
        read_header(store.as_ref(), &partial).await.unwrap(),
        header()
    );
    // Half a header is an error, not a guess.
    let half = id("half");
    store
        .append_part(&half, 0, bytes[..line_end / 2].to_vec())
        .await
        .unwrap();
    assert!(read_header(store.as_ref(), &half).await.is_err());
    // A header longer than the first read (a long command) is still read.
    let mut long = header();
    long.command = Some("x".repeat(10_000));
    let mut long_bytes = Vec::new();
    CastEncoder::header(&long, &mut long_bytes);
    long_bytes.extend_from_slice(b"[0.1, \"o\", \"hi\"]\n");
    let long_id = id("long");
    store.append_part(&long_id, 0, long_bytes).await.unwrap();
    assert_eq!(read_header(store.as_ref(), &long_id).await.unwrap(), long);
    // A first line longer than any line may be is refused, after reading a bounded amount.
    let endless = id("endless");
    for part in 0..2 {
        store
            .append_part(
                &endless,
                (part * MAX_PART_LEN) as u64,
                vec![b' '; MAX_PART_LEN],
            )
            .await
            .unwrap();
    }
    let err = read_header(store.as_ref(), &endless).await.unwrap_err();
    assert!(
        matches!(
            err,
            RecordingError::Malformed {
                problem: LineProblem::TooLong { .. },
                ..
            }
        ),
        "{err}"
    );
}

/// The same part sent eight times at once (retries racing): stored once, all acknowledged.
pub async fn concurrent_retries_of_one_part_are_safe(opener: &dyn Opener) {
    let store = opener.open(DEFAULT_MAX).await;
    let bytes = sample();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let bytes = bytes.clone();
            tokio::spawn(async move { store.append_part(&id("s"), 0, bytes).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), bytes.len() as u64);
    }
    assert_eq!(store.read(&id("s")).await.unwrap(), bytes);
}

/// A store instance opened after another wrote sees its recordings, in progress and
/// complete (auth restarted, or another auth server).
pub async fn a_second_instance_sees_everything(opener: &dyn Opener) {
    let first = opener.open(DEFAULT_MAX).await;
    let bytes = sample();
    first
        .append_part(&id("open"), 0, bytes[..200].to_vec())
        .await
        .unwrap();
    first
        .append_part(&id("done"), 0, bytes.clone())
        .await
        .unwrap();
    first.complete(&id("done")).await.unwrap();

    let second = opener.open(DEFAULT_MAX).await;
    assert_eq!(second.read(&id("open")).await.unwrap(), &bytes[..200]);
    assert_eq!(second.read(&id("done")).await.unwrap(), bytes);
    let info = second.stat(&id("open")).await.unwrap().unwrap();
    assert_eq!((info.size, info.completed), (200, false));
    // The upload goes on through the second instance, resuming from the stored size.
    assert_eq!(
        second
            .append_part(&id("open"), info.size, bytes[200..].to_vec())
            .await
            .unwrap(),
        bytes.len() as u64
    );
    second.complete(&id("open")).await.unwrap();
    let info = first.stat(&id("open")).await.unwrap().unwrap();
    assert_eq!((info.size, info.completed), (bytes.len() as u64, true));
    assert_eq!(first.read(&id("open")).await.unwrap(), bytes);
    assert_eq!(first.list().await.unwrap().len(), 2);
}

/// A recording of many full parts (more than one assembly chunk), read back whole and in
/// ranges, before and after completion.
pub async fn big_recordings_round_trip(opener: &dyn Opener) {
    let store = opener.open(DEFAULT_MAX).await;
    let sid = id("big");
    // 10 MiB and a bit, with every byte depending on its offset.
    let len = 10 * MAX_PART_LEN + 12345;
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut offset = 0;
    for part in bytes.chunks(MAX_PART_LEN) {
        offset = store
            .append_part(&sid, offset, part.to_vec())
            .await
            .unwrap();
    }
    assert_eq!(offset, len as u64);
    let at = 3 * MAX_PART_LEN as u64 - 7;
    assert_eq!(
        store.read_range(&sid, at, 100).await.unwrap(),
        &bytes[at as usize..at as usize + 100]
    );
    let info = store.complete(&sid).await.unwrap();
    assert_eq!(info.size, len as u64);
    assert!(store.read(&sid).await.unwrap() == bytes);
    assert_eq!(
        store.read_range(&sid, at, 100).await.unwrap(),
        &bytes[at as usize..at as usize + 100]
    );
}

/// Two instances (two auth servers) appending one recording at once, as a node whose
/// connection moved does when its old request is still in flight: each part from either is
/// stored once, different bytes at one offset are refused, two `complete`s at once agree,
/// and the result is the uploader's bytes exactly.
pub async fn two_instances_append_concurrently(opener: &dyn Opener) {
    let a = opener.open(DEFAULT_MAX).await;
    let b = opener.open(DEFAULT_MAX).await;
    let sid = id("shared");
    let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i % 253) as u8).collect();
    // Both upload the whole recording in parts of different sizes, racing.
    let upload = |store: Arc<dyn RecordingStore>, step: usize| {
        let bytes = bytes.clone();
        let sid = sid.clone();
        tokio::spawn(async move {
            let mut offset = 0usize;
            while offset < bytes.len() {
                let end = (offset + step).min(bytes.len());
                match store
                    .append_part(&sid, offset as u64, bytes[offset..end].to_vec())
                    .await
                {
                    Ok(stored) => offset = stored as usize,
                    Err(RecordingError::Gap { stored, .. }) => offset = stored as usize,
                    Err(err) => panic!("append at {offset}: {err}"),
                }
            }
        })
    };
    let (one, two) = (upload(a.clone(), 3000), upload(b.clone(), 7001));
    one.await.unwrap();
    two.await.unwrap();
    assert_eq!(a.read(&sid).await.unwrap(), bytes);
    // Different bytes at the same end from the other instance: the first is kept, the
    // second refused. (Sequential: a simultaneous race is decided by the conditional PUT,
    // which the test server checks before writing rather than atomically.)
    let len = bytes.len() as u64;
    assert_eq!(
        a.append_part(&sid, len, b"from a\n".to_vec())
            .await
            .unwrap(),
        len + 7
    );
    assert!(matches!(
        b.append_part(&sid, len, b"from b\n".to_vec()).await,
        Err(RecordingError::Conflict { .. })
    ));
    // Complete from both at once: one length, the same for both.
    let (ca, cb) = tokio::join!(a.complete(&sid), b.complete(&sid));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    assert_eq!(ca.size, len + 7);
    assert_eq!(cb.size, len + 7);
    let stored = b.read(&sid).await.unwrap();
    assert_eq!(&stored[..bytes.len()], bytes.as_slice());
    assert!(stored.ends_with(b"from a\n"));
}
