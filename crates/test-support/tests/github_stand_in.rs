//! The GitHub stand-in driven over HTTP by a real client (curl), behaviour by behaviour as its
//! module docs list them: the OAuth web flow and its errors, the token exchange and its
//! errors, the REST endpoints, their authentication, scopes and paging, and state changed
//! while it runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use jumpgate_test_support::{
    CODE_LIFETIME, GITHUB_DEFAULT_PASSWORD, GithubStandIn, GithubTeam, GithubUser, OauthApp,
};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use url::Url;

const CLIENT_ID: &str = "Iv1.jumpgate0test";
const SECRET: &str = "s3cr3t-of-the-app";
/// A web UI's callback, and one on loopback as `jsh login` uses.
const CALLBACK: &str = "https://jumpgate.example.com/v1/webapi/github/callback";
const LOOPBACK_CALLBACK: &str = "http://127.0.0.1/callback";

/// What curl got: status, headers (names lowercased) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    fn location(&self) -> Url {
        assert_eq!(self.status, 302, "not a redirect: {self:?}");
        Url::parse(self.header("location").expect("a Location header")).unwrap()
    }

    fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn curl(args: &[&str]) -> Reply {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-"])
        .args(args)
        .output()
        .expect("running curl");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("headers and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(url: &str, headers: &[&str]) -> Reply {
    let mut args = Vec::new();
    for header in headers {
        args.extend(["-H", header]);
    }
    args.push(url);
    curl(&args)
}

/// A POST of `fields`, form-encoded, with extra curl arguments before the URL.
fn post_form(url: &str, fields: &[(&str, &str)], extra: &[&str]) -> Reply {
    let encoded: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut args: Vec<&str> = extra.to_vec();
    for field in &encoded {
        args.extend(["--data-urlencode", field]);
    }
    args.push(url);
    curl(&args)
}

fn api(base: &str, path: &str, token: &str) -> Reply {
    get(
        &format!("{base}{path}"),
        &[&format!("Authorization: Bearer {token}")],
    )
}

fn stand_in() -> GithubStandIn {
    let github = GithubStandIn::start();
    github.add_app(OauthApp::new(CLIENT_ID, SECRET, CALLBACK));
    github.add_user(
        GithubUser::new("octocat", 583231)
            .name("The Octocat")
            .email("octocat@github.example")
            .password("hunter2-octo")
            .org("octo-org")
            .team("octo-org", "ops", "Ops")
            .team("acme", "admins", "Admins"),
    );
    github
}

/// The browser's part: the authorize page, then the form submitted with `authorize`.
fn sign_in(
    web: &str,
    params: &[(&str, &str)],
    login: &str,
    password: &str,
    authorize: &str,
) -> Reply {
    let mut url = Url::parse(&format!("{web}/login/oauth/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    let page = get(url.as_str(), &[]);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    for field in [
        "id=\"login_field\"",
        "id=\"password\"",
        "name=\"authorize\" value=\"1\"",
        "value=\"0\"",
    ] {
        assert!(page.body.contains(field), "no {field} in {}", page.body);
    }
    let mut fields: Vec<(&str, &str)> = params
        .iter()
        .copied()
        .filter(|(key, _)| *key != "login")
        .collect();
    fields.extend([
        ("login", login),
        ("password", password),
        ("authorize", authorize),
    ]);
    post_form(&format!("{web}/login/oauth/authorize"), &fields, &[])
}

/// The whole flow up to the code: the redirect's URL.
fn code_for(web: &str, scope: &str, redirect_uri: Option<&str>) -> Url {
    let mut params = vec![
        ("client_id", CLIENT_ID),
        ("scope", scope),
        ("state", "st-123"),
    ];
    if let Some(redirect_uri) = redirect_uri {
        params.push(("redirect_uri", redirect_uri));
    }
    sign_in(web, &params, "octocat", "hunter2-octo", "1").location()
}

fn exchange(web: &str, code: &str, accept: &str) -> Reply {
    post_form(
        &format!("{web}/login/oauth/access_token"),
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("code", code),
        ],
        &["-H", accept],
    )
}

fn token_for(web: &str, scope: &str) -> String {
    let redirect = code_for(web, scope, None);
    let code = query(&redirect, "code").unwrap();
    let reply = exchange(web, &code, "Accept: application/json");
    reply.json()["access_token"].as_str().unwrap().to_string()
}

#[test]
fn web_flow_then_api_in_the_github_com_layout() {
    let github = stand_in();
    let web = github.endpoint_url();
    let api_base = github.api_endpoint_url();

    let redirect = code_for(&web, "read:org", None);
    assert_eq!(redirect.as_str().split('?').next().unwrap(), CALLBACK);
    assert_eq!(query(&redirect, "state").as_deref(), Some("st-123"));
    let code = query(&redirect, "code").unwrap();
    assert_eq!(code.len(), 20);

    let reply = exchange(&web, &code, "Accept: application/json");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let grant = reply.json();
    assert_eq!(grant["token_type"], "bearer");
    assert_eq!(grant["scope"], "read:org");
    let token = grant["access_token"].as_str().unwrap();
    assert!(token.starts_with("gho_") && token.len() == 40, "{token}");

    let user = api(&api_base, "/user", token);
    assert_eq!(user.status, 200, "{user:?}");
    assert_eq!(user.header("x-oauth-scopes"), Some("read:org"));
    let user = user.json();
    assert_eq!(user["login"], "octocat");
    assert_eq!(user["id"], 583231);
    assert_eq!(user["type"], "User");
    assert_eq!(user["name"], "The Octocat");
    assert_eq!(user["email"], "octocat@github.example");
    assert!(user["node_id"].as_str().unwrap().starts_with("MDQ6VXNlcj"));
    assert_eq!(user["url"], format!("{api_base}/users/octocat"));

    let teams = api(&api_base, "/user/teams", token);
    assert_eq!(teams.status, 200, "{teams:?}");
    assert_eq!(teams.header("link"), None, "two teams fit one page");
    let teams = teams.json();
    let teams = teams.as_array().unwrap();
    assert_eq!(teams.len(), 2);
    assert_eq!(teams[0]["slug"], "ops");
    assert_eq!(teams[0]["name"], "Ops");
    assert!(teams[0]["id"].as_u64().is_some());
    assert_eq!(teams[0]["organization"]["login"], "octo-org");
    assert!(teams[0]["organization"]["id"].as_u64().is_some());
    assert_eq!(teams[1]["organization"]["login"], "acme");

    let orgs = api(&api_base, "/user/orgs", token).json();
    let logins: Vec<&str> = orgs
        .as_array()
        .unwrap()
        .iter()
        .map(|org| org["login"].as_str().unwrap())
        .collect();
    assert_eq!(
        logins,
        ["octo-org", "acme"],
        "set orgs, then the teams' orgs"
    );
    assert_eq!(orgs[0]["id"], teams[0]["organization"]["id"]);

    // github.com serves no API, api.github.com no OAuth; the log shows who was asked what.
    assert_eq!(api(&web, "/user", token).status, 404);
    let on_api = exchange(&api_base, &code, "Accept: application/json");
    assert_eq!(on_api.status, 404);
    let log = github.requests();
    let last = &log[log.len() - 2..];
    assert_eq!(
        (
            last[0].host,
            last[0].method.as_str(),
            last[0].target.as_str(),
            last[0].status
        ),
        ("github.com", "GET", "/user", 404)
    );
    assert_eq!(
        (
            last[1].host,
            last[1].method.as_str(),
            last[1].target.as_str(),
            last[1].status
        ),
        ("api.github.com", "POST", "/login/oauth/access_token", 404)
    );
}

#[test]
fn enterprise_layout_serves_the_flow_and_the_api_under_api_v3() {
    let github = stand_in();
    let web = github.enterprise_endpoint_url();
    let api_base = github.enterprise_api_endpoint_url();
    assert_eq!(api_base, format!("{web}/api/v3"));

    let token = token_for(&web, "read:org");
    let user = api(&api_base, "/user", &token);
    assert_eq!(user.status, 200, "{user:?}");
    assert_eq!(user.json()["url"], format!("{api_base}/users/octocat"));
    let teams = api(&api_base, "/user/teams", &token).json();
    assert_eq!(teams.as_array().unwrap().len(), 2);
    // The GHES host has no API at its root; the token is the same everywhere.
    assert_eq!(api(&web, "/user", &token).status, 404);
    assert_eq!(api(&github.api_endpoint_url(), "/user", &token).status, 200);
}

#[test]
fn authorization_errors_are_githubs() {
    let github = stand_in();
    let web = github.endpoint_url();

    // Unknown or missing client_id: a 404 page.
    let page = get(&format!("{web}/login/oauth/authorize?client_id=nope"), &[]);
    assert_eq!(page.status, 404);
    assert_eq!(
        get(&format!("{web}/login/oauth/authorize"), &[]).status,
        404
    );

    // A redirect_uri off the callback: back to the registered callback with the error.
    for bad in [
        "https://jumpgate.example.com/elsewhere",
        "https://jumpgate.example.com:8443/v1/webapi/github/callback",
        "https://evil.example.org/v1/webapi/github/callback",
        "http://jumpgate.example.com/v1/webapi/github/callback",
    ] {
        let mut url = Url::parse(&format!("{web}/login/oauth/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", bad)
            .append_pair("state", "st-9");
        let to = get(url.as_str(), &[]).location();
        assert_eq!(to.as_str().split('?').next().unwrap(), CALLBACK, "{bad}");
        assert_eq!(
            query(&to, "error").as_deref(),
            Some("redirect_uri_mismatch")
        );
        assert_eq!(
            query(&to, "error_description").as_deref(),
            Some("The redirect_uri MUST match the registered callback URL for this application.")
        );
        assert!(
            query(&to, "error_uri")
                .unwrap()
                .contains("redirect-uri-mismatch")
        );
        assert_eq!(query(&to, "state").as_deref(), Some("st-9"));
        assert_eq!(query(&to, "code"), None);
    }

    // A path below the callback's, and a subdomain of its host, are allowed.
    let below = format!("{CALLBACK}/web");
    let to = code_for(&web, "", Some(&below));
    assert!(to.as_str().starts_with(&below));
    let sub = "https://login.jumpgate.example.com/v1/webapi/github/callback";
    assert!(code_for(&web, "", Some(sub)).as_str().starts_with(sub));

    // The user cancels: access_denied, with the description and state.
    let denied = sign_in(
        &web,
        &[("client_id", CLIENT_ID), ("state", "st-7")],
        "octocat",
        "",
        "0",
    )
    .location();
    assert_eq!(query(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(
        query(&denied, "error_description").as_deref(),
        Some("The user has denied your application access.")
    );
    assert!(
        query(&denied, "error_uri")
            .unwrap()
            .contains("access-denied")
    );
    assert_eq!(query(&denied, "state").as_deref(), Some("st-7"));

    // A wrong password: the form again, with GitHub's message, and no redirect.
    let wrong = sign_in(&web, &[("client_id", CLIENT_ID)], "octocat", "nope", "1");
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("Incorrect username or password."));
    assert_eq!(wrong.header("location"), None);
    // login= pre-fills the form.
    let page = get(
        &format!("{web}/login/oauth/authorize?client_id={CLIENT_ID}&login=octocat"),
        &[],
    );
    assert!(page.body.contains("value=\"octocat\""), "{}", page.body);

    // A suspended app.
    github.suspend_app(CLIENT_ID);
    let to = get(
        &format!("{web}/login/oauth/authorize?client_id={CLIENT_ID}&state=s"),
        &[],
    )
    .location();
    assert_eq!(
        query(&to, "error").as_deref(),
        Some("application_suspended")
    );
}

#[test]
fn loopback_callbacks_take_any_port() {
    let github = stand_in();
    let web = github.endpoint_url();
    github.add_app(OauthApp::new(CLIENT_ID, SECRET, LOOPBACK_CALLBACK));

    let redirect_uri = "http://127.0.0.1:45123/callback";
    let to = code_for(&web, "read:org", Some(redirect_uri));
    assert_eq!(to.port(), Some(45123));
    let code = query(&to, "code").unwrap();
    // The exchange names the same redirect_uri: good; another one: redirect_uri_mismatch.
    let exchange_with = |code: &str, redirect_uri: &str| {
        post_form(
            &format!("{web}/login/oauth/access_token"),
            &[
                ("client_id", CLIENT_ID),
                ("client_secret", SECRET),
                ("code", code),
                ("redirect_uri", redirect_uri),
            ],
            &["-H", "Accept: application/json"],
        )
        .json()
    };
    let other = exchange_with(&code, "http://127.0.0.1:45124/callback");
    assert_eq!(other["error"], "redirect_uri_mismatch", "{other}");
    let off = exchange_with(&code, "http://127.0.0.1:45123/elsewhere");
    assert_eq!(off["error"], "redirect_uri_mismatch", "{off}");
    let good = exchange_with(&code, redirect_uri);
    assert!(good["access_token"].as_str().is_some(), "{good}");
}

#[test]
fn token_exchange_errors_are_githubs() {
    let github = stand_in();
    let web = github.endpoint_url();
    let token_url = format!("{web}/login/oauth/access_token");
    let fresh_code = || query(&code_for(&web, "read:org", None), "code").unwrap();

    // Default format: form-encoded, with the documented fields.
    let code = fresh_code();
    let reply = exchange(&web, &code, "X-Nothing: 1");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    let form = reply.form();
    let keys: Vec<&str> = form.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["access_token", "scope", "token_type"]);
    assert_eq!(form[2].1, "bearer");

    // Used once: the second exchange is a bad code, HTTP 200 as GitHub answers.
    let again = exchange(&web, &code, "Accept: application/json");
    assert_eq!(again.status, 200);
    let again = again.json();
    assert_eq!(again["error"], "bad_verification_code");
    assert_eq!(
        again["error_description"],
        "The code passed is incorrect or expired."
    );
    assert!(
        again["error_uri"]
            .as_str()
            .unwrap()
            .ends_with("#bad-verification-code")
    );
    assert_eq!(again.get("access_token"), None);

    // An unknown code, in the form format.
    let unknown = exchange(&web, "0123456789abcdef0123", "Accept: */*").form();
    assert_eq!(unknown[0], ("error".into(), "bad_verification_code".into()));

    // Wrong secret, or unknown client: incorrect_client_credentials (the code stays good).
    let code = fresh_code();
    for (id, secret) in [(CLIENT_ID, "wrong"), ("other-app", SECRET)] {
        let reply = post_form(
            &token_url,
            &[
                ("client_id", id),
                ("client_secret", secret),
                ("code", &code),
            ],
            &["-H", "Accept: application/json"],
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["error"], "incorrect_client_credentials");
        assert_eq!(
            reply.json()["error_description"],
            "The client_id and/or client_secret passed are incorrect."
        );
    }
    // A redirect_uri off the callback.
    let mismatch = post_form(
        &token_url,
        &[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("code", &code),
            ("redirect_uri", "https://evil.example.org/cb"),
        ],
        &["-H", "Accept: application/json"],
    )
    .json();
    assert_eq!(mismatch["error"], "redirect_uri_mismatch");
    // A JSON body is taken too, and the code was still good.
    let body = serde_json::json!({
        "client_id": CLIENT_ID, "client_secret": SECRET, "code": code,
        "redirect_uri": CALLBACK,
    })
    .to_string();
    let reply = curl(&[
        "-H",
        "Content-Type: application/json",
        "-H",
        "Accept: application/json",
        "--data",
        &body,
        &token_url,
    ]);
    assert!(reply.json()["access_token"].as_str().is_some(), "{reply:?}");

    // Client credentials as HTTP Basic, and the XML format.
    let code = fresh_code();
    let reply = post_form(
        &token_url,
        &[("code", &code)],
        &[
            "-u",
            &format!("{CLIENT_ID}:{SECRET}"),
            "-H",
            "Accept: application/xml",
        ],
    );
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/xml")
    );
    assert!(
        reply.body.starts_with("<OAuth><access_token>gho_"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("<token_type>bearer</token_type>"));

    // Codes expire after 10 minutes.
    let code = fresh_code();
    github.advance_clock(CODE_LIFETIME - Duration::from_secs(5));
    let code_late = fresh_code();
    github.advance_clock(Duration::from_secs(10));
    let expired = exchange(&web, &code, "Accept: application/json").json();
    assert_eq!(expired["error"], "bad_verification_code");
    let in_time = exchange(&web, &code_late, "Accept: application/json").json();
    assert!(in_time["access_token"].as_str().is_some(), "{in_time}");
}

#[test]
fn api_authentication_is_githubs() {
    let github = stand_in();
    let api_base = github.api_endpoint_url();
    let token = github.issue_token("octocat", &["read:org"]);
    let user_url = format!("{api_base}/user");

    let anonymous = get(&user_url, &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["message"], "Requires authentication");

    let bad = get(&user_url, &["Authorization: Bearer gho_notatoken"]);
    assert_eq!(bad.status, 401);
    let bad = bad.json();
    assert_eq!(bad["message"], "Bad credentials");
    assert_eq!(bad["documentation_url"], "https://docs.github.com/rest");
    let basic = get(&user_url, &["Authorization: Basic b2N0b2NhdDpodW50ZXIy"]);
    assert_eq!(basic.status, 401);

    // Both schemes GitHub takes.
    for scheme in ["Bearer", "token", "bearer"] {
        let reply = get(&user_url, &[&format!("Authorization: {scheme} {token}")]);
        assert_eq!(reply.status, 200, "{scheme}: {reply:?}");
    }
    // No User-Agent: refused.
    let no_agent = get(
        &user_url,
        &[&format!("Authorization: Bearer {token}"), "User-Agent:"],
    );
    assert_eq!(no_agent.status, 403);
    assert!(no_agent.body.contains("User-Agent"));
    // API versions.
    for (version, status) in [
        ("2022-11-28", 200),
        ("2026-03-10", 200),
        ("2019-01-01", 400),
    ] {
        let reply = get(
            &user_url,
            &[
                &format!("Authorization: Bearer {token}"),
                &format!("X-GitHub-Api-Version: {version}"),
            ],
        );
        assert_eq!(reply.status, status, "{version}: {reply:?}");
    }
}

#[test]
fn scopes_gate_teams_and_orgs() {
    let github = stand_in();
    let web = github.endpoint_url();
    let api_base = github.api_endpoint_url();

    // No scope asked: a token without scopes reads /user but not teams or orgs.
    let bare = token_for(&web, "");
    let user = api(&api_base, "/user", &bare);
    assert_eq!(user.status, 200);
    assert_eq!(user.header("x-oauth-scopes"), Some(""));
    let teams = api(&api_base, "/user/teams", &bare);
    assert_eq!(teams.status, 403, "{teams:?}");
    assert_eq!(
        teams.header("x-accepted-oauth-scopes"),
        Some("admin:org, read:org, repo, user, write:org")
    );
    let orgs = api(&api_base, "/user/orgs", &bare);
    assert_eq!(orgs.status, 403);
    assert_eq!(
        orgs.json()["message"],
        "You need at least read:org scope or user scope to list your organizations."
    );
    assert_eq!(api(&api_base, "/user/emails", &bare).status, 404);

    // Scopes that imply read:org work; normalisation drops implied ones.
    let redirect = code_for(&web, "user gist user:email", None);
    let reply = exchange(
        &web,
        &query(&redirect, "code").unwrap(),
        "Accept: application/json",
    )
    .json();
    assert_eq!(reply["scope"], "user,gist");
    let token = reply["access_token"].as_str().unwrap();
    let teams = api(&api_base, "/user/teams", token);
    assert_eq!(teams.status, 200);
    assert_eq!(teams.header("x-oauth-scopes"), Some("user, gist"));
    let emails = api(&api_base, "/user/emails", token).json();
    assert_eq!(emails[0]["email"], "octocat@github.example");
    assert_eq!(emails[0]["primary"], true);
    for scope in ["admin:org", "write:org", "repo"] {
        let token = github.issue_token("octocat", &[scope]);
        assert_eq!(api(&api_base, "/user/teams", &token).status, 200, "{scope}");
    }
    let repo = github.issue_token("octocat", &["repo"]);
    assert_eq!(api(&api_base, "/user/orgs", &repo).status, 403);
}

#[test]
fn teams_are_paged_like_github() {
    let github = stand_in();
    let api_base = github.api_endpoint_url();
    let teams: Vec<GithubTeam> = (1..=65)
        .map(|n| GithubTeam::new("big-org", &format!("team-{n}"), &format!("Team {n}")))
        .collect();
    github.set_teams("octocat", teams);
    let token = github.issue_token("octocat", &["read:org"]);
    let slugs = |reply: &Reply| -> Vec<String> {
        reply
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|team| team["slug"].as_str().unwrap().to_string())
            .collect()
    };

    // A client that ignores paging sees 30.
    let first = api(&api_base, "/user/teams", &token);
    assert_eq!(slugs(&first).len(), 30);
    assert_eq!(
        first.header("link"),
        Some(
            format!(
                "<{api_base}/user/teams?page=2>; rel=\"next\", <{api_base}/user/teams?page=3>; rel=\"last\""
            )
            .as_str()
        )
    );
    // Following rel="next" gets all 65, in order.
    let mut all = Vec::new();
    let mut next = Some(format!("{api_base}/user/teams"));
    let mut pages = 0;
    while let Some(url) = next {
        let reply = get(&url, &[&format!("Authorization: Bearer {token}")]);
        all.extend(slugs(&reply));
        pages += 1;
        next = reply.header("link").and_then(|link| {
            link.split(", ")
                .find(|part| part.ends_with("rel=\"next\""))
                .map(|part| part[1..part.find('>').unwrap()].to_string())
        });
    }
    assert_eq!(pages, 3);
    // The request log shows the pages followed, on the API host.
    let targets: Vec<String> = github
        .requests()
        .into_iter()
        .filter(|request| request.host == "api.github.com")
        .map(|request| request.target)
        .collect();
    assert!(
        targets.ends_with(&[
            "/user/teams".to_string(),
            "/user/teams?page=2".to_string(),
            "/user/teams?page=3".to_string(),
        ]),
        "{targets:?}"
    );
    let expected: Vec<String> = (1..=65).map(|n| format!("team-{n}")).collect();
    assert_eq!(all, expected);

    // The last page links back; per_page is repeated in the links.
    let last = api(&api_base, "/user/teams?per_page=20&page=4", &token);
    assert_eq!(
        slugs(&last),
        ["team-61", "team-62", "team-63", "team-64", "team-65"]
    );
    assert_eq!(
        last.header("link"),
        Some(
            format!(
                "<{api_base}/user/teams?per_page=20&page=3>; rel=\"prev\", <{api_base}/user/teams?per_page=20&page=1>; rel=\"first\""
            )
            .as_str()
        )
    );
    // At most 100 a page: everything, no Link.
    let big = api(&api_base, "/user/teams?per_page=500", &token);
    assert_eq!(slugs(&big).len(), 65);
    assert_eq!(big.header("link"), None);
    // Past the end: an empty page.
    assert!(slugs(&api(&api_base, "/user/teams?page=9", &token)).is_empty());
}

#[test]
fn changes_take_effect_at_once() {
    let github = stand_in();
    let web = github.endpoint_url();
    let api_base = github.api_endpoint_url();
    let token = token_for(&web, "read:org");

    // Moved between teams: the same token reads the new teams.
    github.set_teams("octocat", vec![GithubTeam::new("octo-org", "dev", "Dev")]);
    let teams = api(&api_base, "/user/teams", &token).json();
    assert_eq!(teams.as_array().unwrap().len(), 1);
    assert_eq!(teams[0]["slug"], "dev");
    github.update_user("octocat", |user| user.teams.clear());
    assert_eq!(
        api(&api_base, "/user/teams", &token).json(),
        serde_json::json!([])
    );

    // The user revokes the app: that token is dead, a new login works.
    github.revoke_tokens("octocat");
    assert_eq!(api(&api_base, "/user", &token).status, 401);
    let token = token_for(&web, "read:org");
    assert_eq!(api(&api_base, "/user", &token).status, 200);

    // A code issued before the user is deleted is no good after, nor is the token.
    let code = query(&code_for(&web, "read:org", None), "code").unwrap();
    assert!(github.remove_user("octocat"));
    let reply = exchange(&web, &code, "Accept: application/json").json();
    assert_eq!(reply["error"], "bad_verification_code");
    let gone = api(&api_base, "/user", &token);
    assert_eq!(gone.status, 401);
    assert_eq!(gone.json()["message"], "Bad credentials");
    let refused = sign_in(
        &web,
        &[("client_id", CLIENT_ID)],
        "octocat",
        "hunter2-octo",
        "1",
    );
    assert!(refused.body.contains("Incorrect username or password."));

    // A new user with the default password signs in.
    github.add_user(GithubUser::new("hubot", 2).team("octo-org", "bots", "Bots"));
    let to = sign_in(
        &web,
        &[("client_id", CLIENT_ID)],
        "hubot",
        GITHUB_DEFAULT_PASSWORD,
        "1",
    )
    .location();
    assert!(query(&to, "code").is_some());
    assert_eq!(query(&to, "state"), None, "no state asked, none given back");
}

#[test]
fn dropping_stops_the_server() {
    let github = stand_in();
    let web = github.endpoint_url();
    let addr = web.trim_start_matches("http://").to_string();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    drop(github);
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

/// Started and dropped inside an async test: the stand-in runs on its own thread and runtime.
#[tokio::test]
async fn works_from_an_async_test() {
    let github = stand_in();
    let token = github.issue_token("octocat", &["read:org"]);
    let api_base = github.api_endpoint_url();
    let reply = tokio::task::spawn_blocking(move || api(&api_base, "/user/teams", &token))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    drop(github);
}
