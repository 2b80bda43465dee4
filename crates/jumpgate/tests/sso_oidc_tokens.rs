//! The OIDC connector's ID token checks (docs/sso.md), end to end: a real `jumpgate start
//! --dev`, logins driven with real `curl` through the proxy's `login/web` and `callback`
//! endpoints, against a rogue OpenID Provider (`jumpgate_test_support::RogueOidc`) whose ID
//! tokens carry one defect each: a wrong audience, an expired token, a signature by a key
//! not in its JWKS, no nonce, a wrong nonce, a wrong issuer, `alg: none`. Each is refused
//! with a message naming the defect and audited as a failed login; the same provider's
//! well-formed token logs the user in, so a check switched off makes this test fail. A
//! well-formed answer delivered to another kind's callback is refused too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use jumpgate_test_support::{Defect, RogueOidc, RogueUser};
use std::process::Command;
use support::{start_dev_cluster, text};

/// An HTTPS (or HTTP) GET with curl, no redirects followed: (status, headers, body).
fn get(url: &str, ca: &str, cookie: Option<&str>) -> (u16, String, String) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "20", "--cacert", ca, "-D", "-"])
        .args(["-o", "/dev/stderr"]);
    if let Some(cookie) = cookie {
        command.args(["-H", &format!("Cookie: {cookie}")]);
    }
    let out = command
        .arg(url)
        .output()
        .expect("curl (./test.sh installs it)");
    let headers = text(&out.stdout);
    let status = headers
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    (status, headers, text(&out.stderr))
}

fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// One web login through connector `rogue`: the proxy's start, the provider's answer, the
/// proxy's callback with the state cookie. The callback's (status, headers, body).
fn web_login(proxy: &str, ca: &str) -> (u16, String, String) {
    web_login_at(proxy, ca, "oidc")
}

/// [`web_login`], the provider's answer delivered to the `callback_kind` callback.
fn web_login_at(proxy: &str, ca: &str, callback_kind: &str) -> (u16, String, String) {
    let (status, headers, body) = get(
        &format!("{proxy}/v1/webapi/oidc/login/web?connector_id=rogue&redirect_url=/web"),
        ca,
        None,
    );
    assert_eq!(status, 302, "{headers}{body}");
    let cookie = header(&headers, "set-cookie").expect("the state cookie");
    let cookie = cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("__Host-jumpgate_sso="), "{cookie}");
    let authorize = header(&headers, "location").expect("the provider's URL");
    let (status, headers, body) = get(&authorize, ca, None);
    assert_eq!(status, 302, "{headers}{body}");
    let callback = header(&headers, "location").expect("the provider's answer");
    assert!(callback.starts_with(proxy), "{callback}");
    let callback = callback.replacen(
        "/webapi/oidc/callback",
        &format!("/webapi/{callback_kind}/callback"),
        1,
    );
    get(&callback, ca, Some(&cookie))
}

#[test]
fn oidc_id_tokens_with_a_defect_are_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let proxy = format!(
        "https://{}",
        cluster.proxy.replace("localhost", "127.0.0.1")
    );
    let ca = cluster.ca();
    let rogue = RogueOidc::start(
        "jumpgate",
        RogueUser {
            sub: "rita-0001".to_string(),
            email: "rita@example.com".to_string(),
            groups: vec!["devs".to_string()],
        },
    );
    cluster.create_resource(
        dir.path(),
        "rogue-dev.yaml",
        "kind: role\nversion: v7\nmetadata: {name: rogue-dev}\nspec:\n  allow:\n    \
         logins: ['{{email.local(external.email)}}']\n    node_labels: {'*': '*'}\n",
    );
    cluster.create_resource(
        dir.path(),
        "rogue.yaml",
        &format!(
            "kind: oidc\nversion: v3\nmetadata: {{name: rogue}}\nspec:\n  issuer_url: {}\n  \
             client_id: jumpgate\n  client_secret: s3cr3t-of-the-client\n  redirect_url: \
             {proxy}/v1/webapi/oidc/callback\n  scope: [email, groups]\n  claims_to_roles:\n    \
             - {{claim: groups, value: devs, roles: [rogue-dev]}}\n",
            rogue.issuer()
        ),
    );

    // The provider's well-formed token logs rita in: the refusals below are the checks'.
    let (status, headers, body) = web_login(&proxy, &ca);
    assert_eq!(status, 302, "a well-formed ID token: {headers}{body}");
    assert_eq!(header(&headers, "location").as_deref(), Some("/web"));
    assert!(headers.contains("__Host-jumpgate_web="), "{headers}");

    // What each defect's refusal says (openidconnect's words, after "the ID token: ").
    let cases = [
        (Defect::WrongAudience, "audience"),
        (Defect::Expired, "expired"),
        (Defect::BadSignature, "signature"),
        (Defect::MissingNonce, "nonce"),
        (Defect::WrongNonce, "nonce"),
        (Defect::WrongIssuer, "issuer"),
        (Defect::AlgNone, "signature"),
    ];
    let mut failures_before = failed_logins(&cluster.data).len();
    for (defect, reason) in cases {
        rogue.set_defect(defect);
        let issued = rogue.tokens_issued();
        let (status, headers, body) = web_login(&proxy, &ca);
        assert_eq!(
            rogue.tokens_issued(),
            issued + 1,
            "{defect:?}: the login did not reach the token endpoint"
        );
        assert_eq!(status, 403, "{defect:?} was not refused: {headers}{body}");
        assert!(
            !headers.contains("__Host-jumpgate_web="),
            "{defect:?}: {headers}"
        );
        assert!(body.contains("Single sign-on failed"), "{defect:?}: {body}");
        assert!(
            body.contains("the ID token:") && body.to_lowercase().contains(reason),
            "{defect:?}: the refusal should name the ID token's {reason}: {body}"
        );
        let failures = failed_logins(&cluster.data);
        assert_eq!(
            failures.len(),
            failures_before + 1,
            "{defect:?}: not audited as a failed login: {failures:?}"
        );
        let last = failures.last().unwrap();
        assert_eq!(last["connector"], "rogue", "{last}");
        assert_eq!(last["method"], "oidc", "{last}");
        assert!(
            last["error"]
                .as_str()
                .unwrap_or_default()
                .contains("the ID token:"),
            "{last}"
        );
        failures_before = failures.len();
        println!(
            "{defect:?}: refused: {}",
            body.lines().nth(2).unwrap_or_default()
        );
    }

    // A well-formed answer delivered to another kind's callback is refused (and its state
    // is spent), before any code is exchanged.
    rogue.set_defect(Defect::None);
    let issued = rogue.tokens_issued();
    let (status, headers, body) = web_login_at(&proxy, &ca, "github");
    assert_eq!(status, 403, "{headers}{body}");
    assert!(
        body.contains(
            "started with a connector of kind oidc, but the answer reached the github callback"
        ),
        "{body}"
    );
    assert_eq!(rogue.tokens_issued(), issued, "the code was exchanged");
    assert_eq!(failed_logins(&cluster.data).len(), failures_before + 1);

    // And once more a good one: nothing above broke the connector.
    let (status, headers, body) = web_login(&proxy, &ca);
    assert_eq!(status, 302, "{headers}{body}");
}

fn failed_logins(data: &std::path::Path) -> Vec<serde_json::Value> {
    support::audit_events(data, "user.login")
        .into_iter()
        .filter(|event| event["success"] == false)
        .collect()
}
