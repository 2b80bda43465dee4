//! The conformance suite against a real PostgreSQL server (Debian's `postgresql`), one
//! fresh private cluster per check.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::{Backend, PostgresBackend, PostgresOptions, conformance};
use jumpgate_test_support::Postgres;
use std::sync::Arc;

async fn postgres() -> (Arc<dyn Backend>, Postgres) {
    let server = Postgres::start().await;
    let mut options = PostgresOptions::new(server.conn_string());
    options.password = Some(server.password().to_string());
    options.watch_buffer = conformance::WATCH_BUFFER;
    let backend = PostgresBackend::connect(options).await.unwrap();
    (Arc::new(backend), server)
}

jumpgate_backend::conformance_suite!(postgres());
