//! `jumpgate-saml` against a real identity provider: samlify's (`tests/idp/idp.js` on
//! Node; `npm ci` in `tests/idp` first, as `./test.sh` does). Each test starts the IdP,
//! reads its metadata, sends it this SP's metadata and an AuthnRequest by redirect, and
//! takes the signed response from the HTML form the IdP answers, as a browser would post it.
//!
//! The positive tests log in; each negative test breaks one rule, through the IdP (a
//! scenario it signs as asked) or by tampering with the signed response as an attacker
//! would, and expects the refusal that names that rule.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use jumpgate_saml::{CLOCK_SKEW, IdpMetadata, SamlError, ServiceProvider};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, SystemTime};

const SP_ENTITY_ID: &str = "https://jumpgate.example.com:3080/v1/webapi/saml/metadata";
const ACS_URL: &str = "https://jumpgate.example.com:3080/v1/webapi/saml/acs/test-idp";

/// The IdP process; killed when dropped. It also exits when its standard input closes,
/// so it dies with a test process that is killed.
struct Idp {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
    }
}

fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

/// Starts the IdP; it reads the SP's metadata (`sp.xml` in its directory) at its first login.
/// `schema`: whether it checks the AuthnRequest against the SAML schemas (xmllint, seconds
/// at its first use): the login tests do, the tests of refusals need not.
fn start_idp(schema: bool, idp_args: &[&str]) -> Idp {
    let dir = idp_dir();
    assert!(
        dir.join("node_modules/samlify").is_dir(),
        "{}/node_modules is missing: run `npm ci` there (./test.sh does); Node.js >= 20",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(tmp.path().join("idp.log")).unwrap();
    let mut child = Command::new("node")
        .arg(dir.join("idp.js"))
        .args((!schema).then_some("--no-schema"))
        .args(idp_args)
        .arg(tmp.path().join("sp.xml"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("node (./test.sh needs Node.js for the web UI too)");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let mut idp = Idp {
        child,
        _stdin: stdin,
        port: 0,
        dir: tmp,
    };
    idp.port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the IdP did not start ({line:?}):\n{}", idp.log()));
    idp
}

/// A plain HTTP/1.0 GET to the IdP: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (status, body.to_string())
}

/// The IdP started, its metadata read, and the SP made from it (its metadata given back).
fn setup() -> (Idp, ServiceProvider) {
    setup_with(false)
}

fn setup_with(schema: bool) -> (Idp, ServiceProvider) {
    setup_idp(schema, &[])
}

fn setup_idp(schema: bool, idp_args: &[&str]) -> (Idp, ServiceProvider) {
    let idp = start_idp(schema, idp_args);
    let (status, metadata) = get(idp.port, "/metadata");
    assert_eq!(status, 200, "{metadata}");
    let idp_metadata = IdpMetadata::parse(&metadata).unwrap();
    assert_eq!(
        idp_metadata.entity_id(),
        format!("http://127.0.0.1:{}/metadata", idp.port)
    );
    assert_eq!(
        idp_metadata.sso_post_url(),
        Some(format!("http://127.0.0.1:{}/sso-post", idp.port).as_str())
    );
    assert_eq!(idp_metadata.signing_certs().len(), 1);
    let sp = ServiceProvider::new(SP_ENTITY_ID, ACS_URL, idp_metadata).unwrap();
    std::fs::write(idp.dir.path().join("sp.xml"), sp.metadata_xml()).unwrap();
    (idp, sp)
}

/// What the browser would post to the ACS.
struct Posted {
    request_id: String,
    saml_response: String,
    action: String,
    relay_state: Option<String>,
}

/// A value attribute in the IdP's form, unescaped.
fn form_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    let value = &rest[..rest.find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// One login: the AuthnRequest by redirect to the IdP (with `extra` query parameters for
/// the test IdP), and the response it answers.
fn login(idp: &Idp, sp: &ServiceProvider, extra: &str, relay_state: Option<&str>) -> Posted {
    let redirect = sp.authn_request(SystemTime::now(), relay_state).unwrap();
    let prefix = format!("http://127.0.0.1:{}", idp.port);
    let path = redirect.url.strip_prefix(&prefix).unwrap();
    let (status, html) = get(idp.port, &format!("{path}{extra}"));
    assert_eq!(status, 200, "{html}\nIdP log:\n{}", idp.log());
    let action_at = html.find("action=\"").unwrap() + 8;
    Posted {
        request_id: redirect.request_id,
        saml_response: form_value(&html, "SAMLResponse").unwrap(),
        action: html[action_at..action_at + html[action_at..].find('"').unwrap()].to_string(),
        relay_state: form_value(&html, "RelayState"),
    }
}

/// A login in `scenario`, verified now with the request's ID.
fn verify_scenario(scenario: &str) -> Result<jumpgate_saml::Assertion, SamlError> {
    let (idp, sp) = setup();
    let posted = login(&idp, &sp, &format!("&scenario={scenario}"), None);
    sp.verify_response(
        &posted.saml_response,
        Some(&posted.request_id),
        SystemTime::now(),
    )
}

fn decode(b64: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

fn encode(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// A signed login's response changed by `tamper` (on its XML) after the IdP signed it.
fn tampered(
    extra: &str,
    tamper: impl FnOnce(&str) -> String,
) -> Result<jumpgate_saml::Assertion, SamlError> {
    let (idp, sp) = setup();
    let posted = login(&idp, &sp, extra, None);
    let xml = decode(&posted.saml_response);
    let changed = tamper(&xml);
    assert_ne!(changed, xml, "the tampering changed nothing");
    sp.verify_response(
        &encode(&changed),
        Some(&posted.request_id),
        SystemTime::now(),
    )
}

/// The assertion element of a response as samlify writes it (`saml:` prefix).
fn assertion_span(xml: &str) -> (usize, usize) {
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.rfind("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    (start, end)
}

/// `assertion` without its ds:Signature, with another ID and `NameID`: what an attacker
/// would like the SP to read.
fn evil_copy(assertion: &str, id: &str) -> String {
    let sig_start = assertion.find("<ds:Signature").unwrap();
    let sig_end = assertion.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let unsigned = format!("{}{}", &assertion[..sig_start], &assertion[sig_end..]);
    let id_at = unsigned.find(" ID=\"").unwrap() + 5;
    let id_end = id_at + unsigned[id_at..].find('"').unwrap();
    let with_id = format!("{}{id}{}", &unsigned[..id_at], &unsigned[id_end..]);
    with_id.replace(">alice@example.com<", ">admin@example.com<")
}

#[test]
fn login_with_a_signed_assertion() {
    let (idp, sp) = setup_with(true);
    let before = SystemTime::now();
    let posted = login(&idp, &sp, "", Some("k7Qz-login-4711"));
    let after = SystemTime::now();
    assert_eq!(posted.action, ACS_URL);
    assert_eq!(posted.relay_state.as_deref(), Some("k7Qz-login-4711"));
    let assertion = sp
        .verify_response(
            &posted.saml_response,
            Some(&posted.request_id),
            SystemTime::now(),
        )
        .unwrap_or_else(|err| panic!("{err}\nIdP log:\n{}", idp.log()));
    assert_eq!(assertion.name_id, "alice@example.com");
    assert_eq!(
        assertion.name_id_format.as_deref(),
        Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
    );
    assert_eq!(assertion.issuer, sp.idp().entity_id());
    assert_eq!(assertion.attributes["email"], ["alice@example.com"]);
    assert_eq!(assertion.attributes["groups"], ["devs", "ops"]);
    assert!(assertion.id.starts_with('_'));
    // The IdP gives 5 minutes; the replay cache keeps the ID that long plus the skew.
    let ends = Duration::from_secs(5 * 60) + CLOCK_SKEW;
    assert!(assertion.replay_until >= before + ends - Duration::from_secs(1));
    assert!(assertion.replay_until <= after + ends);
    let session = assertion
        .session_not_on_or_after
        .unwrap()
        .duration_since(before)
        .unwrap();
    assert!(session > Duration::from_secs(7 * 3600), "{session:?}");
    assert!(assertion.session_index.is_some());

    // Within the clock skew of the end, still good; verifying keeps no state (the caller's
    // replay cache refuses the second use), and the ID it keys on is the same.
    let late = SystemTime::now() + Duration::from_secs(5 * 60) + CLOCK_SKEW / 2;
    let again = sp
        .verify_response(&posted.saml_response, Some(&posted.request_id), late)
        .unwrap();
    assert_eq!(again.id, assertion.id);
}

/// Keycloak's default: only the response is signed (it encloses the assertion).
#[test]
fn login_with_a_signed_response() {
    let (idp, sp) = setup_with(true);
    let posted = login(&idp, &sp, "&scenario=response-signed", None);
    let xml = decode(&posted.saml_response);
    let (start, end) = assertion_span(&xml);
    assert!(!xml[start..end].contains("Signature"), "{xml}");
    let assertion = sp
        .verify_response(
            &posted.saml_response,
            Some(&posted.request_id),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(assertion.name_id, "alice@example.com");

    // The signed response covers the assertion: a change inside it breaks the signature.
    let changed = xml.replace(">ops<", ">admins<");
    assert_eq!(
        sp.verify_response(
            &encode(&changed),
            Some(&posted.request_id),
            SystemTime::now()
        ),
        Err(SamlError::BadSignature)
    );
}

#[test]
fn login_with_both_signed() {
    let assertion = verify_scenario("both-signed").unwrap();
    assert_eq!(assertion.attributes["groups"], ["devs", "ops"]);
}

/// The IdP's certificate is a bare key that its metadata makes trusted: one past its
/// validity dates (common in IdP metadata) still verifies, as other SPs treat it.
#[test]
fn expired_idp_certificate_still_verifies() {
    let (idp, sp) = setup_idp(false, &["--expired-cert"]);
    let posted = login(&idp, &sp, "", None);
    let assertion = sp
        .verify_response(
            &posted.saml_response,
            Some(&posted.request_id),
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(assertion.name_id, "alice@example.com");
}

#[test]
fn unsigned_assertion_is_refused() {
    assert_eq!(verify_scenario("unsigned"), Err(SamlError::Unsigned));
}

#[test]
fn signature_by_another_key_is_refused() {
    assert_eq!(verify_scenario("other-key"), Err(SamlError::BadSignature));
}

#[test]
fn sha1_signature_is_refused() {
    assert!(
        matches!(verify_scenario("sha1"), Err(SamlError::WeakAlgorithm { ref algorithm }) if algorithm.contains("sha1")),
    );
}

#[test]
fn attribute_tampered_after_signing_is_refused() {
    assert_eq!(
        tampered("", |xml| xml.replace(">ops<", ">admins<")),
        Err(SamlError::BadSignature)
    );
    assert_eq!(
        tampered("", |xml| xml
            .replace(">alice@example.com<", ">admin@example.com<")),
        Err(SamlError::BadSignature)
    );
}

/// Signature wrapping: an unsigned assertion beside the signed one.
#[test]
fn wrapping_a_second_unsigned_assertion_is_refused() {
    let result = tampered("", |xml| {
        let (start, end) = assertion_span(xml);
        let evil = evil_copy(&xml[start..end], "_evil");
        format!("{}{evil}{}", &xml[..start], &xml[start..])
    });
    assert_eq!(result, Err(SamlError::AssertionWrapping { count: 2 }));
}

/// Signature wrapping: the signed assertion moved into `samlp:Extensions` (where a
/// careless verifier still finds it by ID) and an unsigned one with the same ID in its place.
#[test]
fn wrapping_with_the_signed_assertion_moved_is_refused() {
    for evil_id in [None, Some("_evil")] {
        let result = tampered("", |xml| {
            let (start, end) = assertion_span(xml);
            let signed = &xml[start..end];
            let id_at = signed.find(" ID=\"").unwrap() + 5;
            let id = &signed[id_at..id_at + signed[id_at..].find('"').unwrap()];
            let evil = evil_copy(signed, evil_id.unwrap_or(id));
            // Extensions come right after the Issuer in a Response.
            let issuer_end = xml.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
            format!(
                "{}<samlp:Extensions>{signed}</samlp:Extensions>{}{evil}{}",
                &xml[..issuer_end],
                &xml[issuer_end..start],
                &xml[end..]
            )
        });
        assert_eq!(result, Err(SamlError::AssertionWrapping { count: 2 }));
    }
}

#[test]
fn wrong_audience_is_refused() {
    assert!(matches!(
        verify_scenario("wrong-audience"),
        Err(SamlError::WrongAudience { ref expected, ref found })
            if expected == SP_ENTITY_ID && found == &["https://another-sp.example.com/saml"]
    ));
}

#[test]
fn wrong_recipient_is_refused() {
    assert!(matches!(
        verify_scenario("wrong-recipient"),
        Err(SamlError::WrongRecipient { ref found, .. }) if found == "https://another-sp.example.com/acs"
    ));
}

#[test]
fn wrong_destination_is_refused() {
    assert!(matches!(
        verify_scenario("wrong-destination"),
        Err(SamlError::WrongDestination { ref found, .. }) if found == "https://another-sp.example.com/acs"
    ));
}

#[test]
fn wrong_issuer_is_refused() {
    assert!(matches!(
        verify_scenario("wrong-issuer"),
        Err(SamlError::WrongIssuer { ref found, .. }) if found == "https://another-idp.example.com/metadata"
    ));
}

#[test]
fn expired_assertion_is_refused() {
    let (idp, sp) = setup();
    let posted = login(&idp, &sp, "", None);
    // The IdP gives 5 minutes: 10 minutes later (past the skew) the assertion is over.
    let later = SystemTime::now() + Duration::from_secs(10 * 60);
    assert!(matches!(
        sp.verify_response(&posted.saml_response, Some(&posted.request_id), later),
        Err(SamlError::Expired {
            element: "Conditions",
            ..
        })
    ));
}

/// Conditions still valid, but the bearer confirmation's own window is over.
#[test]
fn expired_subject_confirmation_is_refused() {
    assert!(matches!(
        verify_scenario("scd-expired"),
        Err(SamlError::Expired {
            element: "SubjectConfirmationData",
            ..
        })
    ));
}

#[test]
fn not_yet_valid_assertion_is_refused() {
    let (idp, sp) = setup();
    let posted = login(&idp, &sp, "", None);
    let earlier = SystemTime::now() - Duration::from_secs(10 * 60);
    assert!(matches!(
        sp.verify_response(&posted.saml_response, Some(&posted.request_id), earlier),
        Err(SamlError::NotYetValid {
            element: "Conditions",
            ..
        })
    ));
}

#[test]
fn wrong_in_response_to_is_refused() {
    let (idp, sp) = setup();
    let posted = login(&idp, &sp, "", None);
    // The answer to another login (another browser's, or an earlier one of this one).
    let other = sp.authn_request(SystemTime::now(), None).unwrap();
    assert_eq!(
        sp.verify_response(
            &posted.saml_response,
            Some(&other.request_id),
            SystemTime::now()
        ),
        Err(SamlError::InResponseToMismatch {
            expected: other.request_id.clone(),
            found: Some(posted.request_id.clone()),
        })
    );
    // No pending login at all: refused before anything is read.
    assert_eq!(
        sp.verify_response(&posted.saml_response, None, SystemTime::now()),
        Err(SamlError::Unsolicited)
    );
}

/// An IdP-initiated response (no InResponseTo) is refused even with a login pending.
#[test]
fn unsolicited_response_is_refused() {
    assert!(matches!(
        verify_scenario("unsolicited"),
        Err(SamlError::InResponseToMismatch { found: None, .. })
    ));
}

#[test]
fn failed_status_is_refused_with_the_idps_reason() {
    assert_eq!(
        verify_scenario("failed-status"),
        Err(SamlError::Status {
            code: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
            sub_code: Some("urn:oasis:names:tc:SAML:2.0:status:AuthnFailed".into()),
            message: Some("The user is not assigned to this application".into()),
        })
    );
}

/// A comment inside the signed NameID leaves the signature valid (comments are outside
/// exclusive c14n); a reader that stops at the first text node would see another user.
#[test]
fn comment_injection_in_name_id_is_refused() {
    assert_eq!(
        tampered("", |xml| xml
            .replace(">alice@example.com<", ">alice<!---->@example.com<")),
        Err(SamlError::CommentInAssertion)
    );
    // The classic: a user of another domain made to read as admin@example.com.
    assert_eq!(
        tampered("&nameid=admin@example.com.evil.example", |xml| xml.replace(
            ">admin@example.com.evil.example<",
            ">admin@example.com<!---->.evil.example<"
        )),
        Err(SamlError::CommentInAssertion)
    );
}

/// The base64 and XML layers: garbage is refused with what is wrong.
#[test]
fn malformed_responses_are_refused() {
    let (_idp, sp) = setup();
    let now = SystemTime::now();
    assert_eq!(
        sp.verify_response("not base64!", Some("_r"), now),
        Err(SamlError::Base64)
    );
    assert!(matches!(
        sp.verify_response(&encode("<samlp:Response"), Some("_r"), now),
        Err(SamlError::Xml(_))
    ));
    assert!(matches!(
        sp.verify_response(&encode("<html/>"), Some("_r"), now),
        Err(SamlError::NotAResponse { .. })
    ));
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&x;</samlp:Response>"#;
    assert!(matches!(
        sp.verify_response(&encode(xxe), Some("_r"), now),
        Err(SamlError::Xml(_))
    ));
}
