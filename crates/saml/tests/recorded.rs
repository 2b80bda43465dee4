//! Responses recorded from the samlify test IdP (`tests/idp/`), verified offline at the
//! time they were issued: the fuzz target's seeds (`fuzz/corpus/saml_response/`), so the
//! target starts from inputs that pass, and a check that needs no Node.
// Tests fail by panicking; helpers here may unwrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use jumpgate_saml::{Assertion, IdpMetadata, SamlError, ServiceProvider};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn data(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn sp() -> ServiceProvider {
    ServiceProvider::new(
        "https://jumpgate.example.com:3080/v1/webapi/saml/metadata",
        "https://jumpgate.example.com:3080/v1/webapi/saml/acs/test-idp",
        IdpMetadata::parse(&data("fuzz-idp-metadata.xml")).unwrap(),
    )
    .unwrap()
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(data("fuzz-now.txt").trim().parse().unwrap())
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/saml_response")
            .join(format!("seed-{name}.xml")),
    )
    .unwrap()
}

fn verify(xml: &str) -> Result<Assertion, SamlError> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(xml);
    sp().verify_response(&b64, Some(data("fuzz-request-id.txt").trim()), now())
}

#[test]
fn recorded_signed_responses_verify() {
    for name in ["ok", "response-signed", "both-signed"] {
        let assertion = verify(&seed(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(assertion.name_id, "alice@example.com", "{name}");
        assert_eq!(assertion.attributes["groups"], ["devs", "ops"], "{name}");
    }
}

#[test]
fn recorded_refusals() {
    assert_eq!(verify(&seed("unsigned")), Err(SamlError::Unsigned));
    assert!(matches!(
        verify(&seed("failed-status")),
        Err(SamlError::Status { .. })
    ));
    assert_eq!(
        verify(&seed("ok").replace(">ops<", ">admins<")),
        Err(SamlError::BadSignature)
    );
    // An hour later the recorded response is over.
    let b64 = base64::engine::general_purpose::STANDARD.encode(seed("ok"));
    assert!(matches!(
        sp().verify_response(
            &b64,
            Some(data("fuzz-request-id.txt").trim()),
            now() + Duration::from_secs(3600)
        ),
        Err(SamlError::Expired { .. })
    ));
}

/// A deeply nested document inside the signed assertion (signature elements, which the
/// algorithm check looks at): refused, without quadratic work on the way.
#[test]
fn deep_nesting_is_refused() {
    let ok = seed("ok");
    // As deep as fits in MAX_RESPONSE_LEN once in base64.
    let depth = 4_000;
    let nest = format!(
        "<x xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{}{}</x>",
        "<ds:Reference><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\">"
            .repeat(depth),
        "</ds:DigestMethod></ds:Reference>".repeat(depth)
    );
    let deep = ok.replacen("<saml:Subject>", &format!("{nest}<saml:Subject>"), 1);
    assert_ne!(deep, ok);
    let started = std::time::Instant::now();
    assert_eq!(verify(&deep), Err(SamlError::BadSignature));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// What an IdP may send that Jumpgate does not take, each with its own refusal.
#[test]
fn unsupported_and_empty_responses() {
    // Success without an assertion.
    let empty = seed("failed-status")
        .replace(
            "urn:oasis:names:tc:SAML:2.0:status:Responder",
            "urn:oasis:names:tc:SAML:2.0:status:Success",
        )
        .replace(
            "<samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:AuthnFailed\"/>",
            "",
        );
    assert_eq!(verify(&empty), Err(SamlError::NoAssertion));
    // An encrypted assertion (turn encryption off at the IdP).
    let encrypted = seed("ok").replacen(
        "</samlp:Status>",
        "</samlp:Status><saml:EncryptedAssertion/>",
        1,
    );
    assert_eq!(verify(&encrypted), Err(SamlError::EncryptedAssertion));
    // No status at all.
    let no_status = seed("ok").replacen(
        "<samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>",
        "",
        1,
    );
    assert!(matches!(
        verify(&no_status),
        Err(SamlError::Missing {
            what: "a Status",
            ..
        })
    ));
}
