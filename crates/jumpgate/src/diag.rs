//! The diagnostics listener (`diag_addr`): `/healthz` (the process is alive),
//! `/readyz` (every component is ready: 503 with the reasons otherwise) and Prometheus
//! `/metrics`. Plain HTTP on purpose: it carries no secrets and is meant for the local
//! monitoring agent; bind it to loopback or a private network.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
pub use jumpgate_telemetry::Readiness;

#[derive(Debug, Clone)]
struct DiagState {
    readiness: Readiness,
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(DiagState { readiness })
}

async fn readyz(State(state): State<DiagState>) -> impl IntoResponse {
    let snapshot = state.readiness.snapshot();
    let ready = snapshot.values().all(Option::is_none);
    let checks: serde_json::Map<String, serde_json::Value> = snapshot
        .into_iter()
        .map(|(component, problem)| {
            let value = match problem {
                None => serde_json::json!({"status": "ok"}),
                Some(why) => serde_json::json!({"status": "not ready", "reason": why}),
            };
            (component.to_string(), value)
        })
        .collect();
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "not ready" },
        "checks": checks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

async fn metrics_text() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        jumpgate_telemetry::render(),
    )
}
