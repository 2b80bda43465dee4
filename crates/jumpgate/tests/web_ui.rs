//! The web UI end to end (docs/web.md): a real `jumpgate start`, real `curl` for what the
//! proxy answers at `/` and `/web` (over TLS, HTTP/1.1 and HTTP/2), and a real headless
//! Chromium driven by Playwright (`web/tests/browser.mjs`, run with Node) for the pages.
//! `test.sh` installs Debian's `chromium` and the npm packages (`npm ci` in `web/`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{PASSWORD, start_daemon, start_dev_cluster, text};

/// An HTTPS GET with curl: (status, headers in lower case, body). `extra` goes before the URL.
fn curl(url: &str, extra: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-", "-o", "/dev/stderr"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl (./test.sh installs it)");
    let headers = text(&out.stdout).to_ascii_lowercase();
    let status = headers
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    (status, headers, text(&out.stderr))
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn assert_security_headers(headers: &str) {
    let csp = header(headers, "content-security-policy").unwrap_or_else(|| panic!("{headers}"));
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(
        header(headers, "x-frame-options"),
        Some("deny"),
        "{headers}"
    );
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{headers}"
    );
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("no-referrer"),
        "{headers}"
    );
}

#[test]
fn the_proxy_serves_the_ui_on_its_public_port_with_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let base = format!("https://{}", cluster.proxy);
    let ca = cluster.ca();
    for http in ["--http1.1", "--http2"] {
        let tls = ["--cacert", ca.as_str(), http];
        let (status, headers, body) = curl(&format!("{base}/web"), &tls);
        assert_eq!(status, 200, "{headers}{body}");
        assert_security_headers(&headers);
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        // The cluster's own CA, not a public certificate: no HSTS.
        assert_eq!(header(&headers, "strict-transport-security"), None);
        assert!(body.contains("<div id=\"app\"></div>"), "{body}");

        let (status, headers, _) = curl(&format!("{base}/"), &tls);
        assert_eq!(status, 302, "{headers}");
        assert_eq!(header(&headers, "location"), Some("/web"));

        // A page of the app, for client-side routing.
        let (status, _, page) = curl(&format!("{base}/web/terminal/node-1/root"), &tls);
        assert_eq!((status, page.as_str()), (200, body.as_str()));

        // Traversal, as sent (curl --path-as-is) and encoded: 404, never a file.
        for path in [
            "/web/../../etc/passwd",
            "/web/../../../../../../etc/passwd",
            "/web/%2e%2e/%2e%2e/etc/passwd",
            "/web/..%2f..%2f..%2fetc%2fpasswd",
            "/web/assets/..%5c..%5cCargo.toml",
        ] {
            let (status, headers, body) = curl(
                &format!("{base}{path}"),
                &[&tls[..], &["--path-as-is"]].concat(),
            );
            assert_eq!(status, 404, "{path}: {headers}{body}");
            assert!(!body.contains("root:"), "{path}: {body}");
            assert_security_headers(&headers);
        }

        // The web API is unchanged next to it.
        let (status, _, ping) = curl(&format!("{base}/webapi/ping"), &tls);
        assert_eq!(status, 200, "{ping}");
        assert!(ping.contains("cluster_name"), "{ping}");
    }
}

/// A self-signed certificate for `localhost` made by openssl (a stand-in for a public one).
fn write_keypair(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("public.crt"), dir.join("public.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    (cert, key)
}

#[test]
fn hsts_is_sent_only_with_https_keypairs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cert, key) = write_keypair(dir.path());
    let config = dir.path().join("jumpgate.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\njumpgate:\n  data_dir: {data}\nauth_service:\n  cluster_name: web\nproxy_service:\n  https_keypairs:\n    - cert_file: {cert}\n      key_file: {key}\n",
            data = data.display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let daemon = start_daemon(
        &["-c", config.to_str().unwrap()],
        &dir.path().join("daemon.log"),
    );
    let proxy = daemon.wait_for_proxy(&data);
    let port = proxy.rsplit_once(':').unwrap().1;
    // The configured certificate, verified by name (it is the only one curl trusts).
    let tls = [
        "--cacert",
        cert.to_str().unwrap(),
        "--resolve",
        &format!("localhost:{port}:127.0.0.1"),
    ]
    .map(String::from);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    for path in ["/", "/web", "/web/resources"] {
        let (status, headers, body) = curl(&format!("https://localhost:{port}{path}"), &tls);
        assert!(status == 200 || status == 302, "{path}: {headers}{body}");
        assert_security_headers(&headers);
        assert_eq!(
            header(&headers, "strict-transport-security"),
            Some("max-age=63072000"),
            "{path}: {headers}"
        );
    }
}

/// Runs the browser test script `web/tests/SCRIPT` (Node, Playwright, Debian's chromium,
/// the harness of `web/tests/harness.mjs`) against a fresh dev cluster, with only the tests
/// whose names match `tests`.
fn browser_tests(script: &str, tests: &str) {
    browser_tests_with(script, tests, |_| Vec::new());
}

/// [`browser_tests`] with more made in the cluster first by `setup` (users, roles), which
/// answers more environment for the script.
fn browser_tests_with(
    script: &str,
    tests: &str,
    setup: impl FnOnce(&support::Cluster) -> Vec<(&'static str, String)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    let otpauth = cluster.add_user("alice", "root");
    // An admin for the admin pages (admin.mjs): the built-in editor role.
    let admin_otpauth = cluster.add_user_with_roles("adam", "editor,access", "root");
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
        .env("JUMPGATE_ADMIN_USER", "adam")
        .env("JUMPGATE_ADMIN_OTPAUTH", &admin_otpauth)
        // admin.mjs joins an agent with the config the join-token page shows.
        .env("JUMPGATE_BIN", env!("CARGO_BIN_EXE_jumpgate"))
        .envs(extra)
        .output()
        .expect("node (./test.sh installs it)");
    support::assert_browser_report(&out, || {
        format!("daemon log:\n{}", cluster.daemon.log_text())
    });
}

/// What works with this proxy alone: the page, its headers under a real browser, and the
/// pages against the `/webapi/web/*` contract (answered inside the browser).
#[test]
fn browser_the_page_loads_under_its_csp_and_the_pages_follow_the_contract() {
    browser_tests("browser.mjs", "security headers|contract|zoom");
}

/// Against the real web-session endpoints: the login page shown for no session, its
/// keyboard order, a wrong password's message from the server, and a login with the
/// one-time code to this host's node in the real list, the cookie's flags, logout.
#[test]
fn browser_login_against_the_web_session_endpoints() {
    browser_tests("browser.mjs", "login form|wrong password|one-time code");
}

/// The resources page against a real cluster holding 10,000 more nodes (registered as
/// heartbeats would) and one whose host name and label are markup: paging, search and a
/// label filter answer quickly, and the markup shows as text with nothing run.
#[test]
fn browser_resources_with_ten_thousand_nodes_and_markup_in_a_node() {
    browser_tests_with("browser.mjs", r"^resources \(real\)", |cluster| {
        let mut nodes = support::many_nodes(10_000);
        nodes.push(jumpgate_types::NodePresence {
            uuid: "00000000-0000-4000-8000-999999999999".to_string(),
            hostname: "<img src=x onerror=alert(2)>".to_string(),
            labels: [("note".to_string(), "<script>alert(1)</script>".to_string())].into(),
            tunnels: Vec::new(),
            version: "test".to_string(),
        });
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(support::register_nodes(&cluster.data, nodes));
        Vec::new()
    });
}

/// The admin pages as an admin (editor): add a user and sign them up from the invite link
/// (the QR code decoded from the page's canvas, a code to confirm), log in as them; lock and
/// unlock a user (their login shows the lock's message); a role with a YAML error shown at
/// its line, then fixed; a join token whose shown config joins a real agent that appears
/// among the resources; the pages at 200% zoom.
#[test]
fn browser_admin_pages_add_sign_up_lock_edit_roles_and_join_a_node() {
    browser_tests("admin.mjs", "^admin:");
}

/// What the admin pages refuse: a non-admin sees no admin links, a typed admin URL shows a
/// refusal, and the admin API refuses their calls (HTTP); a cross-site form post and a
/// request without the CSRF token are refused; a bad or used invite link says so.
#[test]
fn browser_admin_pages_refuse_non_admins_cross_site_posts_and_bad_invites() {
    browser_tests("admin.mjs", "^refusal:");
}

/// The terminal, recordings and audit pages (`web/tests/views.mjs`) against the real
/// cluster: alice (`access`) logs in with TOTP, runs commands in a real PTY session on this
/// host's node (output, Unicode, resize, copy and paste, tabs, the exit status, reconnect),
/// is refused a login and a node with the proxy's reason, and her session's recording is
/// listed, played (speed, seeking) and downloaded; audrey (`access`, `auditor`) pages
/// through the audit log, finds the session and follows it to the recording; alice is
/// shown the API's refusal of the audit log; another site's WebSocket is refused; the three
/// pages read at 200% zoom; an ended web session brings "Your session expired".
#[test]
fn browser_terminal_recordings_and_audit_log_against_a_real_cluster() {
    browser_tests_with("views.mjs", ".", |cluster| {
        let otpauth = cluster.add_user_with_roles("audrey", "access,auditor", "root");
        vec![
            ("JUMPGATE_AUDITOR", "audrey".to_string()),
            ("JUMPGATE_AUDITOR_OTPAUTH", otpauth),
        ]
    });
}

/// A real OpenID Provider for the SSO tests (`web/tests/oidc-idp.mjs`: npm's
/// `oidc-provider`), stopped when dropped.
struct OidcProvider {
    child: std::process::Child,
    issuer: String,
}

impl OidcProvider {
    fn start(users: &Path, redirect: &str, client_id: &str, secret: &str) -> OidcProvider {
        use std::io::BufRead;
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
        let mut child = Command::new("node")
            .arg("tests/oidc-idp.mjs")
            .arg(users)
            .args([redirect, client_id, secret])
            .current_dir(&web)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node (./test.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(issuer) = line.strip_prefix("issuer ") {
                    let _ = sender.send(issuer.to_string());
                }
            }
        });
        let issuer = receiver
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the OIDC provider did not start within 30 s");
        OidcProvider { child, issuer }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Single sign-on through OIDC against a real OpenID Provider (npm's `oidc-provider`, its
/// login form driven in Chromium): the login page's button, claims mapped to roles and
/// traits (`{{email.local(external.email)}}` as the login), `jsh login --auth` through its
/// loopback callback and `jsh ssh` with that login, a changed group giving a changed role
/// at the next login, a user the provider no longer knows refused, claims that map to no
/// role refused with the reason, a provider naming a user as a local user refused, a
/// callback from another browser (login CSRF) and an open redirect refused.
#[test]
fn browser_single_sign_on_through_an_oidc_provider() {
    let login = jumpgate_test_support::ensure_timing_login();
    let idp_dir = tempfile::tempdir().unwrap();
    let users = idp_dir.path().join("users.json");
    std::fs::write(
        &users,
        serde_json::json!({
            "ann": {"email": format!("{login}@example.com"), "groups": ["devs"]},
            "nora": {"email": "nora@example.com", "groups": ["visitors"]},
            // The provider names her "alice", as the cluster's local (password) user.
            "mallory": {"email": "alice", "groups": ["devs"]},
            "bea": {"email": "bea@example.com", "groups": ["devs"]},
        })
        .to_string(),
    )
    .unwrap();
    let mut provider: Option<OidcProvider> = None;
    browser_tests_with("sso.mjs", ".", |cluster| {
        let callback = format!(
            "https://{}/v1/webapi/oidc/callback",
            cluster.proxy.replace("localhost", "127.0.0.1")
        );
        let idp = OidcProvider::start(&users, &callback, "jumpgate", "s3cr3t-of-the-client");
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
                "kind: oidc\nversion: v3\nmetadata: {{name: idp}}\nspec:\n  issuer_url: {}\n  \
                 client_id: jumpgate\n  client_secret: s3cr3t-of-the-client\n  redirect_url: \
                 {callback}\n  display: Test IdP\n  scope: [email, groups]\n  claims_to_roles:\n    \
                 - {{claim: groups, value: devs, roles: [sso-dev]}}\n    \
                 - {{claim: groups, value: 'aud*', roles: [auditor]}}\n",
                idp.issuer
            ),
        );
        // The same provider behind a connector whose logins last five minutes.
        cluster.create_resource(
            &dir,
            "brief.yaml",
            &format!(
                "kind: oidc\nversion: v3\nmetadata: {{name: brief}}\nspec:\n  issuer_url: {}\n  \
                 client_id: jumpgate\n  client_secret: s3cr3t-of-the-client\n  redirect_url: \
                 {callback}\n  display: Brief IdP\n  scope: [email, groups]\n  max_session_ttl: 5m\n  claims_to_roles:\n    \
                 - {{claim: groups, value: devs, roles: [sso-dev]}}\n",
                idp.issuer
            ),
        );
        // The secret stays in auth: `jctl get` hides it unless asked.
        let shown = cluster.bins.jctl_ok(&cluster.data, &["get", "oidc/idp"]);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let with = cluster
            .bins
            .jctl_ok(&cluster.data, &["get", "oidc/idp", "--with-secrets"]);
        assert!(with.contains("s3cr3t-of-the-client"), "{with}");
        provider = Some(idp);
        vec![
            ("JUMPGATE_IDP_USERS", users.display().to_string()),
            ("JUMPGATE_SSO_LOGIN", login.to_string()),
            ("JUMPGATE_JSH", support::jsh_bin().to_string()),
        ]
    });
    drop(provider);
}
