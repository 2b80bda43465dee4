//! Join tokens and signup tokens: who may join as what, single-use invites, and that no
//! token value ever reaches a listing, an error or the audit log.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_audit::{
    AuditEvent, AuditLog, BoxFuture, Page, SearchQuery, SqliteAuditLog, Timestamp,
};
use jumpgate_auth::{AuthError, JoinError, SignupError, Tokens};
use jumpgate_backend::{Backend, Key, KeyRange, MemoryBackend};
use jumpgate_types::config::{JoinRole, Secret, StaticToken};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};

const STATIC_VALUE: &str = "static-proxy-and-node-secret-value";
const HOUR: Duration = Duration::from_secs(3600);
const ADDR: Option<&str> = Some("192.0.2.7:40000");

struct Fixture {
    backend: MemoryBackend,
    audit: SqliteAuditLog,
    statics: Vec<StaticToken>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let audit = SqliteAuditLog::open(dir.path().join("audit.db"))
        .await
        .unwrap();
    Fixture {
        backend: MemoryBackend::new(),
        audit,
        statics: vec![StaticToken {
            roles: vec![JoinRole::Proxy, JoinRole::Node],
            token: Secret::new(STATIC_VALUE),
        }],
        _dir: dir,
    }
}

impl Fixture {
    fn tokens(&self) -> Tokens<'_> {
        Tokens {
            backend: &self.backend,
            audit: &self.audit,
            static_tokens: &self.statics,
        }
    }

    /// Every audit event as JSON, oldest first.
    async fn events(&self) -> Vec<serde_json::Value> {
        let query = SearchQuery::new(
            Timestamp::from_unix_millis(0).unwrap(),
            // 2100-01-01: after every event of these tests.
            Timestamp::from_unix_millis(4_102_444_800_000).unwrap(),
        )
        .limit(1000);
        let page = self.audit.search(query).await.unwrap();
        page.events
            .iter()
            .map(|e| serde_json::from_str(&e.to_json().unwrap()).unwrap())
            .collect()
    }

    /// (event, success, token_id) of every event of type `name`.
    async fn events_of(&self, name: &str) -> Vec<(bool, Option<String>, serde_json::Value)> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e["event"] == name)
            .map(|e| {
                (
                    e["success"].as_bool().unwrap(),
                    e["token_id"].as_str().map(str::to_string),
                    e,
                )
            })
            .collect()
    }

    /// Every stored key, to show that a refusal changed nothing.
    async fn state(&self) -> Vec<(Key, Vec<u8>)> {
        self.backend
            .get_range(&KeyRange::prefix("/").unwrap(), None)
            .await
            .unwrap()
            .into_iter()
            .map(|item| (item.key, item.value))
            .collect()
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn static_id() -> String {
    format!("static:{}", &sha256_hex(STATIC_VALUE)[..8])
}

#[tokio::test]
async fn a_new_token_lets_a_node_join_again_and_again_and_is_audited() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let issued = tokens
        .create(&[JoinRole::Node], Tokens::DEFAULT_TTL, now)
        .await
        .unwrap();
    assert_eq!(issued.token.len(), 64);
    assert!(issued.token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(issued.id, sha256_hex(&issued.token)[..16]);
    assert_eq!(issued.roles, [JoinRole::Node]);
    let expected = now + Tokens::DEFAULT_TTL;
    let skew = expected.duration_since(issued.expires).unwrap();
    assert!(skew < Duration::from_millis(1), "{skew:?}");

    for _ in 0..2 {
        tokens
            .check_join(&issued.token, JoinRole::Node, "web-1", ADDR, now)
            .await
            .unwrap();
    }

    let created = f.events_of("join_token.create").await;
    assert_eq!(created.len(), 1);
    assert!(created[0].0);
    assert_eq!(created[0].1.as_deref(), Some(issued.id.as_str()));
    assert_eq!(created[0].2["roles"], serde_json::json!(["node"]));
    let joins = f.events_of("instance.join").await;
    assert_eq!(joins.len(), 2);
    for (success, id, event) in &joins {
        assert!(success);
        assert_eq!(id.as_deref(), Some(issued.id.as_str()));
        assert_eq!(event["node_name"], "web-1");
        assert_eq!(event["role"], "node");
        assert_eq!(event["addr.remote"], "192.0.2.7:40000");
    }
}

#[tokio::test]
async fn the_store_keeps_only_the_hash_in_teleports_shape() {
    let f = fixture().await;
    let now = SystemTime::now();
    let issued = f
        .tokens()
        .create(
            &[JoinRole::Node, JoinRole::Proxy, JoinRole::Node],
            HOUR,
            now,
        )
        .await
        .unwrap();
    assert_eq!(issued.roles, [JoinRole::Node, JoinRole::Proxy]);
    let state = f.state().await;
    assert_eq!(state.len(), 1);
    let (key, value) = &state[0];
    assert_eq!(
        key.as_str(),
        format!("/tokens/{}", sha256_hex(&issued.token))
    );
    let text = String::from_utf8(value.clone()).unwrap();
    assert!(!text.contains(&issued.token), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["kind"], "token");
    assert_eq!(json["version"], "v2");
    assert_eq!(json["metadata"]["name"], issued.id.as_str());
    assert_eq!(
        json["spec"],
        serde_json::json!({"roles": ["node", "proxy"], "join_method": "token"})
    );
    let expires = Timestamp::parse_rfc3339(json["metadata"]["expires"].as_str().unwrap()).unwrap();
    let issued_ms = issued
        .expires
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert_eq!(i128::from(expires.unix_millis()), issued_ms as i128);
    let item = f.backend.get(key).await.unwrap();
    assert_eq!(item.expires, Some(issued.expires));
}

#[tokio::test]
async fn a_token_for_another_role_is_refused() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let issued = tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();
    let err = tokens
        .check_join(&issued.token, JoinRole::Proxy, "proxy-1", ADDR, now)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JoinError::RoleNotAllowed(role) if role == "proxy"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("`jctl tokens add --type proxy`"),
        "{err}"
    );
    let joins = f.events_of("instance.join").await;
    assert_eq!(joins.len(), 1);
    assert!(!joins[0].0);
    assert_eq!(joins[0].1.as_deref(), Some(issued.id.as_str()));
    assert_eq!(joins[0].2["role"], "proxy");
}

#[tokio::test]
async fn an_expired_token_is_refused_and_no_longer_listed() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let issued = tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();
    let later = now + HOUR + Duration::from_secs(1);
    let err = tokens
        .check_join(&issued.token, JoinRole::Node, "web-1", ADDR, later)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::InvalidToken), "{err:?}");
    // Valid until the last millisecond before its expiry, not at it.
    let err = tokens
        .check_join(&issued.token, JoinRole::Node, "web-1", ADDR, issued.expires)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::InvalidToken), "{err:?}");
    tokens
        .check_join(
            &issued.token,
            JoinRole::Node,
            "web-1",
            ADDR,
            issued.expires - Duration::from_millis(1),
        )
        .await
        .unwrap();
    let listed = tokens.list(later).await.unwrap();
    assert!(listed.iter().all(|t| t.id != issued.id), "{listed:?}");
    let joins = f.events_of("instance.join").await;
    // In event time order: just before expiry, at expiry, after.
    let outcomes: Vec<bool> = joins.iter().map(|j| j.0).collect();
    assert_eq!(outcomes, [true, false, false]);
}

#[tokio::test]
async fn garbage_and_unknown_tokens_are_refused_alike_and_change_nothing() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let issued = tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();
    let before = f.state().await;
    let unknown = "ab".repeat(32);
    let upper_wrong = "Z".repeat(64);
    let huge = "x".repeat(10 * 1024);
    let last = if issued.token.ends_with('0') {
        '1'
    } else {
        '0'
    };
    let near_miss = format!("{}{last}", &issued.token[..63]);
    let multibyte = format!("{}é", &issued.token[..62]);
    let garbage: [&str; 8] = [
        "",
        "a",
        &upper_wrong,
        &huge,
        &unknown,
        &near_miss,
        &multibyte,
        &issued.id,
    ];
    for token in garbage {
        let err = tokens
            .check_join(token, JoinRole::Node, "web-1", None, now)
            .await
            .unwrap_err();
        assert!(
            matches!(err, JoinError::InvalidToken),
            "{:?}: {err:?}",
            token.get(..20)
        );
        assert_eq!(
            err.to_string(),
            "the join token is invalid or has expired; make a new one with `jctl tokens add --type node`"
        );
    }
    assert_eq!(f.state().await, before);
    let joins = f.events_of("instance.join").await;
    assert_eq!(joins.len(), garbage.len());
    assert!(joins.iter().all(|(ok, id, _)| !ok && id.is_none()));
    // The issued token is in upper case too: the same token.
    tokens
        .check_join(
            &issued.token.to_uppercase(),
            JoinRole::Node,
            "web-1",
            None,
            now,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_static_token_joins_for_its_roles_only() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    for role in [JoinRole::Proxy, JoinRole::Node] {
        tokens
            .check_join(STATIC_VALUE, role, "host-1", ADDR, now)
            .await
            .unwrap();
    }
    // Static tokens do not expire.
    let far = now + Duration::from_secs(10 * 365 * 24 * 3600);
    tokens
        .check_join(STATIC_VALUE, JoinRole::Node, "host-1", ADDR, far)
        .await
        .unwrap();
    let err = tokens
        .check_join(STATIC_VALUE, JoinRole::Auth, "host-1", ADDR, now)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JoinError::RoleNotAllowed(role) if role == "auth"),
        "{err:?}"
    );
    // Nearly the static value is nothing.
    let err = tokens
        .check_join(&STATIC_VALUE[1..], JoinRole::Node, "host-1", ADDR, now)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::InvalidToken), "{err:?}");
    // In event time order: the one ten years later comes last.
    let joins = f.events_of("instance.join").await;
    let summary: Vec<(bool, Option<String>)> =
        joins.into_iter().map(|(ok, id, _)| (ok, id)).collect();
    let id = Some(static_id());
    assert_eq!(
        summary,
        [
            (true, id.clone()),
            (true, id.clone()),
            (false, id.clone()),
            (false, None),
            (true, id),
        ]
    );
}

#[tokio::test]
async fn listings_errors_and_audit_events_never_show_a_token_value() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let node = tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();
    let proxy = tokens
        .create(&[JoinRole::Proxy], 2 * HOUR, now)
        .await
        .unwrap();
    let signup = tokens.create_signup("alice", HOUR, now).await.unwrap();
    // Exercise every path that audits or fails with a value in hand.
    tokens
        .check_join(&node.token, JoinRole::Node, "n", None, now)
        .await
        .unwrap();
    let role_err = tokens
        .check_join(&node.token, JoinRole::Auth, "n", None, now)
        .await
        .unwrap_err();
    let static_err = tokens
        .check_join(STATIC_VALUE, JoinRole::Auth, "n", None, now)
        .await
        .unwrap_err();
    let delete_static_err = tokens.delete(STATIC_VALUE, now).await.unwrap_err();
    tokens.delete(&proxy.token, now).await.unwrap();
    let delete_again_err = tokens.delete(&proxy.token, now).await.unwrap_err();
    let signup_user = tokens.consume_signup(&signup.token, now).await.unwrap();
    assert_eq!(signup_user.user, "alice");
    let signup_err = tokens.consume_signup(&signup.token, now).await.unwrap_err();

    let listed = tokens.list(now).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].id, node.id);
    assert_eq!(listed[0].roles, ["node"]);
    assert_eq!(listed[0].kind, "dynamic");
    assert_eq!(listed[0].expires, Some(node.expires));
    assert_eq!(listed[1].id, static_id());
    assert_eq!(listed[1].roles, ["proxy", "node"]);
    assert_eq!(listed[1].kind, "static");
    assert_eq!(listed[1].expires, None);

    let outputs = [
        format!("{listed:?}"),
        serde_json::to_string(&listed).unwrap(),
        format!("{role_err} {role_err:?}"),
        format!("{static_err} {static_err:?}"),
        format!("{delete_static_err} {delete_static_err:?}"),
        format!("{delete_again_err} {delete_again_err:?}"),
        format!("{signup_err} {signup_err:?}"),
        format!("{signup:?}"),
        format!("{:?}", f.state().await),
        serde_json::to_string(&f.events().await).unwrap(),
    ];
    for output in &outputs {
        for secret in [
            node.token.as_str(),
            proxy.token.as_str(),
            signup.token.as_str(),
            STATIC_VALUE,
        ] {
            assert!(!output.contains(secret), "a token value in: {output}");
        }
    }
    // One event per call above.
    let events = f.events().await;
    assert_eq!(events.len(), 11, "{events:#?}");
}

#[tokio::test]
async fn a_token_can_be_deleted_by_id_or_by_value() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let by_id = tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();
    let by_value = tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();
    let kept = tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();

    tokens.delete(&by_id.id, now).await.unwrap();
    tokens.delete(&by_value.token, now).await.unwrap();

    for gone in [&by_id, &by_value] {
        let err = tokens
            .check_join(&gone.token, JoinRole::Node, "web-1", None, now)
            .await
            .unwrap_err();
        assert!(matches!(err, JoinError::InvalidToken), "{err:?}");
    }
    tokens
        .check_join(&kept.token, JoinRole::Node, "web-1", None, now)
        .await
        .unwrap();
    let ids: Vec<String> = tokens
        .list(now)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [kept.id.clone(), static_id()]);

    // Deleting again: unknown, and said so.
    for again in [by_id.id.as_str(), by_value.token.as_str()] {
        let err = tokens.delete(again, now).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidRequest(m) if m.starts_with("no join token")),
            "{err:?}"
        );
    }
    let deletes = f.events_of("join_token.delete").await;
    let summary: Vec<(bool, Option<String>)> =
        deletes.into_iter().map(|(ok, id, _)| (ok, id)).collect();
    assert_eq!(
        summary,
        [
            (true, Some(by_id.id.clone())),
            (true, Some(by_value.id.clone())),
            (false, Some(by_id.id.clone())),
            (false, None),
        ]
    );
}

#[tokio::test]
async fn static_and_unknown_tokens_cannot_be_deleted_and_nothing_changes() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    tokens.create(&[JoinRole::Node], HOUR, now).await.unwrap();
    let before = (f.state().await, tokens.list(now).await.unwrap());
    for static_ref in [STATIC_VALUE.to_string(), static_id()] {
        let err = tokens.delete(&static_ref, now).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidRequest(m) if m.contains("auth_service.tokens")),
            "{err:?}"
        );
    }
    let huge = "0".repeat(10 * 1024);
    for unknown in ["", "nope", "static:00000000", "0123456789abcdef", &huge] {
        let err = tokens.delete(unknown, now).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidRequest(m) if m.starts_with("no join token")),
            "{unknown:.20}: {err:?}"
        );
    }
    assert_eq!((f.state().await, tokens.list(now).await.unwrap()), before);
    let deletes = f.events_of("join_token.delete").await;
    assert_eq!(deletes.len(), 7);
    assert!(deletes.iter().all(|(ok, _, _)| !ok));
    assert_eq!(deletes[0].1, Some(static_id()));
    assert_eq!(deletes[1].1, Some(static_id()));
}

#[tokio::test]
async fn bad_create_requests_are_refused_audited_and_change_nothing() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let cases: [(&[JoinRole], Duration, &str); 4] = [
        (&[], HOUR, "at least one role"),
        (&[JoinRole::Node], Duration::ZERO, "at least 1s"),
        (&[JoinRole::Node], Duration::from_millis(999), "at least 1s"),
        (
            &[JoinRole::Node],
            Tokens::MAX_TTL + Duration::from_secs(1),
            "at most 168h",
        ),
    ];
    for (roles, ttl, message) in cases {
        let err = tokens.create(roles, ttl, now).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::InvalidRequest(m) if m.contains(message)),
            "{roles:?} {ttl:?}: {err:?}"
        );
    }
    assert!(f.state().await.is_empty());
    assert_eq!(tokens.list(now).await.unwrap().len(), 1);
    let created = f.events_of("join_token.create").await;
    assert_eq!(created.len(), 4);
    assert!(created.iter().all(|(ok, id, _)| !ok && id.is_none()));
    // The largest TTL is fine.
    tokens
        .create(&[JoinRole::Node], Tokens::MAX_TTL, now)
        .await
        .unwrap();
}

/// An audit log that refuses every event.
#[derive(Debug)]
struct BrokenAudit;

impl AuditLog for BrokenAudit {
    fn append(&self, _event: AuditEvent) -> BoxFuture<'_, jumpgate_audit::Result<()>> {
        Box::pin(async { Err(jumpgate_audit::Error::Closed) })
    }
    fn search(&self, _query: SearchQuery) -> BoxFuture<'_, jumpgate_audit::Result<Page>> {
        Box::pin(async { Err(jumpgate_audit::Error::Closed) })
    }
    fn close(&self) -> BoxFuture<'_, jumpgate_audit::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn nothing_happens_unaudited() {
    let f = fixture().await;
    let now = SystemTime::now();
    let issued = f
        .tokens()
        .create(&[JoinRole::Node], HOUR, now)
        .await
        .unwrap();
    let signup = f.tokens().create_signup("alice", HOUR, now).await.unwrap();
    let before = f.state().await;
    let broken = Tokens {
        backend: &f.backend,
        audit: &BrokenAudit,
        static_tokens: &f.statics,
    };
    let err = broken
        .create(&[JoinRole::Node], HOUR, now)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Audit(_)), "{err:?}");
    let err = broken.create_signup("bob", HOUR, now).await.unwrap_err();
    assert!(matches!(err, AuthError::Audit(_)), "{err:?}");
    let err = broken
        .check_join(&issued.token, JoinRole::Node, "web-1", None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, JoinError::Internal(AuthError::Audit(_))),
        "{err:?}"
    );
    let err = broken.delete(&issued.id, now).await.unwrap_err();
    assert!(matches!(err, AuthError::Audit(_)), "{err:?}");
    let err = broken.consume_signup(&signup.token, now).await.unwrap_err();
    assert!(
        matches!(err, SignupError::Internal(AuthError::Audit(_))),
        "{err:?}"
    );
    // Nothing was created, deleted or spent: both tokens still work.
    let after: Vec<(Key, Vec<u8>)> = f.state().await;
    assert_eq!(after, before);
    let tokens = f.tokens();
    tokens
        .check_join(&issued.token, JoinRole::Node, "web-1", None, now)
        .await
        .unwrap();
    assert_eq!(
        tokens
            .consume_signup(&signup.token, now)
            .await
            .unwrap()
            .user,
        "alice"
    );
}

#[tokio::test]
async fn a_signup_token_works_once() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let signup = tokens
        .create_signup("alice", Tokens::SIGNUP_TTL, now)
        .await
        .unwrap();
    assert_eq!(signup.user, "alice");
    assert_eq!(signup.token.len(), 64);
    assert!(!format!("{signup:?}").contains(&signup.token));
    let state = f.state().await;
    assert_eq!(state.len(), 1);
    assert_eq!(
        state[0].0.as_str(),
        format!("/signup_tokens/{}", sha256_hex(&signup.token))
    );
    let json: serde_json::Value = serde_json::from_slice(&state[0].1).unwrap();
    assert_eq!(json["kind"], "user_token");
    assert_eq!(json["spec"]["user"], "alice");

    // A signup token is not a join token.
    let err = tokens
        .check_join(&signup.token, JoinRole::Node, "web-1", None, now)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::InvalidToken), "{err:?}");

    assert_eq!(
        tokens
            .consume_signup(&signup.token, now)
            .await
            .unwrap()
            .user,
        "alice"
    );
    let err = tokens.consume_signup(&signup.token, now).await.unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
    assert!(err.to_string().contains("already used"), "{err}");
    assert!(f.state().await.is_empty());

    let changes = f.events_of("user.password_change").await;
    let summary: Vec<(bool, Option<String>, Option<&str>)> = changes
        .iter()
        .map(|(ok, id, e)| (*ok, id.clone(), e["user"].as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (true, Some(signup.id.clone()), Some("alice")),
            (false, None, None)
        ]
    );
    let updates = f.events_of("user.update").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].1.as_deref(), Some(signup.id.as_str()));
}

#[tokio::test]
async fn a_signup_token_carries_its_totp_secret_and_reading_it_spends_nothing() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let signup = tokens.create_signup("alice", HOUR, now).await.unwrap();
    let other = tokens.create_signup("bob", HOUR, now).await.unwrap();
    let read = tokens.peek_signup(&signup.token, now).await.unwrap();
    let again = tokens.peek_signup(&signup.token, now).await.unwrap();
    assert_eq!(read, again, "reading spends nothing and changes nothing");
    assert_eq!(read.user, "alice");
    let secret = read
        .totp_secret
        .clone()
        .expect("a TOTP secret bound to the invite");
    assert!(
        totp_rs::Secret::try_from_base32(&secret).is_ok(),
        "{secret}"
    );
    let bobs = tokens.peek_signup(&other.token, now).await.unwrap();
    assert_ne!(
        bobs.totp_secret, read.totp_secret,
        "each invite has its own secret"
    );
    // Redeeming gives the same secret, once; then it is gone for reading too.
    let redeemed = tokens.consume_signup(&signup.token, now).await.unwrap();
    assert_eq!(redeemed, read);
    let err = tokens.peek_signup(&signup.token, now).await.unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
    // Expired and garbage tokens read as invalid.
    let err = tokens
        .peek_signup(&other.token, now + 2 * HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
    let err = tokens.peek_signup("zz", now).await.unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
}

#[tokio::test]
async fn two_racing_uses_of_a_signup_token_give_one_winner() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    for _ in 0..20 {
        let signup = tokens.create_signup("alice", HOUR, now).await.unwrap();
        let (a, b) = tokio::join!(
            tokens.consume_signup(&signup.token, now),
            tokens.consume_signup(&signup.token, now)
        );
        assert_eq!(
            usize::from(a.is_ok()) + usize::from(b.is_ok()),
            1,
            "{a:?} {b:?}"
        );
    }
}

#[tokio::test]
async fn expired_and_garbage_signup_tokens_are_refused() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let signup = tokens.create_signup("alice", HOUR, now).await.unwrap();
    let err = tokens
        .consume_signup(&signup.token, now + 2 * HOUR)
        .await
        .unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
    // It does not come back to life either.
    let err = tokens.consume_signup(&signup.token, now).await.unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
    let (not_hex, huge) = ("g".repeat(64), "f".repeat(10 * 1024));
    for garbage in ["", "a", not_hex.as_str(), huge.as_str()] {
        let err = tokens.consume_signup(garbage, now).await.unwrap_err();
        assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
    }
    let changes = f.events_of("user.password_change").await;
    assert_eq!(changes.len(), 6);
    assert!(changes.iter().all(|(ok, _, _)| !ok));
    // In event time order: the expired attempt, two hours later, comes last.
    assert_eq!(changes[5].1.as_deref(), Some(signup.id.as_str()));
    assert!(changes[..5].iter().all(|(_, id, _)| id.is_none()));
}

#[tokio::test]
async fn a_new_invite_replaces_the_old_and_removing_a_user_removes_its_invites() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let first = tokens.create_signup("alice", HOUR, now).await.unwrap();
    let second = tokens.create_signup("alice", HOUR, now).await.unwrap();
    let bob = tokens.create_signup("bob", HOUR, now).await.unwrap();
    let err = tokens.consume_signup(&first.token, now).await.unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");

    assert_eq!(tokens.delete_signups_for("alice").await.unwrap(), 1);
    assert_eq!(tokens.delete_signups_for("alice").await.unwrap(), 0);
    let err = tokens.consume_signup(&second.token, now).await.unwrap_err();
    assert!(matches!(err, SignupError::InvalidToken), "{err:?}");
    assert_eq!(
        tokens.consume_signup(&bob.token, now).await.unwrap().user,
        "bob"
    );

    for (user, ttl) in [("", HOUR), ("al ice", HOUR), ("alice", Duration::ZERO)] {
        let err = tokens.create_signup(user, ttl, now).await.unwrap_err();
        assert!(matches!(err, AuthError::InvalidRequest(_)), "{err:?}");
    }
    assert!(f.state().await.is_empty());
}

/// A single-use token (what `jctl tokens add` makes unless `--reusable`): the first join
/// consumes it, a reuse is refused like an unknown token and audited, a refused role
/// does not consume it, and of concurrent uses exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_use_token_joins_once_and_a_reuse_is_refused() {
    let f = fixture().await;
    let tokens = f.tokens();
    let now = SystemTime::now();
    let issued = tokens
        .create_single_use(&[JoinRole::Node], Tokens::DEFAULT_TTL, now)
        .await
        .unwrap();
    let listed = tokens.list(now).await.unwrap();
    assert!(listed.iter().any(|t| t.id == issued.id && t.single_use));

    // The wrong role is refused without consuming the token.
    let err = tokens
        .check_join(&issued.token, JoinRole::Proxy, "web-1", ADDR, now)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::RoleNotAllowed(_)), "{err}");
    tokens
        .check_join(&issued.token, JoinRole::Node, "web-1", ADDR, now)
        .await
        .unwrap();
    let err = tokens
        .check_join(&issued.token, JoinRole::Node, "web-2", ADDR, now)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::InvalidToken), "{err}");
    assert!(
        tokens
            .list(now)
            .await
            .unwrap()
            .iter()
            .all(|t| t.id != issued.id)
    );
    let joins = f.events_of("instance.join").await;
    let outcomes: Vec<bool> = joins.iter().map(|(success, _, _)| *success).collect();
    assert_eq!(outcomes, [false, true, false], "{joins:?}");

    // Eight hosts race for one token: one joins.
    let raced = tokens
        .create_single_use(&[JoinRole::Node], Tokens::DEFAULT_TTL, now)
        .await
        .unwrap();
    let attempts = (0..8).map(|i| {
        let tokens = f.tokens();
        let token = raced.token.clone();
        async move {
            tokens
                .check_join(&token, JoinRole::Node, &format!("racer-{i}"), ADDR, now)
                .await
                .is_ok()
        }
    });
    let winners = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
}
