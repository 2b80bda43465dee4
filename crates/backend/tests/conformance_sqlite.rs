//! The conformance suite against the SQLite backend, on a file in a temp dir.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::{Backend, SqliteBackend, SqliteOptions, conformance};
use std::sync::Arc;

async fn sqlite() -> (Arc<dyn Backend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SqliteOptions::new(dir.path().join("backend").join("state.db"));
    options.watch_buffer = conformance::WATCH_BUFFER;
    let backend = SqliteBackend::open(options).await.unwrap();
    (Arc::new(backend), dir)
}

jumpgate_backend::conformance_suite!(sqlite());
