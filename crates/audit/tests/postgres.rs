//! The PostgreSQL audit store against a real PostgreSQL server (Debian's `postgresql`), one
//! fresh private cluster per check: the shared audit-store suite with two separate
//! connections (two auth servers), plus what only a networked store can show.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jumpgate_audit::conformance::AuditLogs;
use jumpgate_audit::{
    AuditEvent, AuditLog, Error, EventType, PostgresAuditLog, SearchQuery, Timestamp,
};
use jumpgate_test_support::Postgres;

fn uri(server: &Postgres) -> String {
    // The password in the URI, as an operator may write it (it is never printed).
    server
        .conn_string()
        .replacen("@", &format!(":{}@", server.password()), 1)
}

async fn postgres() -> (AuditLogs, Postgres) {
    let server = Postgres::start().await;
    let first = PostgresAuditLog::open(&uri(&server)).await.unwrap();
    let second = PostgresAuditLog::open(&uri(&server)).await.unwrap();
    let logs = AuditLogs {
        first: Arc::new(first),
        second: Arc::new(second),
    };
    (logs, server)
}

jumpgate_audit::audit_store_suite!(postgres());

fn all_time() -> SearchQuery {
    SearchQuery::new(
        Timestamp::from_unix_millis(0).unwrap(),
        Timestamp::from_unix_millis(4_000_000_000_000).unwrap(),
    )
}

/// The server restarts under a running auth server: appends fail clearly while it is down
/// (naming the server, never the password), and work again by themselves afterwards,
/// with nothing lost that was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_and_loses_nothing() {
    let mut server = Postgres::start().await;
    let log = PostgresAuditLog::open_with(&uri(&server), None, Duration::from_secs(2))
        .await
        .unwrap();
    let before = AuditEvent::success(EventType::UserLogin).user("alice");
    log.append(before.clone()).await.unwrap();

    server.stop().await;
    let started = Instant::now();
    let err = log
        .append(AuditEvent::success(EventType::UserLogin).user("bob"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(matches!(err, Error::Unavailable { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port())),
        "{text}"
    );
    assert!(!text.contains(server.password()), "{text}");

    server.start_again().await;
    let after = AuditEvent::success(EventType::UserLogin).user("carol");
    log.append(after.clone()).await.unwrap();
    let page = log.search(all_time()).await.unwrap();
    assert_eq!(page.events, vec![before, after]);
}

/// A wrong password is refused at open with a message that says to check the credentials,
/// and does not repeat the password.
#[tokio::test]
async fn wrong_credentials_are_named_as_such() {
    let server = Postgres::start().await;
    let wrong = server.conn_string().replacen("@", ":not-the-password@", 1);
    let err = PostgresAuditLog::open(&wrong).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Refused { .. }), "{text}");
    assert!(text.contains("password"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}

#[tokio::test]
async fn a_bad_uri_is_refused_without_repeating_it() {
    for bad in [
        "postgresql://u:s3cret@host:notaport/db",
        "postgresql://u:s3cret@db/j?unknown_option=1",
        "postgresql://u:s3cret@db/j?sslmode=prefer",
    ] {
        let err = PostgresAuditLog::open(bad).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidPostgresUri { .. }),
            "{bad}: {err}"
        );
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}

/// A user name with a NUL byte (which PostgreSQL text cannot hold) is still recorded and
/// found: an attacker cannot make the audit write fail, and so refuse every action, with it.
#[tokio::test]
async fn a_nul_in_a_user_name_is_stored_and_found() {
    let (logs, _server) = postgres().await;
    let e = AuditEvent::failure(EventType::UserLogin, "bad password").user("ev\0il");
    logs.first.append(e.clone()).await.unwrap();
    let page = logs.second.search(all_time().user("ev\0il")).await.unwrap();
    assert_eq!(page.events, vec![e]);
}

/// Teleport's usual form for a PostgreSQL audit log: TLS with a client certificate, the
/// server verified by name against a private CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_go_over_verified_tls_with_a_client_certificate() {
    let (server, tls) = Postgres::start_tls().await;
    let uri = format!(
        "postgresql://{}@localhost:{}/{}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        jumpgate_test_support::PG_USER,
        server.port(),
        jumpgate_test_support::PG_DATABASE,
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let log = PostgresAuditLog::open(&uri).await.unwrap();
    let e = AuditEvent::success(EventType::SessionStart).user("tls-user");
    log.append(e.clone()).await.unwrap();
    assert_eq!(log.search(all_time()).await.unwrap().events, vec![e]);

    let untrusted = uri.replace(
        &tls.ca.display().to_string(),
        &tls.other_ca.display().to_string(),
    );
    let err = PostgresAuditLog::open(&untrusted).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}
