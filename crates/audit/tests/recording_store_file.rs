//! The recording-store suite against the file store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use jumpgate_audit::BoxFuture;
use jumpgate_audit::recording::conformance::Opener;
use jumpgate_audit::recording::{FileRecordingStore, RecordingStore};

struct Files(tempfile::TempDir);

impl Opener for Files {
    fn open(&self, max_len: u64) -> BoxFuture<'_, Arc<dyn RecordingStore>> {
        Box::pin(async move {
            let store = FileRecordingStore::open(self.0.path().join("records"))
                .await
                .unwrap()
                .with_max_len(max_len);
            Arc::new(store) as Arc<dyn RecordingStore>
        })
    }
}

async fn files() -> Files {
    Files(tempfile::tempdir().unwrap())
}

jumpgate_audit::recording_store_suite!(files());
