//! CA rotation: new keys sign at once, old keys stay trusted until their grace period
//! ends (and not after), a zero grace retires them at once, and every auth server on
//! the backend follows a rotation made by another.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_audit::{AuditLog, SqliteAuditLog};
use jumpgate_auth::service::{AuthServer, AuthServerConfig};
use jumpgate_auth::{AuthError, AuthorityType, ClusterAuthorities, SecondFactor, StateCache};
use jumpgate_backend::{Backend, Key, MemoryBackend};
use jumpgate_pki::{IdentityKind, TlsCertParams, TlsIdentity, cert_pem_to_der};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);

async fn cluster() -> (Arc<dyn Backend>, ClusterAuthorities, SystemTime) {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let now = SystemTime::now();
    let cas = ClusterAuthorities::load_or_create(backend.as_ref(), "prod", now)
        .await
        .unwrap();
    (backend, cas, now)
}

/// A node identity signed by the active TLS CA of `cas`, as DER.
fn node_identity(cas: &ClusterAuthorities, now: SystemTime) -> Vec<u8> {
    let (_, public_key_pem) = jumpgate_pki::generate_tls_key().unwrap();
    let pem = cas
        .tls
        .issue(
            &TlsCertParams {
                identity: TlsIdentity {
                    cluster: "prod".to_string(),
                    kind: IdentityKind::Node,
                    name: "node-1".to_string(),
                    roles: vec![],
                },
                public_key_pem,
                dns_names: vec![],
                ip_addresses: vec![],
                ttl: 48 * HOUR,
            },
            now,
        )
        .unwrap();
    cert_pem_to_der(&pem).unwrap()
}

#[tokio::test]
async fn old_keys_stay_trusted_for_the_grace_period_only() {
    let (backend, before, now) = cluster().await;
    let old_node = node_identity(&before, now);
    let rotated =
        ClusterAuthorities::rotate(backend.as_ref(), "prod", &AuthorityType::ALL, 2 * HOUR, now)
            .await
            .unwrap();

    // New keys sign...
    assert_ne!(rotated.user.fingerprint(), before.user.fingerprint());
    assert_ne!(rotated.host.fingerprint(), before.host.fingerprint());
    assert_ne!(rotated.tls.ca_pin(), before.tls.ca_pin());
    // ...and the old ones are still trusted and exported.
    assert_eq!(
        rotated.user.trusted_fingerprints(),
        vec![rotated.user.fingerprint(), before.user.fingerprint()]
    );
    assert_eq!(rotated.user.export_openssh().unwrap().lines().count(), 2);
    let known_hosts = rotated.host.export_openssh().unwrap();
    assert_eq!(known_hosts.matches("@cert-authority *").count(), 2);
    assert_eq!(
        rotated.tls.trusted_pins(),
        vec![rotated.tls.ca_pin(), before.tls.ca_pin()]
    );
    assert_eq!(rotated.tls_cross_certs.len(), 1);
    assert_eq!(rotated.tls.verify(&old_node, now).unwrap().name, "node-1");
    assert_eq!(rotated.next_trust_change(), Some(now_plus(now, 2 * HOUR)));
    for state in &rotated.rotations {
        assert_eq!(state.previous.len(), 1, "{state:?}");
        assert!(state.last_rotated.is_some());
    }

    // Every auth server loading now sees the same.
    let reloaded = ClusterAuthorities::load(backend.as_ref(), "prod", now)
        .await
        .unwrap();
    assert!(reloaded.same_trust(&rotated));

    // After the grace period only the new keys remain.
    let later = now + 2 * HOUR + Duration::from_secs(1);
    let after = ClusterAuthorities::load(backend.as_ref(), "prod", later)
        .await
        .unwrap();
    assert_eq!(
        after.user.trusted_fingerprints(),
        vec![rotated.user.fingerprint()]
    );
    assert_eq!(
        after.host.trusted_fingerprints(),
        vec![rotated.host.fingerprint()]
    );
    assert_eq!(after.tls.trusted_pins(), vec![rotated.tls.ca_pin()]);
    assert!(after.tls_cross_certs.is_empty());
    assert_eq!(after.next_trust_change(), None);
    assert_eq!(
        after.tls.verify(&old_node, later).unwrap_err(),
        jumpgate_pki::TlsCertError::UntrustedCa
    );
    // The keys that sign did not change by loading later.
    assert_eq!(after.user.fingerprint(), rotated.user.fingerprint());
}

fn now_plus(now: SystemTime, by: Duration) -> SystemTime {
    // Stored with one-second precision.
    let secs = (now + by)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test]
async fn a_second_rotation_keeps_earlier_keys_but_never_longer_and_zero_retires_all() {
    let (backend, first, now) = cluster().await;
    let second = ClusterAuthorities::rotate(
        backend.as_ref(),
        "prod",
        &[AuthorityType::User],
        10 * HOUR,
        now,
    )
    .await
    .unwrap();
    // Only the user CA changed.
    assert_eq!(second.host.fingerprint(), first.host.fingerprint());
    assert_eq!(second.tls.ca_pin(), first.tls.ca_pin());

    let third =
        ClusterAuthorities::rotate(backend.as_ref(), "prod", &[AuthorityType::User], HOUR, now)
            .await
            .unwrap();
    assert_eq!(
        third.user.trusted_fingerprints(),
        vec![
            third.user.fingerprint(),
            second.user.fingerprint(),
            first.user.fingerprint()
        ]
    );
    // The first key's 10 h were cut to the new 1 h.
    let user = &third.rotations[0];
    assert_eq!(user.authority, AuthorityType::User);
    assert!(
        user.previous
            .iter()
            .all(|(_, until)| *until == now_plus(now, HOUR)),
        "{user:?}"
    );

    // Two TLS rotations in a row: a peer of the first CA reaches the newest one
    // through both cross certificates, in order.
    let tls2 =
        ClusterAuthorities::rotate(backend.as_ref(), "prod", &[AuthorityType::Tls], HOUR, now)
            .await
            .unwrap();
    let tls3 =
        ClusterAuthorities::rotate(backend.as_ref(), "prod", &[AuthorityType::Tls], HOUR, now)
            .await
            .unwrap();
    assert_eq!(tls3.tls_cross_certs.len(), 2);
    assert_eq!(
        tls3.tls.trusted_pins(),
        vec![tls3.tls.ca_pin(), tls2.tls.ca_pin(), first.tls.ca_pin()]
    );

    // A zero grace retires every earlier key at once.
    let emergency = ClusterAuthorities::rotate(
        backend.as_ref(),
        "prod",
        &AuthorityType::ALL,
        Duration::ZERO,
        now,
    )
    .await
    .unwrap();
    assert_eq!(emergency.user.trusted_fingerprints().len(), 1);
    assert_eq!(emergency.host.trusted_fingerprints().len(), 1);
    assert_eq!(emergency.tls.trusted_pins().len(), 1);
    assert!(emergency.tls_cross_certs.is_empty());
    assert_eq!(emergency.next_trust_change(), None);
}

#[tokio::test]
async fn bad_rotation_requests_are_refused_and_change_nothing() {
    let (backend, before, now) = cluster().await;
    let err = ClusterAuthorities::rotate(
        backend.as_ref(),
        "prod",
        &[AuthorityType::User],
        Duration::from_secs(31 * 24 * 3600),
        now,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, AuthError::InvalidRequest(message) if message.contains("maximum")),
        "{err}"
    );
    let err = AuthorityType::parse_list("users").unwrap_err();
    assert!(err.to_string().contains("user, host, tls or all"), "{err}");
    let unchanged = ClusterAuthorities::load(backend.as_ref(), "prod", now)
        .await
        .unwrap();
    assert!(unchanged.same_trust(&before));

    // A CA record damaged in the backend is reported, not rotated over.
    let host_key = Key::new("/authorities/host/prod").unwrap();
    let intact = backend.get(&host_key).await.unwrap().value;
    backend
        .put(jumpgate_backend::NewItem::new(
            Key::new("/authorities/host/prod").unwrap(),
            b"{\"kind\":\"cert_authority\"}".to_vec(),
        ))
        .await
        .unwrap();
    let err = ClusterAuthorities::rotate(backend.as_ref(), "prod", &AuthorityType::ALL, HOUR, now)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::CorruptAuthority { .. }), "{err}");
    // The user CA was not rotated either: one atomic write for all three, or none.
    backend
        .put(jumpgate_backend::NewItem::new(host_key, intact))
        .await
        .unwrap();
    let user_rotated =
        ClusterAuthorities::rotate(backend.as_ref(), "prod", &[AuthorityType::User], HOUR, now)
            .await
            .unwrap();
    assert_eq!(
        user_rotated.user.trusted_fingerprints()[1],
        before.user.fingerprint()
    );
}

async fn auth_server(backend: Arc<dyn Backend>, dir: &std::path::Path, name: &str) -> AuthServer {
    let authorities =
        ClusterAuthorities::load_or_create(backend.as_ref(), "prod", SystemTime::now())
            .await
            .unwrap();
    let audit: Arc<dyn AuditLog> = Arc::new(
        SqliteAuditLog::open(dir.join(format!("{name}.db")))
            .await
            .unwrap(),
    );
    let prefixes = AuthServer::CACHED_PREFIXES
        .iter()
        .map(|prefix| Key::new(*prefix).unwrap())
        .collect();
    let cache = StateCache::start(backend.clone(), prefixes);
    cache.wait_ready(Duration::from_secs(10)).await.unwrap();
    let recordings = jumpgate_audit::FileRecordingStore::open(dir.join(format!("{name}-sessions")))
        .await
        .unwrap();
    AuthServer::new(AuthServerConfig {
        backend,
        audit,
        recordings: Arc::new(recordings),
        authorities,
        cache,
        second_factor: SecondFactor::Otp,
        webauthn: None,
        static_tokens: Vec::new(),
        tunnel_strategy: Default::default(),
        web_idle_timeout: Duration::from_secs(600),
        sso: jumpgate_auth::service::SsoSettings::default(),
    })
}

/// Two auth servers on one backend: a rotation through one reaches the other by the
/// backend's watch, and the end of the grace period reaches it by its timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_server_follows_a_rotation_and_the_end_of_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let first = auth_server(backend.clone(), dir.path(), "first").await;
    let second = auth_server(backend.clone(), dir.path(), "second").await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let second = second.clone();
        tokio::spawn(async move {
            second
                .follow_authorities(async move {
                    let _ = stop_rx.await;
                })
                .await;
        })
    };
    let mut changes = second.subscribe_authorities();
    let before = second.authorities();

    // Rotated through the first server's backend handle, with a grace of 2 s.
    let rotated = ClusterAuthorities::rotate(
        backend.as_ref(),
        "prod",
        &[AuthorityType::User],
        Duration::from_secs(2),
        SystemTime::now(),
    )
    .await
    .unwrap();
    first.reload_authorities(SystemTime::now()).await.unwrap();
    assert_eq!(
        first.authorities().user.fingerprint(),
        rotated.user.fingerprint()
    );

    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            changes.changed().await.unwrap();
            if changes.borrow_and_update().user.fingerprint() == rotated.user.fingerprint() {
                break;
            }
        }
    })
    .await
    .expect("the second auth server did not follow the rotation");
    assert_eq!(
        second.authorities().user.trusted_fingerprints(),
        vec![rotated.user.fingerprint(), before.user.fingerprint()]
    );

    // When the grace period ends, the old key goes without any write.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            changes.changed().await.unwrap();
            if changes
                .borrow_and_update()
                .user
                .trusted_fingerprints()
                .len()
                == 1
            {
                break;
            }
        }
    })
    .await
    .expect("the old key outlived its grace period");
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("follow_authorities did not stop at shutdown")
        .unwrap();
}
