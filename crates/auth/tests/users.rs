//! Local users' logins: passwords, TOTP, lockout, and the audit trail of each attempt.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_audit::{AuditLog, EventType, SearchQuery, SqliteAuditLog, Timestamp};
use jumpgate_auth::{LoginError, SecondFactor, User, Users};
use jumpgate_backend::{Backend, Key, KeyRange, MemoryBackend};
use jumpgate_test_support::totp_at;
use std::time::{Duration, SystemTime};

const PASSWORD: &str = "correct horse battery staple";

fn alice() -> User {
    User::local(
        "alice",
        vec!["access".to_string()],
        vec!["alice".to_string()],
    )
}

async fn audit_events(audit: &SqliteAuditLog) -> Vec<(String, bool, Option<String>)> {
    let query = SearchQuery::new(
        Timestamp::from_unix_millis(0).unwrap(),
        // 2100-01-01: after every event of these tests.
        Timestamp::from_unix_millis(4_102_444_800_000).unwrap(),
    )
    .limit(1000);
    let page = audit.search(query).await.unwrap();
    page.events
        .iter()
        .map(|e| {
            let json: serde_json::Value = serde_json::from_str(&e.to_json().unwrap()).unwrap();
            (
                json["event"].as_str().unwrap().to_string(),
                json["success"].as_bool().unwrap(),
                json["error"].as_str().map(str::to_string),
            )
        })
        .collect()
}

struct Fixture {
    backend: MemoryBackend,
    audit: SqliteAuditLog,
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
        _dir: dir,
    }
}

impl Fixture {
    fn users(&self, second_factor: SecondFactor) -> Users<'_> {
        Users {
            backend: &self.backend,
            audit: &self.audit,
            cluster: "prod",
            second_factor,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_totp_login_works_and_is_audited() {
    let f = fixture().await;
    let users = f.users(SecondFactor::Otp);
    let now = SystemTime::now();
    let enrollment = users.create(&alice(), Some(PASSWORD), now).await.unwrap();
    let uri = enrollment.otpauth_uri.expect("OTP enrolment");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let logged_in = users
        .authenticate(
            "alice",
            PASSWORD,
            Some(&totp_at(&uri, now)),
            Some("192.0.2.10:5000"),
            now,
        )
        .await
        .unwrap();
    assert_eq!(logged_in, alice());
    let events = audit_events(&f.audit).await;
    assert_eq!(events[0], ("user.create".to_string(), true, None));
    assert_eq!(events[1], ("user.login".to_string(), true, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_user_and_bad_codes_are_refused_alike() {
    let f = fixture().await;
    let users = f.users(SecondFactor::Otp);
    let now = SystemTime::now();
    let uri = users
        .create(&alice(), Some(PASSWORD), now)
        .await
        .unwrap()
        .otpauth_uri
        .unwrap();
    let good = totp_at(&uri, now);
    let refusals = [
        (
            "wrong password",
            "alice",
            "wrong password!!",
            Some(good.as_str()),
        ),
        ("unknown user", "mallory", PASSWORD, Some(good.as_str())),
        ("wrong code", "alice", PASSWORD, Some("000000")),
    ];
    let mut messages = Vec::new();
    for (case, name, password, otp) in refusals {
        let err = users
            .authenticate(name, password, otp, None, now)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LoginError::InvalidCredentials),
            "{case}: {err}"
        );
        messages.push(err.to_string());
    }
    assert!(
        messages.windows(2).all(|w| w[0] == w[1]),
        "answers differ: {messages:?}"
    );
    let missing = users
        .authenticate("alice", PASSWORD, None, None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, LoginError::SecondFactorRequired),
        "{missing}"
    );
    // A right password without a code must not be told apart from a wrong one: that
    // would confirm the password without the second factor.
    assert_eq!(
        missing.to_string(),
        messages[0],
        "a right password without a code answers like a wrong password"
    );
    // The unknown user left no trace in the state.
    assert!(
        f.backend
            .get(&Key::new("/users/mallory").unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
    let failures = audit_events(&f.audit)
        .await
        .into_iter()
        .filter(|(event, ok, _)| event == "user.login" && !ok)
        .count();
    assert_eq!(failures, 4, "every refused attempt is audited");
    // The right code still works after the failures (and is then used up).
    users
        .authenticate("alice", PASSWORD, Some(&good), None, now)
        .await
        .unwrap();
    let replay = users
        .authenticate("alice", PASSWORD, Some(&good), None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(replay, LoginError::InvalidCredentials),
        "a TOTP code was accepted twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_lock_the_user_for_thirty_minutes() {
    let f = fixture().await;
    let users = f.users(SecondFactor::Off);
    let start = SystemTime::now();
    users.create(&alice(), Some(PASSWORD), start).await.unwrap();
    for _ in 0..5 {
        let err = users
            .authenticate("alice", "not the password", None, None, start)
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidCredentials), "{err}");
    }
    // Locked: even the right password is refused, with a message that says why.
    let err = users
        .authenticate(
            "alice",
            PASSWORD,
            None,
            None,
            start + Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("jctl users unlock"), "{err}");
    let events = audit_events(&f.audit).await;
    assert!(
        events.iter().any(|(e, ok, error)| e == "user.login"
            && !ok
            && error.as_deref() == Some("user locked after repeated failures")),
        "the lock is audited: {events:?}"
    );
    // After 30 minutes the right password works again, and the count starts afresh.
    users
        .authenticate(
            "alice",
            PASSWORD,
            None,
            None,
            start + Duration::from_secs(31 * 60),
        )
        .await
        .unwrap();
    users
        .authenticate(
            "alice",
            "wrong again",
            None,
            None,
            start + Duration::from_secs(32 * 60),
        )
        .await
        .unwrap_err();
    users
        .authenticate(
            "alice",
            PASSWORD,
            None,
            None,
            start + Duration::from_secs(33 * 60),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_can_unlock_a_user() {
    let f = fixture().await;
    let users = f.users(SecondFactor::Off);
    let now = SystemTime::now();
    users.create(&alice(), Some(PASSWORD), now).await.unwrap();
    for _ in 0..5 {
        let _ = users
            .authenticate("alice", "nope nope nope", None, None, now)
            .await;
    }
    assert!(matches!(
        users.authenticate("alice", PASSWORD, None, None, now).await,
        Err(LoginError::Locked { .. })
    ));
    users.unlock("alice").await.unwrap();
    users
        .authenticate("alice", PASSWORD, None, None, now)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stored_hashed_and_apart_from_the_user() {
    let f = fixture().await;
    let users = f.users(SecondFactor::Otp);
    users
        .create(&alice(), Some(PASSWORD), SystemTime::now())
        .await
        .unwrap();
    let user = f
        .backend
        .get(&Key::new("/users/alice").unwrap())
        .await
        .unwrap();
    let user_text = String::from_utf8(user.value).unwrap();
    assert!(
        !user_text.contains("argon2") && !user_text.contains("totp"),
        "{user_text}"
    );
    let everything = f
        .backend
        .get_range(&KeyRange::Prefix(Key::root()), None)
        .await
        .unwrap();
    for item in everything {
        let text = String::from_utf8_lossy(&item.value);
        assert!(
            !text.contains(PASSWORD),
            "the plain password is stored at {}",
            item.key
        );
    }
    let credentials = f
        .backend
        .get(&Key::new("/credentials/alice").unwrap())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&credentials.value).contains("$argon2id$"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_new_users_are_refused_clearly_and_audited() {
    let f = fixture().await;
    let users = f.users(SecondFactor::Off);
    let now = SystemTime::now();
    let short = users
        .create(&alice(), Some("short"), now)
        .await
        .unwrap_err();
    assert!(short.to_string().contains("at least 12"), "{short}");
    let mut bad = alice();
    bad.name = "alice/../root".to_string();
    assert!(users.create(&bad, Some(PASSWORD), now).await.is_err());
    users.create(&alice(), Some(PASSWORD), now).await.unwrap();
    let again = users
        .create(&alice(), Some(PASSWORD), now)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    let events = audit_events(&f.audit).await;
    assert!(
        events.contains(&(
            "user.create".to_string(),
            false,
            Some("user already exists".to_string())
        )),
        "{events:?}"
    );
    let _ = EventType::UserCreate;
}

/// The policies beyond `otp` for users without security keys (keys need a browser: the
/// WebAuthn ceremonies are tested end to end in crates/jumpgate/tests/web_webauthn.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_optional_and_webauthn_ask_for_what_the_user_has() {
    let f = fixture().await;
    let now = SystemTime::now();
    // `on` enrols TOTP at creation, like `otp`; the code is then required.
    let on = f.users(SecondFactor::On);
    let uri = on
        .create(&alice(), Some(PASSWORD), now)
        .await
        .unwrap()
        .otpauth_uri
        .expect("`on` enrols TOTP");
    let missing = on
        .authenticate("alice", PASSWORD, None, None, now)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, LoginError::SecondFactorRequired),
        "{missing}"
    );
    on.authenticate("alice", PASSWORD, Some(&totp_at(&uri, now)), None, now)
        .await
        .unwrap();
    // `webauthn`: a code does not do, even a right one; the refusal says that a key is
    // needed and that this user has none (with a key: crates/jumpgate/tests/web_webauthn.rs).
    let webauthn = f.users(SecondFactor::Webauthn);
    let later = now + Duration::from_secs(60);
    for otp in [None, Some(totp_at(&uri, later))] {
        let err = webauthn
            .authenticate("alice", PASSWORD, otp.as_deref(), None, later)
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::NoSecurityKey), "{err}");
        assert!(err.to_string().contains("no security key"), "{err}");
    }
    // A wrong password is still the wrong password (and counted).
    let wrong = webauthn
        .authenticate("alice", "wrong password!!", None, None, later)
        .await
        .unwrap_err();
    assert!(matches!(wrong, LoginError::InvalidCredentials), "{wrong}");
    // `optional`: a user with nothing registered logs in with the password alone; one
    // with TOTP must give the code.
    let optional = f.users(SecondFactor::Optional);
    let bob = User {
        name: "bob".to_string(),
        ..alice()
    };
    f.users(SecondFactor::Off)
        .create(&bob, Some(PASSWORD), now)
        .await
        .unwrap();
    optional
        .authenticate("bob", PASSWORD, None, None, now)
        .await
        .unwrap();
    let err = optional
        .authenticate("alice", PASSWORD, None, None, later)
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::SecondFactorRequired), "{err}");
}
