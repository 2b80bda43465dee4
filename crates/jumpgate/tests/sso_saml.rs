//! Single sign-on through SAML 2.0 end to end (docs/sso.md): a real `jumpgate start --dev`,
//! a real SAML identity provider built on samlify (`crates/saml/tests/idp/idp.js` with its
//! login form; `npm ci` there, as `./test.sh` does) that reads Jumpgate's SP metadata from
//! the proxy, and a real headless Chromium driven by Playwright (`web/tests/saml.mjs`, on
//! the shared harness `web/tests/harness.mjs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;
use support::{PASSWORD, start_dev_cluster, text};

/// The samlify IdP in its interactive form (`--users`), stopped when dropped. It also
/// exits when its standard input closes, so it dies with a killed test.
struct SamlIdp {
    child: Child,
    _stdin: ChildStdin,
    base: String,
}

impl SamlIdp {
    /// Starts the IdP for the users of `users`, reading the SP's metadata from
    /// `sp_metadata_url` (the proxy's, trusted through the cluster's CA `ca`).
    fn start(users: &Path, sp_metadata_url: &str, ca: &str, log: PathBuf) -> SamlIdp {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../saml/tests/idp");
        assert!(
            dir.join("node_modules/samlify").is_dir(),
            "{}/node_modules is missing: run `npm ci` there (./test.sh does)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("idp.js")
            .arg("--users")
            .arg(users)
            .arg(sp_metadata_url)
            .current_dir(&dir)
            .env("NODE_EXTRA_CA_CERTS", ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("node (./test.sh installs it)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        // Read to the end: the IdP's schema checker (xmllint in JavaScript) writes to
        // standard output, and dies of EPIPE if nobody reads it.
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
            for _ in lines {}
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_default();
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the SAML IdP did not start: {line:?}"));
        SamlIdp {
            child,
            _stdin: stdin,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `web/tests/SCRIPT` against a fresh dev cluster set up by `setup` (adapted from
/// `web_ui.rs`' helper of the same name): the harness's environment, and `setup`'s.
fn browser_tests_with(
    script: &str,
    tests: &str,
    setup: impl FnOnce(&support::Cluster) -> Vec<(&'static str, String)>,
    after: impl FnOnce() -> String,
) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let otpauth = cluster.add_user("alice", "root");
    let node = cluster.wait_for_dev_node();
    let extra = setup(&cluster);
    let url = format!(
        "https://{}",
        cluster.proxy.replace("localhost", "127.0.0.1")
    );
    let out = support::browser_script(script)
        .env("JUMPGATE_WEB_URL", &url)
        .env("JUMPGATE_CA", cluster.ca())
        .env("JUMPGATE_USER", "alice")
        .env("JUMPGATE_PASSWORD", PASSWORD)
        .env("JUMPGATE_OTPAUTH", &otpauth)
        .env("JUMPGATE_NODE", &node)
        .env("JUMPGATE_LOGIN", "root")
        .env("JUMPGATE_WEB_TESTS", tests)
        .envs(extra)
        .output()
        .expect("node (./test.sh installs it)");
    support::assert_browser_report(&out, || {
        format!(
            "IdP log:\n{}\ndaemon log:\n{}",
            after(),
            cluster.daemon.log_text()
        )
    });
}

/// The SP metadata the IdP reads from the proxy; the login page's button with roles from
/// the `groups` attribute and the templated login `{{email.local(external.email)}}`;
/// `jsh login --auth` then `jsh ssh` as that login; the IdP's SessionNotOnOrAfter ending
/// the login; a changed group giving changed roles at the next login.
#[test]
fn browser_saml_login_with_the_button_and_with_jsh() {
    saml_browser_tests("metadata|button|jsh login|SessionNotOnOrAfter|changed group");
}

/// A user the IdP no longer knows refused, attributes that map to no role refused naming
/// them, and refusals of an unsigned assertion, one signed by another key, a wrong
/// audience and an expired assertion.
#[test]
fn browser_saml_refuses_unknown_users_unmapped_attributes_and_bad_assertions() {
    saml_browser_tests("no role|no longer knows|unsigned|another key|audience|expired");
}

/// A replayed response refused as a replay; another browser's response refused (login
/// CSRF), whether the victim has a login pending or not, and used up by that attempt.
#[test]
fn browser_saml_refuses_replays_and_login_csrf() {
    saml_browser_tests("replayed|CSRF");
}

/// Single sign-on through a SAML IdP (samlify, its login form driven in Chromium), the
/// tests of `web/tests/saml.mjs` whose names match `tests`, against a fresh cluster and IdP.
fn saml_browser_tests(tests: &str) {
    let login = jumpgate_test_support::ensure_timing_login();
    let idp_dir = tempfile::tempdir().unwrap();
    let users = idp_dir.path().join("users.json");
    let user = |nameid: &str, groups: &[&str], scenario: &str| {
        serde_json::json!({
            "nameid": nameid,
            "attributes": {"email": [nameid], "groups": groups},
            "scenario": scenario,
        })
    };
    let ann = format!("{login}@example.com");
    std::fs::write(
        &users,
        serde_json::json!({
            "ann": user(&ann, &["devs"], "ok"),
            "nora": user("nora@example.com", &["visitors", "guests"], "ok"),
            "uma": user("uma@example.com", &["devs"], "unsigned"),
            "wanda": user("wanda@example.com", &["devs"], "wrong-audience"),
            "ed": user("ed@example.com", &["devs"], "expired"),
            "oscar": user("oscar@example.com", &["devs"], "other-key"),
            "sid": user("sid@example.com", &["devs"], "short-session"),
        })
        .to_string(),
    )
    .unwrap();
    let idp_log = idp_dir.path().join("idp.log");
    let mut idp: Option<SamlIdp> = None;
    browser_tests_with(
        "saml.mjs",
        tests,
        |cluster| {
            let proxy = format!(
                "https://{}",
                cluster.proxy.replace("localhost", "127.0.0.1")
            );
            let metadata_url = format!("{proxy}/v1/webapi/saml/metadata/idp");
            let acs = format!("{proxy}/v1/webapi/saml/acs/idp");
            let started = SamlIdp::start(&users, &metadata_url, &cluster.ca(), idp_log.clone());
            let dir = cluster.data.parent().unwrap().to_path_buf();
            cluster.create_resource(
                &dir,
                "sso-dev.yaml",
                "kind: role\nversion: v7\nmetadata: {name: sso-dev}\nspec:\n  allow:\n    \
                 logins: ['{{email.local(external.email)}}']\n    node_labels: {'*': '*'}\n",
            );
            cluster.create_resource(
                &dir,
                "idp.yaml",
                &format!(
                    "kind: saml\nversion: v2\nmetadata: {{name: idp}}\nspec:\n  acs: {acs}\n  \
                     service_provider_issuer: {metadata_url}\n  entity_descriptor_url: \
                     {}/metadata\n  display: Test SAML IdP\n  attributes_to_roles:\n    \
                     - {{name: groups, value: devs, roles: [sso-dev]}}\n    \
                     - {{name: groups, value: 'aud*', roles: [auditor]}}\n  \
                     signing_key_pair:\n    private_key: \"-----BEGIN PRIVATE KEY-----\\n\
                     s3cr3t-of-the-sp\\n-----END PRIVATE KEY-----\"\n    cert: \"-----BEGIN \
                     CERTIFICATE-----\\npublic-part\\n-----END CERTIFICATE-----\"\n",
                    started.base
                ),
            );
            // The SP's key stays in auth: `jctl get` hides it unless asked.
            let shown = cluster.bins.jctl_ok(&cluster.data, &["get", "saml/idp"]);
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("public-part"), "{shown}");
            let with = cluster
                .bins
                .jctl_ok(&cluster.data, &["get", "saml/idp", "--with-secrets"]);
            assert!(with.contains("s3cr3t-of-the-sp"), "{with}");
            let base = started.base.clone();
            idp = Some(started);
            vec![
                ("JUMPGATE_IDP_USERS", users.display().to_string()),
                ("JUMPGATE_SAML_IDP", base),
                ("JUMPGATE_SSO_LOGIN", login.to_string()),
                ("JUMPGATE_JSH", support::jsh_bin().to_string()),
            ]
        },
        || std::fs::read_to_string(&idp_log).unwrap_or_default(),
    );
    drop(idp);
}

/// A connector that names no IdP, or two ways, or turns on IdP-initiated logins, is
/// refused by `jctl create` with the reason, before any login.
#[test]
fn a_saml_connector_is_checked_when_created() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let connector = |extra: &str| {
        format!(
            "kind: saml\nversion: v2\nmetadata: {{name: idp}}\nspec:\n  acs: \
             https://127.0.0.1:3080/v1/webapi/saml/acs/idp\n  attributes_to_roles:\n    \
             - {{name: groups, value: devs, roles: [access]}}\n{extra}"
        )
    };
    for (extra, refusal) in [
        ("", "give the IdP's metadata"),
        ("  entity_descriptor: <html/>\n", "entity_descriptor"),
        (
            "  entity_descriptor_url: https://idp.example.com/md\n  allow_idp_initiated: true\n",
            "login CSRF",
        ),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, connector(extra)).unwrap();
        let out = cluster
            .bins
            .jctl(&cluster.data, &["create", path.to_str().unwrap()], None);
        assert!(!out.status.success(), "{extra}");
        let said = text(&out.stderr);
        assert!(said.contains(refusal), "{extra}: {said}");
    }
}
