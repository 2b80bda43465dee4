//! The cluster's CAs in the backend: created once, even by racing auth servers, and
//! loaded unchanged on every later start.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_auth::{AuthError, ClusterAuthorities};
use jumpgate_backend::{
    Backend, EtcdBackend, EtcdOptions, Key, MemoryBackend, NewItem, SqliteBackend, SqliteOptions,
};
use jumpgate_test_support::EtcdServer;
use std::sync::Arc;
use std::time::SystemTime;

/// (user CA fingerprint, host CA fingerprint, TLS CA pin)
fn identity_of(cas: &ClusterAuthorities) -> (String, String, String) {
    (
        cas.user.fingerprint().to_string(),
        cas.host.fingerprint().to_string(),
        cas.tls.ca_pin(),
    )
}

/// Starts `n` auth servers at once, each with its own backend handle.
async fn race(backends: Vec<Arc<dyn Backend>>) -> Vec<(String, String, String)> {
    let mut tasks = Vec::new();
    for backend in backends {
        tasks.push(tokio::spawn(async move {
            let cas =
                ClusterAuthorities::load_or_create(backend.as_ref(), "prod", SystemTime::now())
                    .await
                    .unwrap();
            identity_of(&cas)
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen
}

fn assert_all_equal(seen: &[(String, String, String)]) {
    assert!(
        seen.windows(2).all(|pair| pair[0] == pair[1]),
        "auth servers disagree: {seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_auth_servers_agree_on_one_set_of_cas_memory() {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let seen = race(vec![backend.clone(); 6]).await;
    assert_all_equal(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_auth_servers_agree_on_one_set_of_cas_etcd() {
    let server = EtcdServer::start().await;
    // Separate clients, as separate auth processes would have.
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    for _ in 0..4 {
        let options = EtcdOptions::new(vec![server.endpoint()], "/jumpgate/");
        backends.push(Arc::new(EtcdBackend::connect(options).await.unwrap()));
    }
    let seen = race(backends).await;
    assert_all_equal(&seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_survive_a_restart_and_the_name_cannot_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sqlite.db");
    let first = {
        let backend = SqliteBackend::open(SqliteOptions::new(&path))
            .await
            .unwrap();
        let seen = race(vec![Arc::new(backend.clone()) as Arc<dyn Backend>; 3]).await;
        assert_all_equal(&seen);
        seen[0].clone()
    };
    let backend = SqliteBackend::open(SqliteOptions::new(&path))
        .await
        .unwrap();
    let again = ClusterAuthorities::load_or_create(&backend, "prod", SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        identity_of(&again),
        first,
        "a restart must keep the cluster's CAs"
    );

    let err = ClusterAuthorities::load_or_create(&backend, "staging", SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::ClusterNameChanged { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("auth_service.cluster_name") && message.contains("\"prod\""),
        "{message}"
    );
}

#[tokio::test]
async fn damaged_or_missing_cas_are_reported_not_replaced() {
    let backend = MemoryBackend::new();
    ClusterAuthorities::load_or_create(&backend, "prod", SystemTime::now())
        .await
        .unwrap();
    let host_key = Key::new("/authorities/host/prod").unwrap();

    backend
        .put(NewItem::new(host_key.clone(), b"{not json".to_vec()))
        .await
        .unwrap();
    let err = ClusterAuthorities::load_or_create(&backend, "prod", SystemTime::now())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::CorruptAuthority { .. }), "{err}");
    assert!(err.to_string().contains("/authorities/host/prod"), "{err}");

    // A user CA stored under the host key is refused, not used for hosts.
    let user = backend
        .get(&Key::new("/authorities/user/prod").unwrap())
        .await
        .unwrap();
    backend
        .put(NewItem::new(host_key.clone(), user.value))
        .await
        .unwrap();
    let err = ClusterAuthorities::load_or_create(&backend, "prod", SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("expected a host cert_authority"),
        "{err}"
    );

    backend.delete(&host_key).await.unwrap();
    let err = ClusterAuthorities::load_or_create(&backend, "prod", SystemTime::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    // Nothing was regenerated behind the operator's back.
    assert!(backend.get(&host_key).await.unwrap_err().is_not_found());
}
