//! Recording upload into the two recording stores side by side, in one run: files on the
//! auth server's disk (`FileRecordingStore`, the default; every part `fsync`ed) and an
//! S3-compatible bucket (`S3RecordingStore` against a real `s3s-fs` on loopback, which
//! checks SigV4 signatures). For each recording size: the recording is appended in parts of
//! 1 MiB at increasing offsets, one after the other, as a node uploads it (`append_part`,
//! timed per part), then completed (`complete`: for S3 the seal, the copy of the parts into
//! one object — one PUT up to 8 MiB, else a multipart upload — and the deletion of the parts),
//! then read back whole (`read`) and compared. For S3 the seal (`decide_length`, the length
//! decided in the `state` object) is timed on its own first; `complete` then assembles. The
//! stores' own calls, in this process: no gRPC hop, no node upload quota. Ratios are S3 to
//! files.
//!
//! `target/release/bench-recordings [--sizes 8,64] [--runs 3] [--append-json FILE]` (sizes
//! in MiB). Needs `s3s-fs` (`cargo install --locked s3s-fs --version 0.14.1 --features
//! binary`; `bench/run.sh` installs it). The file store lives in /var/tmp, s3s-fs's
//! directory in the temporary directory; s3s-fs does not `fsync`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jumpgate_audit::recording::{
    FileRecordingStore, MAX_PART_LEN, RecordingStore, S3Credentials, S3Options, S3RecordingStore,
    SessionId,
};
use jumpgate_bench::{append_line, git_commit, load_average, median, ms};
use jumpgate_test_support::{S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// One store's figures for one recording size, over every run.
struct Figures {
    store: &'static str,
    upload: Vec<Duration>,
    parts: Vec<Duration>,
    /// S3 only: deciding the length (`decide_length`: the `state` object), the first step of
    /// `complete`, timed on its own; `complete` is then the assembly.
    seal: Vec<Duration>,
    /// `complete`, including `seal`.
    complete: Vec<Duration>,
    read: Vec<Duration>,
}

impl Figures {
    fn new(store: &'static str) -> Figures {
        Figures {
            store,
            upload: Vec::new(),
            parts: Vec::new(),
            seal: Vec::new(),
            complete: Vec::new(),
            read: Vec::new(),
        }
    }

    fn upload_mib_s(&self, mib: usize) -> f64 {
        mib as f64 / median(&self.upload).as_secs_f64()
    }

    /// Upload and completion together: until the recording is whole in the store.
    fn stored_mib_s(&self, mib: usize) -> f64 {
        let totals: Vec<Duration> = self
            .upload
            .iter()
            .zip(&self.complete)
            .map(|(a, b)| *a + *b)
            .collect();
        mib as f64 / median(&totals).as_secs_f64()
    }

    fn read_mib_s(&self, mib: usize) -> f64 {
        mib as f64 / median(&self.read).as_secs_f64()
    }
}

/// The median time to seal, for the stores where it is measured on its own.
fn seal_ms(figures: &Figures) -> Option<f64> {
    (!figures.seal.is_empty()).then(|| ms(median(&figures.seal)))
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

/// `mib` MiB of asciicast lines, as a node spools them (the content only matters for the
/// part hashes; text like a real recording's).
fn recording(mib: usize) -> Vec<u8> {
    let len = mib * MIB;
    let mut out = Vec::with_capacity(len + 128);
    out.extend_from_slice(
        b"{\"version\":2,\"width\":120,\"height\":40,\"env\":{\"TERM\":\"xterm-256color\"}}\n",
    );
    let mut i = 0u64;
    while out.len() < len {
        let line = format!(
            "[{}.{:06}, \"o\", \"build step {i:08}: compiling crate number {} of the workspace\\r\\n\"]\n",
            i / 1000,
            i % 1000 * 997,
            i % 613
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

async fn run_once(
    store: &dyn RecordingStore,
    bucket: Option<&S3RecordingStore>,
    session: &SessionId,
    data: &[u8],
    figures: &mut Figures,
) {
    let started = Instant::now();
    let mut offset = 0u64;
    for chunk in data.chunks(MAX_PART_LEN) {
        let part = Instant::now();
        let stored = store
            .append_part(session, offset, chunk.to_vec())
            .await
            .unwrap_or_else(|err| panic!("{}: append at {offset}: {err}", figures.store));
        figures.parts.push(part.elapsed());
        offset += chunk.len() as u64;
        assert_eq!(stored, offset, "{}: stored length", figures.store);
    }
    figures.upload.push(started.elapsed());

    let started = Instant::now();
    if let Some(bucket) = bucket {
        let len = bucket
            .decide_length(session)
            .await
            .unwrap_or_else(|err| panic!("{}: seal: {err}", figures.store));
        figures.seal.push(started.elapsed());
        assert_eq!(
            len,
            Some(data.len() as u64),
            "{}: sealed length",
            figures.store
        );
    }
    let info = store
        .complete(session)
        .await
        .unwrap_or_else(|err| panic!("{}: complete: {err}", figures.store));
    figures.complete.push(started.elapsed());
    assert!(info.completed, "{}: not completed", figures.store);
    assert_eq!(
        info.size,
        data.len() as u64,
        "{}: completed size",
        figures.store
    );

    let started = Instant::now();
    let back = store
        .read(session)
        .await
        .unwrap_or_else(|err| panic!("{}: read: {err}", figures.store));
    figures.read.push(started.elapsed());
    assert!(back == data, "{}: read back different bytes", figures.store);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1).cloned())
    };
    let sizes: Vec<usize> = flag("--sizes").map_or_else(
        || vec![8, 64],
        |list| {
            list.split(',')
                .map(|n| n.trim().parse().expect("--sizes MIB,MIB,..."))
                .collect()
        },
    );
    let runs: usize = flag("--runs").map_or(3, |n| n.parse().expect("--runs N"));
    assert!(runs > 0, "--runs must be at least 1");
    let append_json = flag("--append-json").map(PathBuf::from);
    let load = load_average();

    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-recordings.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let files = FileRecordingStore::open(dir.path().join("sessions"))
        .await
        .unwrap();
    let s3 = S3Server::start().await;
    let mut options = S3Options::new(S3_BUCKET);
    options.prefix = "bench/sessions".to_string();
    options.region = Some("us-east-1".to_string());
    options.endpoint = Some(s3.endpoint());
    options.path_style = true;
    options.credentials = Some(S3Credentials {
        access_key_id: S3_ACCESS_KEY.to_string(),
        secret_access_key: S3_SECRET_KEY.to_string(),
    });
    let bucket = S3RecordingStore::open(options).await.unwrap();

    let mut rows = Vec::new();
    println!(
        "\n{:<6} {:<6} {:>12} {:>13} {:>13} {:>9} {:>13} {:>15} {:>12}",
        "MiB",
        "store",
        "upload MiB/s",
        "part p50 ms",
        "part p99 ms",
        "seal ms",
        "complete ms",
        "stored MiB/s",
        "read MiB/s"
    );
    for &mib in &sizes {
        let data = recording(mib);
        let mut by_store = [Figures::new("files"), Figures::new("s3")];
        // Interleaved, so that a slow minute on the machine hits both stores alike.
        for run in 0..runs {
            for figures in &mut by_store {
                let session =
                    SessionId::new(format!("bench-{}-{mib}m-{run}", figures.store)).unwrap();
                let (store, sealed): (&dyn RecordingStore, _) = match figures.store {
                    "files" => (&files, None),
                    _ => (&bucket, Some(&bucket)),
                };
                run_once(store, sealed, &session, &data, figures).await;
            }
        }
        let [files_figures, s3_figures] = &by_store;
        for f in &by_store {
            println!(
                "{:<6} {:<6} {:>12.1} {:>13.2} {:>13.2} {:>9} {:>13.1} {:>15.1} {:>12.1}",
                mib,
                f.store,
                f.upload_mib_s(mib),
                ms(percentile(&f.parts, 0.5)),
                ms(percentile(&f.parts, 0.99)),
                seal_ms(f).map_or_else(|| "-".to_string(), |ms| format!("{ms:.1}")),
                ms(median(&f.complete)),
                f.stored_mib_s(mib),
                f.read_mib_s(mib),
            );
        }
        let ratio = |f: &dyn Fn(&Figures) -> f64| f(s3_figures) / f(files_figures);
        let upload = ratio(&|f| f.upload_mib_s(mib));
        let part_p50 = ratio(&|f| percentile(&f.parts, 0.5).as_secs_f64());
        let complete = ratio(&|f| median(&f.complete).as_secs_f64());
        let stored = ratio(&|f| f.stored_mib_s(mib));
        let read = ratio(&|f| f.read_mib_s(mib));
        println!(
            "{:<6} {:<6} {upload:>11.2}× {part_p50:>12.2}× {:>13} {:>9} {complete:>12.1}× {stored:>14.2}× {read:>11.2}×   (s3 / files)",
            mib, "ratio", "", "",
        );
        let ratios = serde_json::json!({
            "upload_mib_s": upload,
            "part_p50": part_p50,
            "complete_ms": complete,
            "stored_mib_s": stored,
            "read_mib_s": read,
        });
        let stores: Vec<_> = by_store
            .iter()
            .map(|f| {
                serde_json::json!({
                    "store": f.store,
                    "upload_mib_s": f.upload_mib_s(mib),
                    "part_ms": {"p50": ms(percentile(&f.parts, 0.5)), "p99": ms(percentile(&f.parts, 0.99))},
                    "upload_ms": ms(median(&f.upload)),
                    "seal_ms": seal_ms(f),
                    "complete_ms": ms(median(&f.complete)),
                    "stored_mib_s": f.stored_mib_s(mib),
                    "read_mib_s": f.read_mib_s(mib),
                })
            })
            .collect();
        rows.push(serde_json::json!({
            "mib": mib,
            "parts": mib * MIB / MAX_PART_LEN,
            "stores": stores,
            "s3_over_files": ratios,
        }));
    }
    let record = serde_json::json!({
        "bench": "recordings",
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "commit": git_commit(),
        "load_average_before": load,
        "command": format!(
            "target/release/bench-recordings --sizes {} --runs {runs}",
            sizes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        ),
        "runs": runs,
        "part_bytes": MAX_PART_LEN,
        "sizes": rows,
    });
    println!("JSON: {record}");
    if let Some(path) = append_json {
        append_line(&path, &record.to_string());
    }
}
