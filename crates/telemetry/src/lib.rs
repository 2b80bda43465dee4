//! The metrics an operator watches, recorded where things happen (the proxy's router, the
//! tunnels, the node's SSH service, the auth service, the audit log, the watch streams)
//! and the backend's requests, into one process-wide registry that the daemon serves on
//! `/metrics` ([`render`]).
//! Names follow Teleport's where it has one, with the `jumpgate_` prefix; docs/operations.md
//! lists them.
//!
//! Recording never fails and never panics: if the metrics could not be built (a bad name,
//! caught by the tests here), every recording is a no-op and the daemon says so once.

mod readiness;

pub use readiness::Readiness;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::sync::LazyLock;
use std::time::Duration;

/// Every metric, registered in [`Metrics::registry`].
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// Cluster-state backend requests, by backend, operation and outcome.
    pub backend_requests: IntCounterVec,
    /// Latency of cluster-state backend requests.
    pub backend_latency: HistogramVec,
    /// 1 while the cluster-state backend answers, 0 otherwise.
    pub backend_up: IntGauge,
    /// Connections to the proxy's public port, by route and how they ended.
    pub proxy_connections: IntCounterVec,
    /// Agents' reverse tunnels open on this proxy.
    pub reverse_tunnels: IntGauge,
    /// Proxy peering connections open on this proxy (dialled and accepted).
    pub peer_connections: IntGauge,
    /// Users' SSH connections this proxy relays now.
    pub proxy_ssh_sessions: IntGauge,
    /// Logged-in SSH connections on this node now.
    pub node_ssh_sessions: IntGauge,
    /// SSH logins to this node, by result.
    pub node_ssh_logins: IntCounterVec,
    /// Certificates the auth service issued, by kind.
    pub certificates_issued: IntCounterVec,
    /// Password (and second factor) logins, by result.
    pub user_logins: IntCounterVec,
    /// Audit events, by whether they were written.
    pub audit_events: IntCounterVec,
    /// `Watch` streams the auth service serves now, by kind.
    pub watch_streams: IntGaugeVec,
    /// Watch streams that had to start over (fell behind, or auth re-read its store).
    pub watch_resyncs: IntCounterVec,
    /// From auth sending a change to a proxy or node applying it.
    pub watch_delay: HistogramVec,
}

impl Metrics {
    fn build() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let metric = IntGauge::new(name, help)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let build_info = IntGauge::with_opts(
            Opts::new("jumpgate_build_info", "Always 1; labels carry the version.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        registry.register(Box::new(build_info))?;
        let start_time = gauge(
            "jumpgate_process_start_time_seconds",
            "When this daemon started, in Unix seconds.",
        )?;
        start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map(|since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        );
        let backend_requests = counter(
            "jumpgate_backend_requests_total",
            "Cluster-state backend requests, by operation and outcome.",
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
        registry.register(Box::new(backend_latency.clone()))?;
        let backend_up = gauge(
            "jumpgate_backend_up",
            "1 while the cluster-state backend answers, 0 otherwise.",
        )?;
        let proxy_connections = counter(
            "jumpgate_proxy_connections_total",
            "Connections to the proxy's public port, by route (auth, web, reversetunnel, ssh, \
             unknown, none) and result (served, refused, failed).",
            &["route", "result"],
        )?;
        let reverse_tunnels = gauge(
            "jumpgate_reverse_tunnels_connected",
            "Agents' reverse tunnels open on this proxy.",
        )?;
        let peer_connections = gauge(
            "jumpgate_proxy_peer_connections",
            "Proxy peering connections open on this proxy (dialled and accepted).",
        )?;
        let proxy_ssh_sessions = gauge(
            "jumpgate_proxy_ssh_sessions_active",
            "Users' SSH connections this proxy relays now.",
        )?;
        let node_ssh_sessions = gauge(
            "jumpgate_node_ssh_sessions_active",
            "Logged-in SSH connections on this node now.",
        )?;
        let node_ssh_logins = counter(
            "jumpgate_node_ssh_logins_total",
            "SSH logins to this node, by result (accepted, refused).",
            &["result"],
        )?;
        let certificates_issued = counter(
            "jumpgate_certificates_issued_total",
            "Certificates the auth service issued, by kind (user, host).",
            &["kind"],
        )?;
        let user_logins = counter(
            "jumpgate_user_logins_total",
            "User logins with a password, by result (success, failure).",
            &["result"],
        )?;
        let audit_events = counter(
            "jumpgate_audit_events_total",
            "Audit events, by result (written, failed).",
            &["result"],
        )?;
        let watch_streams = IntGaugeVec::new(
            Opts::new(
                "jumpgate_watch_streams",
                "Watch streams the auth service serves now, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(watch_streams.clone()))?;
        let watch_resyncs = counter(
            "jumpgate_watch_resyncs_total",
            "Watch streams that started over from a new snapshot, by kind.",
            &["kind"],
        )?;
        let watch_delay = HistogramVec::new(
            HistogramOpts::new(
                "jumpgate_watch_event_delay_seconds",
                "From the auth service sending a change to this proxy or node applying it.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["kind"],
        )?;
        registry.register(Box::new(watch_delay.clone()))?;
        Ok(Metrics {
            registry,
            backend_requests,
            backend_latency,
            backend_up,
            proxy_connections,
            reverse_tunnels,
            peer_connections,
            proxy_ssh_sessions,
            node_ssh_sessions,
            node_ssh_logins,
            certificates_issued,
            user_logins,
            audit_events,
            watch_streams,
            watch_resyncs,
            watch_delay,
        })
    }
}

static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| match Metrics::build() {
    Ok(metrics) => Some(metrics),
    Err(err) => {
        tracing::error!(%err, "cannot build the service metrics; they will not be exported");
        None
    }
});

/// The process's metrics (`None` only if they could not be built).
pub fn metrics() -> Option<&'static Metrics> {
    METRICS.as_ref()
}

/// Builds the metrics now, so `jumpgate_process_start_time_seconds` is the daemon's start;
/// says whether they could be built.
pub fn init() -> bool {
    metrics().is_some()
}

/// Every metric in the Prometheus text format, as `/metrics` serves it.
pub fn render() -> String {
    let Some(metrics) = metrics() else {
        return "# the metrics could not be built; see the daemon's log\n".to_string();
    };
    prometheus::TextEncoder::new()
        .encode_to_string(&metrics.registry.gather())
        .unwrap_or_else(|err| format!("# error encoding metrics: {err}\n"))
}

/// Sets a gauge.
pub fn set(pick: impl FnOnce(&Metrics) -> &IntGauge, value: i64) {
    if let Some(metrics) = metrics() {
        pick(metrics).set(value);
    }
}

/// Records one observation (seconds, bytes...) in a histogram with these label values.
pub fn observe(pick: impl FnOnce(&Metrics) -> &HistogramVec, labels: &[&str], value: f64) {
    if let Some(metrics) = metrics() {
        pick(metrics).with_label_values(labels).observe(value);
    }
}

/// Adds one to a counter with these label values.
pub fn count(pick: impl FnOnce(&Metrics) -> &IntCounterVec, labels: &[&str]) {
    if let Some(metrics) = metrics() {
        pick(metrics).with_label_values(labels).inc();
    }
}

/// Records how long a watched change took to arrive.
pub fn watch_delay(kind: &str, delay: Duration) {
    if let Some(metrics) = metrics() {
        metrics
            .watch_delay
            .with_label_values(&[kind])
            .observe(delay.as_secs_f64());
    }
}

/// One more of something that is open now; one less when dropped.
#[derive(Debug)]
pub struct Active(Option<IntGauge>);

impl Active {
    /// Counts one in the gauge `pick` chooses.
    pub fn new(pick: impl FnOnce(&Metrics) -> &IntGauge) -> Active {
        Active(metrics().map(|metrics| {
            let gauge = pick(metrics).clone();
            gauge.inc();
            gauge
        }))
    }

    /// Counts one in the gauge with these label values.
    pub fn labelled(pick: impl FnOnce(&Metrics) -> &IntGaugeVec, labels: &[&str]) -> Active {
        Active(metrics().map(|metrics| {
            let gauge = pick(metrics).with_label_values(labels);
            gauge.inc();
            gauge
        }))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use prometheus::Encoder;

    fn exported() -> String {
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&metrics().unwrap().registry.gather(), &mut text)
            .unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn the_metrics_build_and_record() {
        count(|m| &m.user_logins, &["failure"]);
        count(|m| &m.user_logins, &["failure"]);
        {
            let _open = Active::new(|m| &m.reverse_tunnels);
            let _watching = Active::labelled(|m| &m.watch_streams, &["role"]);
            let text = exported();
            assert!(
                text.contains("jumpgate_reverse_tunnels_connected 1"),
                "{text}"
            );
            assert!(
                text.contains("jumpgate_watch_streams{kind=\"role\"} 1"),
                "{text}"
            );
        }
        watch_delay("role", Duration::from_millis(3));
        let text = exported();
        assert!(
            text.contains("jumpgate_user_logins_total{result=\"failure\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("jumpgate_reverse_tunnels_connected 0"),
            "{text}"
        );
        assert!(
            text.contains("jumpgate_watch_event_delay_seconds_count{kind=\"role\"} 1"),
            "{text}"
        );
    }
}
