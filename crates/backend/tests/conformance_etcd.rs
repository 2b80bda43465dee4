//! The conformance suite against a real etcd server (Debian's `etcd-server`), one
//! fresh server per check.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::{Backend, EtcdBackend, EtcdOptions, conformance};
use jumpgate_test_support::EtcdServer;
use std::sync::Arc;

async fn etcd() -> (Arc<dyn Backend>, EtcdServer) {
    let server = EtcdServer::start().await;
    let mut options = EtcdOptions::new(vec![server.endpoint()], "/jumpgate-test/");
    options.watch_buffer = conformance::WATCH_BUFFER;
    let backend = EtcdBackend::connect(options).await.unwrap();
    (Arc::new(backend), server)
}

jumpgate_backend::conformance_suite!(etcd());
