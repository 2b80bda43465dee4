//! Prometheus metrics the daemon exposes on `/metrics`, and the backend wrapper that
//! measures every cluster-state request (what an operator watches when HA "feels slow").

use async_trait::async_trait;
use jumpgate_backend::{
    Action, Backend, Condition, Item, Key, KeyRange, NewItem, Result, Revision, Watcher,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Every metric the daemon exports, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    backend_requests: IntCounterVec,
    backend_latency: HistogramVec,
    /// 1 while the cluster-state backend answers, 0 otherwise.
    pub backend_up: IntGauge,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let build_info = IntGauge::with_opts(
            Opts::new("jumpgate_build_info", "Always 1; labels carry the version.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        let start_time = IntGauge::new(
            "jumpgate_process_start_time_seconds",
            "When this daemon started, in Unix seconds.",
        )?;
        start_time.set(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        );
        let backend_requests = IntCounterVec::new(
            Opts::new(
                "jumpgate_backend_requests_total",
                "Cluster-state backend requests, by operation and outcome.",
            ),
            &["backend", "operation", "outcome"],
        )?;
        let backend_latency = HistogramVec::new(
            HistogramOpts::new(
                "jumpgate_backend_request_duration_seconds",
                "Latency of cluster-state backend requests.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["backend", "operation"],
        )?;
        let backend_up = IntGauge::new(
            "jumpgate_backend_up",
            "1 while the cluster-state backend answers, 0 otherwise.",
        )?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(start_time))?;
        registry.register(Box::new(backend_requests.clone()))?;
        registry.register(Box::new(backend_latency.clone()))?;
        registry.register(Box::new(backend_up.clone()))?;
        Ok(Metrics {
            registry,
            backend_requests,
            backend_latency,
            backend_up,
        })
    }

    /// The text exposition format served on `/metrics`.
    /// The daemon's metrics and the services' ([`jumpgate_telemetry`]), as one text.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        if let Some(services) = jumpgate_telemetry::metrics() {
            families.extend(services.registry.gather());
        }
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|err| format!("# error encoding metrics: {err}\n"))
    }
}

/// A [`Backend`] that records the latency and outcome of every request it forwards.
#[derive(Debug, Clone)]
pub struct MeteredBackend {
    inner: Arc<dyn Backend>,
    metrics: Metrics,
}

impl MeteredBackend {
    pub fn new(inner: Arc<dyn Backend>, metrics: Metrics) -> MeteredBackend {
        MeteredBackend { inner, metrics }
    }

    async fn measure<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = request.await;
        let kind = self.inner.kind();
        self.metrics
            .backend_latency
            .with_label_values(&[kind, operation])
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) if err.is_retryable() => "unavailable",
            Err(jumpgate_backend::BackendError::Internal { .. })
            | Err(jumpgate_backend::BackendError::Corrupt { .. }) => "error",
            // NotFound, AlreadyExists, CompareFailed...: answers, not faults.
            Err(_) => "refused",
        };
        self.metrics
            .backend_requests
            .with_label_values(&[kind, operation, outcome])
            .inc();
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
