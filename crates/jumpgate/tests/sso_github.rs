//! Single sign-on through GitHub (docs/sso.md), end to end: a real `jumpgate start --dev`,
//! real `jsh`, a real headless Chromium driven by Playwright (`web/tests/github.mjs`, on
//! `web/tests/harness.mjs`), and **a stand-in for github.com** (`GithubStandIn`: GitHub's
//! OAuth web flow and REST API as GitHub documents them, in this process; github.com cannot
//! be reached from here). The script runs in phases over one cluster; between them this test
//! changes the user's teams at "GitHub", as an organisation's owner would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use jumpgate_test_support::{GithubStandIn, GithubTeam, GithubUser, OauthApp};
use support::{PASSWORD, start_dev_cluster};

/// Runs the tests of `web/tests/github.mjs` whose names match `tests`; panics with the
/// report (and the daemon's log) unless they all pass.
fn run_script(cluster: &support::Cluster, tests: &str, env: &[(&str, String)]) {
    let url = format!(
        "https://{}",
        cluster.proxy.replace("localhost", "127.0.0.1")
    );
    let out = support::browser_script("github.mjs")
        .env("JUMPGATE_WEB_URL", &url)
        .env("JUMPGATE_CA", cluster.ca())
        .env("JUMPGATE_USER", "alice")
        .env("JUMPGATE_PASSWORD", PASSWORD)
        .env("JUMPGATE_WEB_TESTS", tests)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .expect("node (./test.sh installs it)");
    support::assert_browser_report(&out, || {
        format!("daemon log:\n{}", cluster.daemon.log_text())
    });
}

/// GitHub logins: the login page's button, teams to roles (`teams_to_roles`, and
/// `teams_to_logins` as Teleport reads it), the GitHub user name as the templated SSH login
/// (`{{external.username}}`) for `jsh login --auth github --browser none` then `jsh ssh`,
/// teams read over GitHub's pages, a GitHub Enterprise Server connector (which does not take
/// over a user github.com signed in), a changed team
/// giving changed roles at the next login, a user removed from the organisation's teams
/// and a user removed from GitHub refused, teams that map to no role refused naming the
/// teams, a GitHub user named as a local user refused, a mismatched or unknown `state`
/// refused, and GitHub's own error answers (`access_denied`, `bad_verification_code`)
/// shown as GitHub gave them.
#[test]
fn browser_single_sign_on_through_github() {
    let login = jumpgate_test_support::ensure_timing_login();
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_dev_cluster(dir.path());
    // The harness's own user (the local user a GitHub "alice" must not take over).
    cluster.add_user("alice", "root");
    let node = cluster.wait_for_dev_node();
    let proxy = format!(
        "https://{}",
        cluster.proxy.replace("localhost", "127.0.0.1")
    );
    let callback = format!("{proxy}/v1/webapi/github/callback");

    // The stand-in for github.com, and for a GitHub Enterprise Server.
    let github = GithubStandIn::start();
    github.add_app(OauthApp::new("Iv1.jumpgate", "github-secret", &callback));
    github.add_app(OauthApp::new("Iv1.ghes", "ghes-secret", &callback));
    // The SSH login's user: in 130 teams of another organisation first, so the mapped
    // team is only on GitHub's second page.
    let mut octo = GithubUser::new(login, 1001).name("Octo Cat");
    for n in 0..130 {
        octo = octo.team("fillers", &format!("filler-{n:03}"), &format!("Filler {n}"));
    }
    github.add_user(octo.team("octocats", "devs", "Developers"));
    github.add_user(GithubUser::new("nora", 1002).team("octocats", "visitors", "Visitors"));
    github.add_user(GithubUser::new("alice", 1003).team("octocats", "devs", "Developers"));
    github.add_user(GithubUser::new("gus", 1004).team("octocats", "devs", "Developers"));
    github.add_user(GithubUser::new("gone", 1005).team("octocats", "devs", "Developers"));
    github.add_user(GithubUser::new("grace", 1006).team("octocats", "devs", "Developers"));

    cluster.create_resource(
        dir.path(),
        "sso-gh.yaml",
        "kind: role\nversion: v7\nmetadata: {name: sso-gh}\nspec:\n  allow:\n    \
         logins: ['{{external.username}}']\n    node_labels: {'*': '*'}\n",
    );
    cluster.create_resource(
        dir.path(),
        "github.yaml",
        &format!(
            "kind: github\nversion: v3\nmetadata: {{name: github}}\nspec:\n  client_id: \
             Iv1.jumpgate\n  client_secret: github-secret\n  redirect_url: {callback}\n  \
             display: GitHub\n  endpoint_url: {}\n  api_endpoint_url: {}\n  teams_to_roles:\n    \
             - {{organization: octocats, team: devs, roles: [sso-gh]}}\n  teams_to_logins:\n    \
             - {{organization: octocats, team: auditors, logins: [auditor]}}\n",
            github.endpoint_url(),
            github.api_endpoint_url()
        ),
    );
    cluster.create_resource(
        dir.path(),
        "ghes.yaml",
        &format!(
            "kind: github\nversion: v3\nmetadata: {{name: ghes}}\nspec:\n  client_id: Iv1.ghes\n  \
             client_secret: ghes-secret\n  redirect_url: {callback}\n  display: GitHub \
             Enterprise\n  endpoint_url: {}\n  api_endpoint_url: {}\n  teams_to_roles:\n    \
             - {{organization: octocats, team: devs, roles: [sso-gh]}}\n",
            github.enterprise_endpoint_url(),
            github.enterprise_api_endpoint_url()
        ),
    );
    let shown = cluster
        .bins
        .jctl_ok(&cluster.data, &["get", "github/github"]);
    assert!(!shown.contains("github-secret"), "{shown}");

    let env = vec![
        ("JUMPGATE_GITHUB_LOGIN", login.to_string()),
        ("JUMPGATE_JSH", support::jsh_bin().to_string()),
        ("JUMPGATE_NODE", node.clone()),
    ];
    run_script(&cluster, "^github:", &env);

    // The teams were read over GitHub's pages, from the hosts each connector names.
    let requests = github.requests();
    let served = |host: &str, prefix: &str| {
        requests
            .iter()
            .filter(|r| r.host == host && r.target.starts_with(prefix) && r.status == 200)
            .count()
    };
    assert!(
        requests.iter().any(|r| r.host == "api.github.com"
            && r.target.contains("/user/teams")
            && r.target.contains("page=2")),
        "the second page of teams was not read: {requests:?}"
    );
    assert!(
        served("enterprise", "/api/v3/user/teams") > 0,
        "{requests:?}"
    );
    assert!(
        served("enterprise", "/login/oauth/access_token") > 0,
        "{requests:?}"
    );
    // Logins are audited, refusals with their reason.
    let logins = support::audit_events(&cluster.data, "user.login");
    let github_logins: Vec<_> = logins.iter().filter(|e| e["method"] == "github").collect();
    assert!(
        github_logins
            .iter()
            .any(|e| e["success"] == true && e["user"] == "grace" && e["connector"] == "ghes"),
        "{github_logins:?}"
    );
    for reason in [
        "octocats/visitors",
        "bad_verification_code",
        "access_denied",
        "a local user named \"alice\" exists",
        "signed in through the github connector \"github\", not through github connector \"ghes\"",
        "started in another browser",
    ] {
        assert!(
            github_logins.iter().any(|e| e["success"] == false
                && e["error"].as_str().unwrap_or_default().contains(reason)),
            "no failed login audited with {reason:?}: {github_logins:?}"
        );
    }

    // An owner adds the user to the auditors team: the next login has the role.
    github.update_user(login, |user| {
        user.teams
            .push(GithubTeam::new("octocats", "auditors", "Auditors"));
    });
    run_script(&cluster, "^github-changed:", &env);

    // gus leaves the organisation's teams; gone leaves GitHub.
    github.set_teams("gus", Vec::new());
    assert!(github.remove_user("gone"));
    run_script(&cluster, "^github-removed:", &env);
    // GitHub's users are temporary users of the connector (until their sessions expire).
    let users = cluster.bins.jctl_ok(&cluster.data, &["users", "ls"]);
    let line = users
        .lines()
        .find(|line| line.split_whitespace().next() == Some(login))
        .unwrap_or_else(|| panic!("{users}"));
    assert!(line.contains("github"), "{users}");
}
