//! The cluster-state backends side by side, in one run, against real servers started
//! here with their durable settings: SQLite (the embedded default, the baseline), etcd and
//! PostgreSQL (`fsync=on`). For each: the latency of one write (sequential, p50/p99), the
//! throughput of 16 concurrent writers, and how long a write takes to reach a watcher
//! (from the start of the write to the event's arrival, p50/p99). Ratios are to SQLite.
//!
//! `target/release/bench-backends [--writes N] [--watch-writes N] [--seconds S]
//! [--append-json FILE]` (defaults 1000, 300, 3). Values are 200 bytes, keys distinct.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jumpgate_backend::{
    Backend, EtcdBackend, EtcdOptions, Event, Key, NewItem, PostgresBackend, PostgresOptions,
    SqliteBackend, SqliteOptions,
};
use jumpgate_bench::{append_line, git_commit, load_average, ms};
use jumpgate_test_support::{EtcdServer, Postgres};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WRITERS: usize = 16;

struct Settings {
    writes: usize,
    watch_writes: usize,
    seconds: u64,
}

/// One backend's figures.
struct Figures {
    name: &'static str,
    write_p50: Duration,
    write_p99: Duration,
    writes_per_second: f64,
    watch_p50: Duration,
    watch_p99: Duration,
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

async fn measure(name: &'static str, backend: Arc<dyn Backend>, settings: &Settings) -> Figures {
    let value = vec![b'v'; 200];
    for i in 0..50 {
        backend
            .put(NewItem::new(
                key(&format!("/bench/warm/{i}")),
                value.clone(),
            ))
            .await
            .unwrap();
    }

    let mut latencies = Vec::with_capacity(settings.writes);
    for i in 0..settings.writes {
        let started = Instant::now();
        backend
            .put(NewItem::new(key(&format!("/bench/seq/{i}")), value.clone()))
            .await
            .unwrap();
        latencies.push(started.elapsed());
    }

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(settings.seconds);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (backend, done, value) = (Arc::clone(&backend), Arc::clone(&done), value.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                backend
                    .put(NewItem::new(
                        key(&format!("/bench/par/{w}/{i}")),
                        value.clone(),
                    ))
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let started = Instant::now();
    for writer in writers {
        writer.await.unwrap();
    }
    let writes_per_second = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    let mut watcher = backend.watch(vec![key("/bench/watch/")]).await.unwrap();
    assert!(matches!(watcher.next().await, Some(Ok(Event::Ready))));
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(event) = watcher.next().await {
            if let Ok(Event::Put(item)) = event
                && arrived_tx
                    .send((item.key.to_string(), Instant::now()))
                    .is_err()
            {
                return;
            }
        }
    });
    let mut sent = Vec::with_capacity(settings.watch_writes);
    for i in 0..settings.watch_writes {
        let k = format!("/bench/watch/{i}");
        let started = Instant::now();
        backend
            .put(NewItem::new(key(&k), value.clone()))
            .await
            .unwrap();
        sent.push((k, started));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < sent.len() {
        match tokio::time::timeout_at(deadline, arrived.recv()).await {
            Ok(Some((k, at))) => {
                seen.insert(k, at);
            }
            _ => break,
        }
    }
    reader.abort();
    backend.close().await.unwrap();
    let watch: Vec<Duration> = sent
        .iter()
        .map(|(k, started)| {
            seen.get(k)
                .map(|arrived| arrived.duration_since(*started))
                .unwrap_or_else(|| panic!("{name}: the watcher never saw {k}"))
        })
        .collect();
    Figures {
        name,
        write_p50: percentile(&latencies, 0.5),
        write_p99: percentile(&latencies, 0.99),
        writes_per_second,
        watch_p50: percentile(&watch, 0.5),
        watch_p99: percentile(&watch, 0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1).cloned())
    };
    let settings = Settings {
        writes: flag("--writes").map_or(1000, |n| n.parse().expect("--writes N")),
        watch_writes: flag("--watch-writes").map_or(300, |n| n.parse().expect("--watch-writes N")),
        seconds: flag("--seconds").map_or(3, |n| n.parse().expect("--seconds S")),
    };
    let append_json = flag("--append-json").map(PathBuf::from);
    let load = load_average();
    let mut results = Vec::new();

    let dir = tempfile::Builder::new()
        .prefix("jumpgate-bench-backends.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let sqlite = SqliteBackend::open(SqliteOptions::new(dir.path().join("sqlite.db")))
        .await
        .unwrap();
    results.push(measure("sqlite", Arc::new(sqlite), &settings).await);

    let etcd = EtcdServer::start().await;
    let backend = EtcdBackend::connect(EtcdOptions::new(vec![etcd.endpoint()], "/jumpgate/"))
        .await
        .unwrap();
    results.push(measure("etcd", Arc::new(backend), &settings).await);
    drop(etcd);

    let postgres = Postgres::start_durable().await;
    let mut options = PostgresOptions::new(postgres.conn_string());
    options.password = Some(postgres.password().to_string());
    let backend = PostgresBackend::connect(options).await.unwrap();
    results.push(measure("postgresql", Arc::new(backend), &settings).await);
    drop(postgres);

    let base = results
        .first()
        .map(|f| (f.write_p50, f.writes_per_second, f.watch_p50))
        .unwrap();
    println!(
        "\n{:<12} {:>13} {:>13} {:>16} {:>13} {:>13}   vs sqlite (write p50, writes/s, watch p50)",
        "backend",
        "write p50 ms",
        "write p99 ms",
        "writes/s (16 w)",
        "watch p50 ms",
        "watch p99 ms"
    );
    let mut rows = Vec::new();
    for f in &results {
        let ratios = (
            f.write_p50.as_secs_f64() / base.0.as_secs_f64(),
            f.writes_per_second / base.1,
            f.watch_p50.as_secs_f64() / base.2.as_secs_f64(),
        );
        println!(
            "{:<12} {:>13.2} {:>13.2} {:>16.0} {:>13.2} {:>13.2}   {:.2}× {:.2}× {:.2}×",
            f.name,
            ms(f.write_p50),
            ms(f.write_p99),
            f.writes_per_second,
            ms(f.watch_p50),
            ms(f.watch_p99),
            ratios.0,
            ratios.1,
            ratios.2,
        );
        rows.push(serde_json::json!({
            "backend": f.name,
            "write_ms": {"p50": ms(f.write_p50), "p99": ms(f.write_p99)},
            "writes_per_second": f.writes_per_second,
            "watch_ms": {"p50": ms(f.watch_p50), "p99": ms(f.watch_p99)},
            "vs_sqlite": {"write_p50": ratios.0, "writes_per_second": ratios.1, "watch_p50": ratios.2},
        }));
    }
    let record = serde_json::json!({
        "bench": "backends",
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "commit": git_commit(),
        "load_average_before": load,
        "command": format!(
            "target/release/bench-backends --writes {} --watch-writes {} --seconds {}",
            settings.writes, settings.watch_writes, settings.seconds
        ),
        "writers": WRITERS,
        "value_bytes": 200,
        "backends": rows,
    });
    println!("JSON: {record}");
    if let Some(path) = append_json {
        append_line(&path, &record.to_string());
    }
}
