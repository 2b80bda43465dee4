use super::*;

const OKTA: &str = r#"
kind: oidc
version: v3
metadata:
  name: okta
spec:
  issuer_url: https://example.okta.com
  client_id: 0oa1b2c3
  client_secret: s3cr3t
  redirect_url: https://jumpgate.example.com/v1/webapi/oidc/callback
  display: Okta
  scope: [groups, email]
  claims_to_roles:
    - {claim: groups, value: admins, roles: [access, editor]}
    - {claim: groups, value: "^env-(.*)$", roles: ["$1-access"]}
  max_session_ttl: 8h
"#;

#[test]
fn teleports_oidc_connector_reads_as_written() {
    let connector = OidcConnector::from_yaml("okta.yaml", OKTA).unwrap();
    assert_eq!(connector.name(), "okta");
    assert_eq!(connector.spec.redirect_url.len(), 1);
    assert_eq!(
        connector.spec.max_session_ttl(),
        Duration::from_secs(8 * 3600)
    );
    let claims = crate::Traits::from([(
        "groups".to_owned(),
        vec!["admins".to_owned(), "env-prod".to_owned()],
    )]);
    assert_eq!(
        roles_from_claims(&connector.spec.claims_to_roles, &claims),
        ["access", "editor", "prod-access"]
    );
    assert_eq!(
        connector.summary(),
        ConnectorSummary {
            kind: "oidc".into(),
            name: "okta".into(),
            display: "Okta".into()
        }
    );
    // Written back and read again, it is the same connector.
    let again = OidcConnector::from_json("again", &connector.to_json().unwrap()).unwrap();
    assert_eq!(again, connector);
}

#[test]
fn provider_urls_must_be_https_or_loopback() {
    for (url, ok) in [
        ("https://idp.example.com", true),
        ("http://127.0.0.1:9000", true),
        ("http://[::1]:9000/x", true),
        ("http://localhost:8080", true),
        ("http://idp.example.com", false),
        ("http://127.0.0.1.evil.com", false),
        ("https://user@idp.example.com", false),
        ("javascript:alert(1)", false),
        ("ftp://idp", false),
    ] {
        assert_eq!(is_acceptable_web_url(url), ok, "{url}");
    }
    let err = OidcConnector::from_yaml(
        "bad.yaml",
        &OKTA.replace("https://example.okta.com", "http://example.okta.com"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("spec.issuer_url") && err.contains("https://"),
        "{err}"
    );
}

#[test]
fn a_bad_claim_pattern_is_a_field_error() {
    let err = OidcConnector::from_yaml("bad.yaml", &OKTA.replace("^env-(.*)$", "^env-(.*$"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("claims_to_roles[1].value"), "{err}");
}

#[test]
fn github_teams_give_roles_and_logins() {
    let connector = GithubConnector::from_yaml(
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
    - {organization: octocats, team: admins, roles: [editor]}
    - {organization: octocats, team: "dev-*", roles: ["$1-access"]}
  teams_to_logins:
    - {organization: octocats, team: ops, logins: [access], roles: [auditor]}
"#,
    )
    .unwrap();
    let teams = [
        ("OctoCats".to_owned(), "dev-web".to_owned()),
        ("other".to_owned(), "admins".to_owned()),
        ("octocats".to_owned(), "ops".to_owned()),
    ];
    let (roles, logins) = connector.spec.roles_and_logins(&teams);
    // teams_to_logins as Teleport reads it: its `logins` are roles.
    assert_eq!(roles, ["access", "auditor", "web-access"]);
    assert!(logins.is_empty());
    assert_eq!(connector.spec.api_endpoint(), "https://api.github.com");
}

#[test]
fn redacting_drops_secrets() {
    let mut connector = OidcConnector::from_yaml("okta.yaml", OKTA).unwrap();
    connector.spec.redact();
    assert!(!connector.to_yaml().unwrap().contains("s3cr3t"));
}

const SAML_OKTA: &str = r#"
kind: saml
version: v2
metadata: {name: okta}
spec:
  acs: https://jumpgate.example.com/v1/webapi/saml/acs/okta
  entity_descriptor_url: https://example.okta.com/app/abc/sso/saml/metadata
  attributes_to_roles:
    - {name: groups, value: admins, roles: [editor]}
  signing_key_pair:
    private_key: "-----BEGIN RSA PRIVATE KEY-----\nsecret\n-----END RSA PRIVATE KEY-----"
    cert: "-----BEGIN CERTIFICATE-----\npublic\n-----END CERTIFICATE-----"
"#;

#[test]
fn teleports_saml_connector_reads_as_written_and_hides_its_key() {
    let mut connector = SamlConnector::from_yaml("okta.yaml", SAML_OKTA).unwrap();
    assert_eq!(connector.spec.attributes_to_roles[0].claim, "groups");
    // Teleport's defaults: the entity ID is the ACS URL, the audience the entity ID.
    assert_eq!(
        connector.spec.expected_audience(),
        "https://jumpgate.example.com/v1/webapi/saml/acs/okta"
    );
    connector.spec.redact();
    let shown = connector.to_json().unwrap();
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("public"), "{shown}");
    let err = SamlConnector::from_yaml(
        "bad.yaml",
        &SAML_OKTA.replace("https://example.okta.com", "http://example.okta.com"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
}
