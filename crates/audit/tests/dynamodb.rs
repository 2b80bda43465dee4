//! The DynamoDB audit store against moto's server mode, an emulator of DynamoDB (the real
//! service cannot run here), one fresh emulator per check: the shared audit-store suite with
//! two separate clients (two auth servers), plus what only this store shows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use jumpgate_audit::conformance::AuditLogs;
use jumpgate_audit::{
    AuditEvent, DynamoAuditLog, DynamoAuditTarget, Error, EventType, SearchQuery, Timestamp,
};
use jumpgate_test_support::{
    DynamoEmulator, EMULATOR_ACCESS_KEY_ID, EMULATOR_REGION, EMULATOR_SECRET_ACCESS_KEY,
};

fn target(emulator: &DynamoEmulator) -> DynamoAuditTarget {
    DynamoAuditTarget::parse(&format!(
        "dynamodb://jumpgate-audit?region={EMULATOR_REGION}&endpoint={}",
        emulator.endpoint()
    ))
    .unwrap()
}

async fn open(emulator: &DynamoEmulator) -> DynamoAuditLog {
    DynamoAuditLog::open_with(
        target(emulator),
        Some((
            EMULATOR_ACCESS_KEY_ID.to_string(),
            EMULATOR_SECRET_ACCESS_KEY.to_string(),
        )),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

async fn dynamodb() -> (AuditLogs, DynamoEmulator) {
    let emulator = DynamoEmulator::start().await;
    let logs = AuditLogs {
        first: Arc::new(open(&emulator).await),
        second: Arc::new(open(&emulator).await),
    };
    (logs, emulator)
}

jumpgate_audit::audit_store_suite!(dynamodb());

/// A search over all of history reads only the days that hold events (it would otherwise
/// query millions of empty days), in both orders, across day boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_all_of_history_reads_only_days_with_events() {
    let (logs, _emulator) = dynamodb().await;
    let at = |rfc3339: &str| Timestamp::parse_rfc3339(rfc3339).unwrap();
    let times = [
        "1999-12-31T23:59:59.999Z",
        "2000-01-01T00:00:00Z",
        "2026-12-07T01:00:00Z",
    ];
    for time in times {
        logs.first
            .append(AuditEvent::success(EventType::UserLogin).at(at(time)))
            .await
            .unwrap();
    }
    let everything = SearchQuery::new(at("0000-01-01T00:00:00Z"), at("9999-12-31T23:59:59Z"));
    let started = std::time::Instant::now();
    let page = logs.second.search(everything.clone()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let got: Vec<_> = page.events.iter().map(|e| e.time()).collect();
    assert_eq!(got, times.map(at));
    let page = logs
        .second
        .search(everything.order(jumpgate_audit::Order::Descending).limit(2))
        .await
        .unwrap();
    let got: Vec<_> = page.events.iter().map(|e| e.time()).collect();
    assert_eq!(got, [at(times[2]), at(times[1])]);
    assert!(page.next_cursor.is_some());
}

/// moto checking credentials against its (empty) IAM: every key is refused, and the error
/// says to check the credentials.
#[tokio::test]
async fn refused_credentials_are_named_as_such() {
    let emulator = DynamoEmulator::start_checking_credentials().await;
    let err = DynamoAuditLog::open_with(
        target(&emulator),
        Some(("AKIDNOTAKEY".to_string(), "not-the-secret".to_string())),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Refused { .. }), "{text}");
    assert!(text.contains("credentials"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
}

#[tokio::test]
async fn an_endpoint_where_nothing_listens_is_unavailable_and_named() {
    let port = jumpgate_test_support::free_port();
    let target = DynamoAuditTarget::parse(&format!(
        "dynamodb://jumpgate-audit?region={EMULATOR_REGION}&endpoint=http://127.0.0.1:{port}"
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let err = DynamoAuditLog::open_with(
        target,
        Some(("AKIDX".to_string(), "secret".to_string())),
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}
