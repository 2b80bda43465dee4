//! [`MeteredBackend`]: the latency and outcome of every cluster-state request, in
//! `jumpgate_backend_requests_total` and `jumpgate_backend_request_duration_seconds`
//! (what an operator watches when HA "feels slow"; docs/operations.md).

use crate::{Action, Backend, Condition, Item, Key, KeyRange, NewItem, Result, Revision, Watcher};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A [`Backend`] that records the latency and outcome of every request it forwards.
#[derive(Debug, Clone)]
pub struct MeteredBackend {
    inner: Arc<dyn Backend>,
}

impl MeteredBackend {
    pub fn new(inner: Arc<dyn Backend>) -> MeteredBackend {
        MeteredBackend { inner }
    }

    async fn measure<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = request.await;
        let kind = self.inner.kind();
        jumpgate_telemetry::observe(
            |m| &m.backend_latency,
            &[kind, operation],
            started.elapsed().as_secs_f64(),
        );
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) if err.is_retryable() => "unavailable",
            Err(crate::BackendError::Internal { .. })
            | Err(crate::BackendError::Corrupt { .. }) => "error",
            // NotFound, AlreadyExists, CompareFailed...: answers, not faults.
            Err(_) => "refused",
        };
        jumpgate_telemetry::count(|m| &m.backend_requests, &[kind, operation, outcome]);
        result
    }
}

#[async_trait]
impl Backend for MeteredBackend {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn get(&self, key: &Key) -> Result<Item> {
        self.measure("get", self.inner.get(key)).await
    }
    async fn put(&self, item: NewItem) -> Result<Revision> {
        self.measure("put", self.inner.put(item)).await
    }
    async fn create(&self, item: NewItem) -> Result<Revision> {
        self.measure("create", self.inner.create(item)).await
    }
    async fn update(&self, item: NewItem) -> Result<Revision> {
        self.measure("update", self.inner.update(item)).await
    }
    async fn compare_and_swap(&self, expected: &[u8], item: NewItem) -> Result<Revision> {
        self.measure(
            "compare_and_swap",
            self.inner.compare_and_swap(expected, item),
        )
        .await
    }
    async fn conditional_update(&self, expected: Revision, item: NewItem) -> Result<Revision> {
        self.measure(
            "conditional_update",
            self.inner.conditional_update(expected, item),
        )
        .await
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.measure("delete", self.inner.delete(key)).await
    }
    async fn conditional_delete(&self, key: &Key, expected: Revision) -> Result<()> {
        self.measure(
            "conditional_delete",
            self.inner.conditional_delete(key, expected),
        )
        .await
    }
    async fn get_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Item>> {
        self.measure("get_range", self.inner.get_range(range, limit))
            .await
    }
    async fn delete_range(&self, range: &KeyRange) -> Result<u64> {
        self.measure("delete_range", self.inner.delete_range(range))
            .await
    }
    async fn keep_alive(&self, key: &Key, expires: SystemTime) -> Result<Revision> {
        self.measure("keep_alive", self.inner.keep_alive(key, expires))
            .await
    }
    async fn atomic_write(
        &self,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<Revision> {
        self.measure("atomic_write", self.inner.atomic_write(conditions, actions))
            .await
    }
    async fn watch(&self, prefixes: Vec<Key>) -> Result<Watcher> {
        self.measure("watch", self.inner.watch(prefixes)).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
