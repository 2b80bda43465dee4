//! The PostgreSQL backend over TLS against a real server that only takes TLS connections
//! with a client certificate (`cert` authentication): libpq's `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` in the connection string, and every way a connection must fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use jumpgate_backend::{
    Backend, BackendError, Event, Key, NewItem, PostgresBackend, PostgresOptions,
};
use jumpgate_test_support::{PG_DATABASE, PG_USER, PgTls, Postgres};
use std::path::Path;
use std::time::Duration;

fn url(host: &str, server: &Postgres, params: &str) -> String {
    format!(
        "postgresql://{PG_USER}@{host}:{}/{PG_DATABASE}?{params}",
        server.port()
    )
}

fn verify_full(tls: &PgTls, root: &Path) -> String {
    format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        root.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    )
}

async fn connect(conn_string: String) -> Result<PostgresBackend, BackendError> {
    let mut options = PostgresOptions::new(conn_string);
    options.request_timeout = Duration::from_secs(5);
    PostgresBackend::connect(options).await
}

/// The whole path works over TLS: writes, reads and the watch (its listening connection
/// is a TLS connection too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_tls_connection_with_a_client_certificate_works_end_to_end() {
    let (server, tls) = Postgres::start_tls().await;
    let backend = connect(url("localhost", &server, &verify_full(&tls, &tls.ca)))
        .await
        .unwrap();
    let mut watcher = backend
        .watch(vec![Key::new("/tls/").unwrap()])
        .await
        .unwrap();
    assert!(matches!(watcher.next().await, Some(Ok(Event::Ready))));
    let key = Key::new("/tls/a").unwrap();
    backend
        .put(NewItem::new(key.clone(), b"over tls".to_vec()))
        .await
        .unwrap();
    assert_eq!(backend.get(&key).await.unwrap().value, b"over tls");
    let event = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("the watch saw nothing over TLS");
    assert!(matches!(event, Some(Ok(Event::Put(item))) if item.key == key));

    // The key=value form, too.
    let pairs = format!(
        "host=localhost port={} user={PG_USER} dbname={PG_DATABASE} sslmode=verify-full \
         sslrootcert='{}' sslcert='{}' sslkey='{}'",
        server.port(),
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let again = connect(pairs).await.unwrap();
    assert_eq!(again.get(&key).await.unwrap().value, b"over tls");
}

/// Each of these must fail, and say why: a server signed by a CA we do not trust, a
/// server whose name is not the one we dialled, no client certificate, no TLS at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_cannot_be_verified_or_authenticated_fail_clearly() {
    let (server, tls) = Postgres::start_tls().await;

    let untrusted = connect(url("localhost", &server, &verify_full(&tls, &tls.other_ca)))
        .await
        .unwrap_err();
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");

    // 127.0.0.1 is not in the server's certificate: verify-full refuses it ...
    let wrong_name = connect(url("127.0.0.1", &server, &verify_full(&tls, &tls.ca)))
        .await
        .unwrap_err();
    assert!(
        wrong_name.to_string().contains("certificate"),
        "{wrong_name}"
    );
    // ... and verify-ca, which checks the chain only, accepts it.
    let chain_only = verify_full(&tls, &tls.ca).replace("verify-full", "verify-ca");
    connect(url("127.0.0.1", &server, &chain_only))
        .await
        .unwrap();

    // The server wants a client certificate.
    let no_client_cert = format!("sslmode=verify-full&sslrootcert={}", tls.ca.display());
    let err = connect(url("localhost", &server, &no_client_cert))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(PG_USER) || err.to_string().contains("certificate"),
        "{err}"
    );

    // And TLS itself: a plain connection finds no pg_hba entry.
    let plain = connect(url("localhost", &server, "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(plain.to_string().contains("pg_hba"), "{plain}");
}
