//! GitHub (and GitHub Enterprise Server): the OAuth app web flow, then GitHub's REST API
//! for who the user is and which teams they are in, as Teleport's GitHub connector does.
//!
//! 1. [`start`]: the browser goes to `ENDPOINT/login/oauth/authorize` with the app's
//!    `client_id`, the connector's `redirect_uri`, the login's `state`, scope `read:org`
//!    (team membership) and a PKCE challenge (S256; GitHub accepts it, older GitHub
//!    Enterprise Servers ignore it).
//! 2. [`finish`]: the code is exchanged at `ENDPOINT/login/oauth/access_token` with the
//!    client secret and the PKCE verifier (`Accept: application/json`; GitHub reports a bad
//!    code as HTTP 200 with an `error` member), then `API/user` names the user and
//!    `API/user/teams` lists their teams, following the `Link` header's `next` pages, at
//!    most [`MAX_TEAM_PAGES`] of them and only on the API's own host.
//!
//! GitHub has no ID token: the access token is only used here, within this login, and then
//! dropped. The user's GitHub login is their Jumpgate user name. Traits, as Teleport sets
//! them: `logins` (the GitHub login, for `{{internal.logins}}`), `github_teams` (the teams'
//! names); and Jumpgate's `username` (the GitHub login) and `github_orgs`.

use super::http::{HttpClient, read_limited};
use super::{ExternalIdentity, SsoError, provider_error, refused};
use jumpgate_types::GithubConnector;
use jumpgate_types::Traits;
use openidconnect::PkceCodeChallenge;
use serde::Deserialize;
use std::collections::BTreeSet;

/// What the app asks for: read access to the user's organisations and teams.
pub const SCOPE: &str = "read:org";
/// The REST API version asked for (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";
/// Teams are read 100 a page; a user in more than this many pages' worth is refused
/// rather than judged on part of their teams.
pub const MAX_TEAM_PAGES: usize = 20;
const PER_PAGE: usize = 100;

/// The first leg's output: where to send the browser, and the PKCE verifier to keep.
pub struct Started {
    pub redirect_url: String,
    pub pkce_verifier: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The verifier is the login's secret: never in a log.
        f.debug_struct("Started")
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

/// The first leg: GitHub's authorization URL for a login whose `state` is `state`.
pub fn start(connector: &GithubConnector, state: &str) -> Result<Started, SsoError> {
    let spec = &connector.spec;
    let authorize = format!("{}/login/oauth/authorize", spec.endpoint());
    let mut url = url::Url::parse(&authorize)
        .map_err(|err| provider_error(connector, format!("endpoint_url: {err}")))?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    url.query_pairs_mut()
        .append_pair("client_id", &spec.client_id)
        .append_pair("redirect_uri", &spec.redirect_url)
        .append_pair("scope", SCOPE)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", challenge.method().as_str());
    Ok(Started {
        redirect_url: url.to_string(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// The token endpoint's answer: a token, or (with HTTP 200) GitHub's `error`.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Deserialize)]
struct UserAnswer {
    login: String,
    #[serde(default)]
    id: u64,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct TeamAnswer {
    #[serde(default)]
    name: String,
    slug: String,
    organization: OrgAnswer,
}

#[derive(Deserialize)]
struct OrgAnswer {
    login: String,
}

/// The second leg: the code exchanged, the user and their teams read, teams mapped.
pub async fn finish(
    http: &HttpClient,
    connector: &GithubConnector,
    code: &str,
    pkce_verifier: &str,
) -> Result<ExternalIdentity, SsoError> {
    let token = exchange(http, connector, code, pkce_verifier).await?;
    let api = Api {
        http,
        connector,
        token: &token,
    };
    let user: UserAnswer = api.get_json(&api.url("/user")).await?.0;
    let teams = api.teams().await?;
    identity(connector, user, teams)
}

async fn exchange(
    http: &HttpClient,
    connector: &GithubConnector,
    code: &str,
    pkce_verifier: &str,
) -> Result<String, SsoError> {
    let spec = &connector.spec;
    let url = format!("{}/login/oauth/access_token", spec.endpoint());
    let response = http
        .inner()
        .post(&url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[
            ("client_id", spec.client_id.as_str()),
            ("client_secret", spec.client_secret.as_str()),
            ("code", code),
            ("redirect_uri", spec.redirect_url.as_str()),
            ("code_verifier", pkce_verifier),
        ])
        .send()
        .await
        .map_err(|err| provider_error(connector, format!("POST {url}: {err}")))?;
    let status = response.status();
    let body = read_limited(response)
        .await
        .map_err(|err| provider_error(connector, format!("POST {url}: {err}")))?;
    if !status.is_success() {
        return Err(provider_error(
            connector,
            format!(
                "POST {url} answered {status}: {} (check the connector's endpoint_url)",
                excerpt(&body)
            ),
        ));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|err| {
        provider_error(
            connector,
            format!(
                "POST {url} answered no JSON token ({err}): {}",
                excerpt(&body)
            ),
        )
    })?;
    if !answer.error.is_empty() {
        let hint = match answer.error.as_str() {
            "bad_verification_code" => "the code is wrong, expired or used: start the login again",
            "incorrect_client_credentials" => {
                "the connector's client_id or client_secret is not the OAuth app's"
            }
            "redirect_uri_mismatch" => {
                "the connector's redirect_url is not the OAuth app's authorization callback URL"
            }
            _ => "see GitHub's message",
        };
        return Err(refused(
            connector,
            format!(
                "GitHub refused the code: {}{} ({hint})",
                clean(&answer.error),
                if answer.error_description.is_empty() {
                    String::new()
                } else {
                    format!(": {}", clean(&answer.error_description))
                }
            ),
        ));
    }
    if answer.access_token.is_empty() {
        return Err(provider_error(
            connector,
            format!("POST {url} answered neither a token nor an error"),
        ));
    }
    let scopes: Vec<&str> = answer
        .scope
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .collect();
    if !answer.scope.is_empty()
        && !scopes
            .iter()
            .any(|s| matches!(*s, "read:org" | "write:org" | "admin:org" | "user" | "repo"))
    {
        return Err(refused(
            connector,
            format!(
                "the token GitHub gave has scopes {:?}, none of which reads team membership \
                 (read:org); authorize the app with read:org",
                answer.scope
            ),
        ));
    }
    Ok(answer.access_token)
}

/// Calls to GitHub's REST API with one user's token.
struct Api<'a> {
    http: &'a HttpClient,
    connector: &'a GithubConnector,
    token: &'a str,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.connector.spec.api_endpoint())
    }

    /// One GET: its JSON, and the `Link` header's `next` URL.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<(T, Option<String>), SsoError> {
        let connector = self.connector;
        let response = self
            .http
            .inner()
            .get(url)
            .bearer_auth(self.token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .send()
            .await
            .map_err(|err| provider_error(connector, format!("GET {url}: {err}")))?;
        let status = response.status();
        let next = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(next_link);
        let body = read_limited(response)
            .await
            .map_err(|err| provider_error(connector, format!("GET {url}: {err}")))?;
        match status.as_u16() {
            200 => {}
            401 | 403 | 404 => {
                return Err(refused(
                    connector,
                    format!(
                        "GitHub answered GET {url} with {status}: {} (the user revoked the \
                         app, or the token lacks read:org; check the connector's \
                         api_endpoint_url)",
                        message_of(&body)
                    ),
                ));
            }
            _ => {
                return Err(provider_error(
                    connector,
                    format!("GET {url} answered {status}: {}", message_of(&body)),
                ));
            }
        }
        let value = serde_json::from_slice(&body).map_err(|err| {
            provider_error(
                connector,
                format!(
                    "GET {url} answered unexpected JSON ({err}): {}",
                    excerpt(&body)
                ),
            )
        })?;
        Ok((value, next))
    }

    /// Every team of the user, page by page.
    async fn teams(&self) -> Result<Vec<TeamAnswer>, SsoError> {
        let api = url::Url::parse(&self.url("/"))
            .map_err(|err| provider_error(self.connector, format!("api_endpoint_url: {err}")))?;
        let mut url = self.url(&format!("/user/teams?per_page={PER_PAGE}"));
        let mut teams = Vec::new();
        for _ in 0..MAX_TEAM_PAGES {
            let (page, next): (Vec<TeamAnswer>, _) = self.get_json(&url).await?;
            teams.extend(page);
            let Some(next) = next else {
                return Ok(teams);
            };
            // The token goes only to the API it was made for.
            let next_url = url::Url::parse(&next).map_err(|err| {
                provider_error(self.connector, format!("a Link next URL {next:?}: {err}"))
            })?;
            if next_url.origin() != api.origin() {
                return Err(provider_error(
                    self.connector,
                    format!(
                        "GitHub's next page {next:?} is not on the API's host {}",
                        api.origin().ascii_serialization()
                    ),
                ));
            }
            url = next;
        }
        Err(refused(
            self.connector,
            format!(
                "the user is in more than {} teams (GitHub's pages of teams did not end); \
                 Jumpgate does not judge a login on part of its teams",
                MAX_TEAM_PAGES * PER_PAGE
            ),
        ))
    }
}

/// The user as the connector sees them.
fn identity(
    connector: &GithubConnector,
    user: UserAnswer,
    teams: Vec<TeamAnswer>,
) -> Result<ExternalIdentity, SsoError> {
    let username = user.login.clone();
    if teams.is_empty() {
        return Err(refused(
            connector,
            format!(
                "GitHub lists no team for user {username:?}: they are in no team of any \
                 organisation, or an organisation has not approved the app's access (its \
                 owners grant it under Settings → Third-party access)"
            ),
        ));
    }
    let memberships: Vec<(String, String)> = teams
        .iter()
        .map(|team| (team.organization.login.clone(), team.slug.clone()))
        .collect();
    let (roles, logins) = connector.spec.roles_and_logins(&memberships);
    if roles.is_empty() {
        let mut named: Vec<String> = memberships
            .iter()
            .map(|(org, slug)| format!("{org}/{slug}"))
            .collect();
        named.truncate(50);
        return Err(SsoError::NoRoles {
            user: username,
            connector: connector.name().to_owned(),
            claims: format!("teams: [{}]", named.join(", ")),
            field: "teams_to_roles",
        });
    }
    let mut traits = Traits::new();
    traits.insert("logins".to_owned(), vec![username.clone()]);
    traits.insert("username".to_owned(), vec![username.clone()]);
    let names: BTreeSet<String> = teams.iter().map(|team| team.name.clone()).collect();
    traits.insert("github_teams".to_owned(), names.into_iter().collect());
    let orgs: BTreeSet<String> = teams
        .iter()
        .map(|team| team.organization.login.clone())
        .collect();
    traits.insert("github_orgs".to_owned(), orgs.into_iter().collect());
    if let Some(email) = user.email.filter(|email| !email.is_empty()) {
        traits.insert("email".to_owned(), vec![email]);
    }
    if user.id != 0 {
        traits.insert("github_user_id".to_owned(), vec![user.id.to_string()]);
    }
    Ok(ExternalIdentity {
        username,
        roles,
        traits,
        logins,
        session_ends: None,
    })
}

/// The `next` URL of one `Link` header (RFC 8288: `<URL>; rel="next", <URL>; rel="last"`).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let mut parts = link.split(';');
        let target = parts.next()?.trim();
        let target = target.strip_prefix('<')?.strip_suffix('>')?;
        parts
            .any(|param| {
                let param = param.trim();
                param == "rel=\"next\"" || param == "rel=next"
            })
            .then(|| target.to_owned())
    })
}

/// GitHub's `message` of an error body, or the body's start.
fn message_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(message) => clean(&message.message),
        Err(_) => excerpt(body),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    clean(&text)
}

/// Provider text as it may appear in a message: printable, short.
fn clean(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if text.chars().count() > 300 {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let header = "<https://api.github.com/user/teams?page=2>; rel=\"next\", \
                      <https://api.github.com/user/teams?page=5>; rel=\"last\"";
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.github.com/user/teams?page=2")
        );
        let last = "<https://api.github.com/user/teams?page=1>; rel=\"prev\", \
                    <https://api.github.com/user/teams?page=1>; rel=\"first\"";
        assert_eq!(next_link(last), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link(""), None);
    }

    fn connector() -> GithubConnector {
        GithubConnector::from_yaml(
            "github.yaml",
            r#"
kind: github
version: v3
metadata: {name: github}
spec:
  client_id: Iv1.abc
  client_secret: s3cr3t
  redirect_url: https://jumpgate.example.com/v1/webapi/github/callback
  teams_to_roles:
    - {organization: octocats, team: devs, roles: [access]}
"#,
        )
        .unwrap()
    }

    fn team(org: &str, slug: &str, name: &str) -> TeamAnswer {
        TeamAnswer {
            name: name.to_owned(),
            slug: slug.to_owned(),
            organization: OrgAnswer {
                login: org.to_owned(),
            },
        }
    }

    #[test]
    fn teams_become_roles_and_traits_as_teleport_sets_them() {
        let user = UserAnswer {
            login: "octo".to_owned(),
            id: 7,
            email: None,
        };
        let found = identity(
            &connector(),
            user,
            vec![
                team("octocats", "devs", "Developers"),
                team("other", "x", "X"),
            ],
        )
        .unwrap();
        assert_eq!(found.username, "octo");
        assert_eq!(found.roles, ["access"]);
        assert_eq!(found.traits["logins"], ["octo"]);
        assert_eq!(found.traits["username"], ["octo"]);
        assert_eq!(found.traits["github_teams"], ["Developers", "X"]);
    }

    #[test]
    fn no_team_or_no_mapped_team_is_refused_naming_the_teams() {
        let user = || UserAnswer {
            login: "octo".to_owned(),
            id: 7,
            email: None,
        };
        let err = identity(&connector(), user(), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no team"), "{err}");
        let err = identity(&connector(), user(), vec![team("octocats", "ops", "Ops")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("octocats/ops"), "{err}");
        assert!(err.contains("teams_to_roles"), "{err}");
    }

    /// Against the GitHub stand-in (github.com cannot be reached from here): a connector
    /// pointed at it, and a code from its web flow as a browser would get one.
    mod against_the_stand_in {
        use super::*;
        use jumpgate_test_support::{GITHUB_DEFAULT_PASSWORD, GithubStandIn, GithubUser, OauthApp};

        const CALLBACK: &str = "https://127.0.0.1:3080/v1/webapi/github/callback";

        fn connector(github: &GithubStandIn, secret: &str) -> GithubConnector {
            GithubConnector::from_yaml(
                "github.yaml",
                &format!(
                    "kind: github\nversion: v3\nmetadata: {{name: github}}\nspec:\n  \
                     client_id: Iv1.test\n  client_secret: {secret}\n  redirect_url: \
                     {CALLBACK}\n  endpoint_url: {}\n  api_endpoint_url: {}\n  \
                     teams_to_roles:\n    - {{organization: octocats, team: devs, roles: \
                     [access]}}\n",
                    github.endpoint_url(),
                    github.api_endpoint_url()
                ),
            )
            .unwrap()
        }

        fn stand_in() -> GithubStandIn {
            let github = GithubStandIn::start();
            github.add_app(OauthApp::new("Iv1.test", "right-secret", CALLBACK));
            github
        }

        /// Signs `login` in and authorizes the app, as the browser does: the code.
        async fn code_for(
            github: &GithubStandIn,
            connector: &GithubConnector,
            login: &str,
        ) -> String {
            let started = start(connector, "some-state").unwrap();
            let query: Vec<(String, String)> = url::Url::parse(&started.redirect_url)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            let mut form = query;
            form.push(("login".to_owned(), login.to_owned()));
            form.push(("password".to_owned(), GITHUB_DEFAULT_PASSWORD.to_owned()));
            form.push(("authorize".to_owned(), "1".to_owned()));
            let response = HttpClient::new()
                .unwrap()
                .inner()
                .post(format!("{}/login/oauth/authorize", github.endpoint_url()))
                .form(&form)
                .send()
                .await
                .unwrap();
            let location = response.headers()[reqwest::header::LOCATION]
                .to_str()
                .unwrap();
            let answer = url::Url::parse(location).unwrap();
            let (_, code) = answer
                .query_pairs()
                .find(|(name, _)| name == "code")
                .unwrap();
            code.into_owned()
        }

        #[tokio::test]
        async fn a_code_gives_the_user_and_their_teams() {
            let github = stand_in();
            github.add_user(GithubUser::new("octo", 5).team("octocats", "devs", "Developers"));
            let connector = connector(&github, "right-secret");
            let code = code_for(&github, &connector, "octo").await;
            let http = HttpClient::new().unwrap();
            let found = finish(&http, &connector, &code, "verifier").await.unwrap();
            assert_eq!(found.username, "octo");
            assert_eq!(found.roles, ["access"]);
            // A code is good once: GitHub answers 200 with bad_verification_code.
            let err = finish(&http, &connector, &code, "verifier")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("bad_verification_code"), "{err}");
            assert!(err.contains("start the login again"), "{err}");
        }

        #[tokio::test]
        async fn a_user_deleted_at_github_after_signing_in_is_refused() {
            let github = stand_in();
            github.add_user(GithubUser::new("octo", 5).team("octocats", "devs", "Developers"));
            let connector = connector(&github, "right-secret");
            let code = code_for(&github, &connector, "octo").await;
            assert!(github.remove_user("octo"));
            let err = finish(&HttpClient::new().unwrap(), &connector, &code, "v")
                .await
                .unwrap_err();
            assert!(matches!(err, SsoError::Refused { .. }), "{err}");
            assert!(err.to_string().contains("bad_verification_code"), "{err}");
        }

        #[tokio::test]
        async fn a_wrong_client_secret_is_named() {
            let github = stand_in();
            github.add_user(GithubUser::new("octo", 5).team("octocats", "devs", "Developers"));
            let connector = connector(&github, "wrong-secret");
            let code = code_for(&github, &connector, "octo").await;
            let err = finish(&HttpClient::new().unwrap(), &connector, &code, "v")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("incorrect_client_credentials"), "{err}");
            assert!(err.contains("client_secret"), "{err}");
        }

        #[tokio::test]
        async fn teams_past_the_page_bound_are_refused_not_cut() {
            let github = stand_in();
            let mut user = GithubUser::new("many", 6);
            for n in 0..(MAX_TEAM_PAGES * PER_PAGE + 1) {
                user = user.team("big", &format!("t{n}"), &format!("T{n}"));
            }
            github.add_user(user.team("octocats", "devs", "Developers"));
            let connector = connector(&github, "right-secret");
            let code = code_for(&github, &connector, "many").await;
            let err = finish(&HttpClient::new().unwrap(), &connector, &code, "v")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("more than 2000 teams"), "{err}");
            let pages = github
                .requests()
                .iter()
                .filter(|r| r.target.starts_with("/user/teams"))
                .count();
            assert_eq!(pages, MAX_TEAM_PAGES);
        }
    }

    #[test]
    fn the_authorize_url_asks_for_read_org_with_state() {
        let started = start(&connector(), "abc").unwrap();
        let url = url::Url::parse(&started.redirect_url).unwrap();
        assert_eq!(url.path(), "/login/oauth/authorize");
        assert_eq!(url.host_str(), Some("github.com"));
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["client_id"], "Iv1.abc");
        assert_eq!(query["scope"], "read:org");
        assert_eq!(query["state"], "abc");
        assert_eq!(
            query["redirect_uri"],
            "https://jumpgate.example.com/v1/webapi/github/callback"
        );
        assert_eq!(query["code_challenge_method"], "S256");
    }
}
