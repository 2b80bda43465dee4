//! The conformance suite against the DynamoDB backend, with moto's server mode standing in
//! for DynamoDB (an emulator: DynamoDB itself cannot run here), one fresh emulator per check.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::{Backend, DynamoBackend, DynamoCredentials, DynamoOptions, conformance};
use jumpgate_test_support::{
    DynamoEmulator, EMULATOR_ACCESS_KEY_ID, EMULATOR_REGION, EMULATOR_SECRET_ACCESS_KEY,
};
use std::sync::Arc;

async fn dynamodb() -> (Arc<dyn Backend>, DynamoEmulator) {
    let emulator = DynamoEmulator::start().await;
    let mut options = DynamoOptions::new(EMULATOR_REGION, "jumpgate-conformance");
    options.endpoint = Some(emulator.endpoint());
    options.credentials = Some(DynamoCredentials {
        access_key_id: EMULATOR_ACCESS_KEY_ID.to_string(),
        secret_access_key: EMULATOR_SECRET_ACCESS_KEY.to_string(),
    });
    options.watch_buffer = conformance::WATCH_BUFFER;
    let backend = DynamoBackend::connect(options).await.unwrap();
    (Arc::new(backend), emulator)
}

jumpgate_backend::conformance_suite!(dynamodb());
