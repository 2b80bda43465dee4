//! Throws arbitrary bytes at `ServiceProvider::verify_response`, the check of the
//! `SAMLResponse` an IdP (or anyone) posts to the ACS URL: base64, the XML parser,
//! libxmlsec1's signature verification (through samael) and every SAML rule after it.
//!
//! The input is the response's XML (the seeds are real responses of the test IdP,
//! `crates/saml/tests/idp/`, signed by the key of `crates/saml/tests/data/fuzz-idp-metadata.xml`),
//! which the target base64-encodes as the form field carries it; the raw input is also
//! tried as the form field itself.
//!
//! Besides "never panics", checks that the answer is consistent: the same form value
//! wrapped in lines (as some IdPs send it) gets the same answer; bytes that are not UTF-8
//! are `NotUtf8`; an accepted assertion names the IdP, a user, and a replay deadline in the
//! future; and with no pending request every input is refused as unsolicited.

#![no_main]

use base64::Engine as _;
use jumpgate_saml::{IdpMetadata, SamlError, ServiceProvider};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The SP the seeds were issued to, trusting the test IdP that signed them.
static SP: LazyLock<ServiceProvider> = LazyLock::new(|| {
    let idp = IdpMetadata::parse(include_str!(
        "../../crates/saml/tests/data/fuzz-idp-metadata.xml"
    ))
    .expect("the seeds' IdP metadata");
    ServiceProvider::new(
        "https://jumpgate.example.com:3080/v1/webapi/saml/metadata",
        "https://jumpgate.example.com:3080/v1/webapi/saml/acs/test-idp",
        idp,
    )
    .expect("the seeds' SP")
});

/// The request the seeds answer, and a time at which they are valid.
const REQUEST_ID: &str = include_str!("../../crates/saml/tests/data/fuzz-request-id.txt");
const NOW: &str = include_str!("../../crates/saml/tests/data/fuzz-now.txt");

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW.trim().parse().expect("fuzz-now.txt: Unix seconds"))
}

fn wrapped(b64: &str) -> String {
    b64.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fuzz_target!(|data: &[u8]| {
    let sp = &*SP;
    let now = now();
    let request = REQUEST_ID.trim();
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let result = sp.verify_response(&b64, Some(request), now);
    assert_eq!(
        result,
        sp.verify_response(&wrapped(&b64), Some(request), now)
    );
    if std::str::from_utf8(data).is_err() {
        assert_eq!(result, Err(SamlError::NotUtf8));
    }
    if let Ok(assertion) = &result {
        assert_eq!(assertion.issuer, sp.idp().entity_id());
        assert!(!assertion.name_id.is_empty());
        assert!(assertion.replay_until > now);
    }
    assert_eq!(
        sp.verify_response(&b64, None, now),
        Err(SamlError::Unsolicited)
    );
    // The raw bytes as the form field.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sp.verify_response(text, Some(request), now);
    }
});
