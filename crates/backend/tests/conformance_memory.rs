//! The conformance suite against the in-memory backend.
use jumpgate_backend::{Backend, MemoryBackend, conformance};
use std::sync::Arc;

async fn memory() -> (Arc<dyn Backend>, ()) {
    let backend = MemoryBackend::with_watch_buffer(conformance::WATCH_BUFFER);
    (Arc::new(backend), ())
}

jumpgate_backend::conformance_suite!(memory());
