//! The conformance suite against the in-memory backend.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::{Backend, MemoryBackend, conformance};
use std::sync::Arc;

async fn memory() -> (Arc<dyn Backend>, ()) {
    let backend = MemoryBackend::with_watch_buffer(conformance::WATCH_BUFFER);
    (Arc::new(backend), ())
}

jumpgate_backend::conformance_suite!(memory());
