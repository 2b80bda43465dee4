//! Verifying an IdP's `SAMLResponse` (HTTP-POST binding): every check of the Web Browser
//! SSO profile, in the order that gives the most useful error.

use crate::xml::{self, NS_DS, NS_SAML, NS_SAMLP};
use crate::{SamlError, ServiceProvider};
use base64::Engine as _;
use roxmltree::Node;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoError, CryptoProvider, ReduceMode,
};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// How far the IdP's clock and ours may disagree: `NotBefore` may be this far in the future
/// and `NotOnOrAfter` this far in the past.
pub const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// The largest `SAMLResponse` form value accepted, in base64 characters (1 MiB). Real
/// responses are a few kilobytes; ones with hundreds of group attributes tens of kilobytes.
pub const MAX_RESPONSE_LEN: usize = 1 << 20;

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Signature and digest algorithms accepted: SHA-256 and stronger. SHA-1 (which some IdPs
/// still offer) is refused with [`SamlError::WeakAlgorithm`].
const ALLOWED: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// What a verified assertion says about the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The assertion's `ID`. **Replay:** the caller must remember it until
    /// [`Assertion::replay_until`] and refuse a response whose assertion has an ID it has
    /// seen (a bearer assertion is good once; this crate keeps no state).
    pub id: String,
    /// Until when the assertion could still pass [`ServiceProvider::verify_response`]: the
    /// earlier of the `Conditions` and `SubjectConfirmationData` `NotOnOrAfter`, plus
    /// [`CLOCK_SKEW`]. A replay cache may forget the ID after that.
    pub replay_until: SystemTime,
    /// The IdP's entity ID (the assertion's `Issuer`).
    pub issuer: String,
    /// The subject's `NameID`, whole (every text node of it, so a comment cannot cut it).
    pub name_id: String,
    /// The `NameID`'s `Format`, if given (e.g. `...:nameid-format:emailAddress`).
    pub name_id_format: Option<String>,
    /// Attribute name → values, in the order the IdP sent them. An attribute given twice
    /// has its values joined; values that are not plain text (an element inside) are left
    /// out.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// The `AuthnStatement`'s `SessionNotOnOrAfter`: the IdP's bound on the session it
    /// started, when it gives one. Certificates issued from this login should not outlive it.
    pub session_not_on_or_after: Option<SystemTime>,
    /// The `AuthnStatement`'s `SessionIndex`, for single logout.
    pub session_index: Option<String>,
}

impl ServiceProvider {
    /// Verifies the `SAMLResponse` form field of a POST to the ACS URL, for the login whose
    /// AuthnRequest had ID `expected_request_id`, at time `now`, and returns what the
    /// assertion says. See the crate docs for each rule; in short:
    ///
    /// - `None` for `expected_request_id` (no login of ours is pending for this browser) is
    ///   refused: IdP-initiated login is not supported.
    /// - The status must be `Success`.
    /// - Exactly one assertion, a child of the response, not encrypted, with no comments.
    /// - It must be signed by a certificate of the IdP's metadata (SHA-256 or stronger),
    ///   either itself or through a signature over the whole response; everything below is
    ///   read from the bytes that were signed (xmlsec's pre-digest data), never from the
    ///   document around them.
    /// - `Issuer` = the IdP's entity ID; every `AudienceRestriction` names our entity ID; a
    ///   bearer `SubjectConfirmationData` with `Recipient` = our ACS URL, `InResponseTo` = the
    ///   request, within its `NotOnOrAfter`; `Conditions` within `NotBefore`/`NotOnOrAfter`;
    ///   each time with [`CLOCK_SKEW`]. The response's `Destination` and `InResponseTo`, when
    ///   present, must match too.
    ///
    /// It keeps no state: refusing a replayed assertion is the caller's job (see
    /// [`Assertion::id`]).
    pub fn verify_response(
        &self,
        saml_response: &str,
        expected_request_id: Option<&str>,
        now: SystemTime,
    ) -> Result<Assertion, SamlError> {
        let Some(expected) = expected_request_id else {
            return Err(SamlError::Unsolicited);
        };
        if saml_response.len() > MAX_RESPONSE_LEN {
            return Err(SamlError::TooLarge {
                len: saml_response.len(),
                max: MAX_RESPONSE_LEN,
            });
        }
        // IdPs may wrap the base64 in lines.
        let compact: Vec<u8> = saml_response
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|_| SamlError::Base64)?;
        let text = String::from_utf8(decoded).map_err(|_| SamlError::NotUtf8)?;
        let doc = xml::parse(&text).map_err(|e| SamlError::Xml(e.to_string()))?;
        let response = doc.root_element();
        if !xml::is(response, NS_SAMLP, "Response") {
            return Err(SamlError::NotAResponse {
                found: xml::name_of(response),
            });
        }

        // The envelope, as received: signed only when the IdP signs the whole response,
        // so these checks give early, precise errors; what grants access is checked below
        // on signed bytes only.
        check_status(response)?;
        check_in_response_to(response.attribute("InResponseTo"), expected, true)?;
        if let Some(destination) = response.attribute("Destination")
            && destination != self.acs_url()
        {
            return Err(SamlError::WrongDestination {
                expected: self.acs_url().to_string(),
                found: destination.to_string(),
            });
        }
        if let Some(issuer) = xml::child(response, NS_SAML, "Issuer") {
            self.check_issuer(issuer)?;
        }

        if doc
            .descendants()
            .any(|n| xml::is(n, NS_SAML, "EncryptedAssertion"))
        {
            return Err(SamlError::EncryptedAssertion);
        }
        let assertions: Vec<Node> = doc
            .descendants()
            .filter(|n| xml::is(*n, NS_SAML, "Assertion"))
            .collect();
        let assertion = match assertions.as_slice() {
            [] => return Err(SamlError::NoAssertion),
            [one] if one.parent() == Some(response) => *one,
            several => {
                return Err(SamlError::AssertionWrapping {
                    count: several.len(),
                });
            }
        };
        if assertion.descendants().any(|n| n.is_comment() || n.is_pi()) {
            return Err(SamlError::CommentInAssertion);
        }
        let assertion_id = xml::required_attr(assertion, "ID", "Assertion")?;

        // The signature. Which elements are signed is decided by xmlsec from the
        // references; these checks only make the common refusals precise.
        if xml::child(assertion, NS_DS, "Signature").is_none()
            && xml::child(response, NS_DS, "Signature").is_none()
        {
            return Err(SamlError::Unsigned);
        }
        check_algorithms(&doc)?;
        let signed = self.signed_content(&text)?;
        let signed_doc = xml::parse(&signed)
            .map_err(|e| SamlError::SignatureUnreadable(format!("the signed content: {e}")))?;
        let signed_root = signed_doc.root_element();
        let signed_assertion = if xml::is(signed_root, NS_SAML, "Assertion") {
            signed_root
        } else if xml::is(signed_root, NS_SAMLP, "Response")
            && signed_root.attribute("ID").is_some()
            && signed_root.attribute("ID") == response.attribute("ID")
        {
            let mut inner = xml::children(signed_root, NS_SAML, "Assertion");
            match (inner.next(), inner.next()) {
                (Some(one), None) => one,
                _ => {
                    return Err(SamlError::SignedElementMismatch {
                        signed: "a response with another set of assertions".into(),
                        assertion: assertion_id.to_string(),
                    });
                }
            }
        } else {
            return Err(SamlError::SignedElementMismatch {
                signed: format!(
                    "{} {:?}",
                    xml::name_of(signed_root),
                    signed_root.attribute("ID").unwrap_or_default()
                ),
                assertion: assertion_id.to_string(),
            });
        };
        if signed_assertion.attribute("ID") != Some(assertion_id) {
            return Err(SamlError::SignedElementMismatch {
                signed: signed_assertion
                    .attribute("ID")
                    .unwrap_or_default()
                    .to_string(),
                assertion: assertion_id.to_string(),
            });
        }
        self.read_assertion(signed_assertion, expected, now)
    }

    /// The bytes the IdP signed (exclusive-c14n output of the signed element, comments
    /// removed), after every signature in the document verified with one of the IdP's
    /// certificates. libxmlsec1 does the XML-DSig work, through samael.
    fn signed_content(&self, text: &str) -> Result<String, SamlError> {
        let certs: Vec<CertificateDer> = self
            .idp()
            .signing_certs()
            .iter()
            .map(|der| CertificateDer::from(der.clone()))
            .collect();
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            text,
            &certs,
            ReduceMode::PreDigest,
            Some(&ALLOWED),
        )
        .map_err(|err| match err {
            CryptoError::InvalidSignature => SamlError::BadSignature,
            other => SamlError::SignatureUnreadable(error_chain(&other)),
        })
    }

    fn check_issuer(&self, issuer: Node<'_, '_>) -> Result<(), SamlError> {
        let found = xml::text(issuer, "Issuer")?;
        if found != self.idp().entity_id() {
            return Err(SamlError::WrongIssuer {
                expected: self.idp().entity_id().to_string(),
                found,
            });
        }
        Ok(())
    }

    /// Every rule on the signed assertion, and what it says.
    fn read_assertion(
        &self,
        assertion: Node<'_, '_>,
        expected_request_id: &str,
        now: SystemTime,
    ) -> Result<Assertion, SamlError> {
        if assertion.attribute("Version") != Some("2.0") {
            return Err(SamlError::Malformed {
                element: "Assertion",
                reason: "its Version is not 2.0".into(),
            });
        }
        let issuer = xml::child(assertion, NS_SAML, "Issuer").ok_or(SamlError::Missing {
            element: "Assertion",
            what: "an Issuer",
        })?;
        self.check_issuer(issuer)?;

        // Conditions: the validity window and the audience.
        let conditions =
            xml::child(assertion, NS_SAML, "Conditions").ok_or(SamlError::Missing {
                element: "Assertion",
                what: "Conditions",
            })?;
        let conditions_end = check_window(conditions, "Conditions", now)?;
        let restrictions: Vec<Node> =
            xml::children(conditions, NS_SAML, "AudienceRestriction").collect();
        if restrictions.is_empty() {
            return Err(SamlError::Missing {
                element: "Conditions",
                what: "an AudienceRestriction",
            });
        }
        for restriction in restrictions {
            let audiences = xml::children(restriction, NS_SAML, "Audience")
                .map(|a| xml::text(a, "Audience"))
                .collect::<Result<Vec<_>, _>>()?;
            if !audiences.iter().any(|a| a == self.audience()) {
                return Err(SamlError::WrongAudience {
                    expected: self.audience().to_string(),
                    found: audiences,
                });
            }
        }

        // The subject: who, and the bearer confirmation that binds it to this login.
        let subject = xml::child(assertion, NS_SAML, "Subject").ok_or(SamlError::Missing {
            element: "Assertion",
            what: "a Subject",
        })?;
        let name_id = xml::child(subject, NS_SAML, "NameID").ok_or(SamlError::Missing {
            element: "Subject",
            what: "a NameID (an encrypted one is not supported)",
        })?;
        let name_id_format = name_id.attribute("Format").map(str::to_string);
        let name_id = xml::text(name_id, "NameID")?;
        if name_id.is_empty() {
            return Err(SamlError::Missing {
                element: "NameID",
                what: "a value",
            });
        }
        let mut confirmation_end = None;
        let mut first_error = None;
        for confirmation in xml::children(subject, NS_SAML, "SubjectConfirmation")
            .filter(|c| c.attribute("Method") == Some(BEARER))
        {
            match self.check_confirmation(confirmation, expected_request_id, now) {
                Ok(end) => {
                    confirmation_end = Some(end);
                    break;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        let confirmation_end = match (confirmation_end, first_error) {
            (Some(end), _) => end,
            (None, Some(err)) => return Err(err),
            (None, None) => return Err(SamlError::NoBearerConfirmation),
        };

        // The authentication: the IdP's bound on the session.
        let authn = xml::child(assertion, NS_SAML, "AuthnStatement");
        let session_not_on_or_after = authn
            .and_then(|a| a.attribute("SessionNotOnOrAfter"))
            .map(|t| xml::parse_time(t, "AuthnStatement"))
            .transpose()?;
        if let Some(end) = session_not_on_or_after
            && now >= end
        {
            return Err(SamlError::Expired {
                element: "AuthnStatement (SessionNotOnOrAfter)",
                not_on_or_after: xml::format_time(end),
                now: xml::format_time(now),
                skew_secs: 0,
            });
        }
        let session_index = authn
            .and_then(|a| a.attribute("SessionIndex"))
            .map(str::to_string);

        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for attribute in xml::children(assertion, NS_SAML, "AttributeStatement")
            .flat_map(|s| xml::children(s, NS_SAML, "Attribute"))
        {
            let name = xml::required_attr(attribute, "Name", "Attribute")?;
            let values = attributes.entry(name.to_string()).or_default();
            values.extend(
                xml::children(attribute, NS_SAML, "AttributeValue")
                    .filter_map(|v| xml::text(v, "AttributeValue").ok()),
            );
        }

        let end = conditions_end.map_or(confirmation_end, |c| c.min(confirmation_end));
        Ok(Assertion {
            id: xml::required_attr(assertion, "ID", "Assertion")?.to_string(),
            replay_until: end.checked_add(CLOCK_SKEW).unwrap_or(end),
            issuer: self.idp().entity_id().to_string(),
            name_id,
            name_id_format,
            attributes,
            session_not_on_or_after,
            session_index,
        })
    }

    /// One bearer `SubjectConfirmation`: its data's recipient, request and window. Returns
    /// its `NotOnOrAfter`.
    fn check_confirmation(
        &self,
        confirmation: Node<'_, '_>,
        expected_request_id: &str,
        now: SystemTime,
    ) -> Result<SystemTime, SamlError> {
        const ELEMENT: &str = "SubjectConfirmationData";
        let data = xml::child(confirmation, NS_SAML, ELEMENT).ok_or(SamlError::Missing {
            element: "SubjectConfirmation",
            what: "SubjectConfirmationData",
        })?;
        let recipient = xml::required_attr(data, "Recipient", ELEMENT)?;
        if recipient != self.acs_url() {
            return Err(SamlError::WrongRecipient {
                expected: self.acs_url().to_string(),
                found: recipient.to_string(),
            });
        }
        check_in_response_to(data.attribute("InResponseTo"), expected_request_id, false)?;
        check_window(data, ELEMENT, now)?.ok_or(SamlError::Missing {
            element: ELEMENT,
            what: "NotOnOrAfter",
        })
    }
}

/// The `ID` of the one assertion of `saml_response` (the form field, base64), read
/// **without any check**: only for refusing a replay early with a clear message (an ID
/// already recorded), never for accepting anything. `None` when there is no single
/// assertion to name.
pub fn unverified_assertion_id(saml_response: &str) -> Option<String> {
    if saml_response.len() > MAX_RESPONSE_LEN {
        return None;
    }
    let compact: Vec<u8> = saml_response
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let doc = xml::parse(&text).ok()?;
    let mut assertions = doc
        .descendants()
        .filter(|n| xml::is(*n, NS_SAML, "Assertion"));
    match (assertions.next(), assertions.next()) {
        (Some(one), None) => one.attribute("ID").map(str::to_string),
        _ => None,
    }
}

/// The status must be Success; otherwise the IdP's codes and message say why.
fn check_status(response: Node<'_, '_>) -> Result<(), SamlError> {
    let status = xml::child(response, NS_SAMLP, "Status").ok_or(SamlError::Missing {
        element: "Response",
        what: "a Status",
    })?;
    let code = xml::child(status, NS_SAMLP, "StatusCode").ok_or(SamlError::Missing {
        element: "Status",
        what: "a StatusCode",
    })?;
    let value = xml::required_attr(code, "Value", "StatusCode")?;
    if value == SUCCESS {
        return Ok(());
    }
    Err(SamlError::Status {
        code: value.to_string(),
        sub_code: xml::child(code, NS_SAMLP, "StatusCode")
            .and_then(|c| c.attribute("Value"))
            .map(str::to_string),
        message: xml::child(status, NS_SAMLP, "StatusMessage")
            .and_then(|m| xml::text(m, "StatusMessage").ok())
            .filter(|m| !m.is_empty()),
    })
}

/// `InResponseTo` must name the request; on the response envelope it may be absent
/// (`optional`), on the bearer confirmation it is required.
fn check_in_response_to(
    found: Option<&str>,
    expected: &str,
    optional: bool,
) -> Result<(), SamlError> {
    match found {
        Some(found) if found == expected => Ok(()),
        None if optional => Ok(()),
        found => Err(SamlError::InResponseToMismatch {
            expected: expected.to_string(),
            found: found.map(str::to_string),
        }),
    }
}

/// `NotBefore` / `NotOnOrAfter` on `node`, with [`CLOCK_SKEW`]; returns `NotOnOrAfter`.
fn check_window(
    node: Node<'_, '_>,
    element: &'static str,
    now: SystemTime,
) -> Result<Option<SystemTime>, SamlError> {
    let skew_secs = CLOCK_SKEW.as_secs();
    if let Some(not_before) = node.attribute("NotBefore") {
        let not_before = xml::parse_time(not_before, element)?;
        if now.checked_add(CLOCK_SKEW).is_some_and(|t| t < not_before) {
            return Err(SamlError::NotYetValid {
                element,
                not_before: xml::format_time(not_before),
                now: xml::format_time(now),
                skew_secs,
            });
        }
    }
    let Some(end) = node.attribute("NotOnOrAfter") else {
        return Ok(None);
    };
    let end = xml::parse_time(end, element)?;
    if end.checked_add(CLOCK_SKEW).is_none_or(|t| now >= t) {
        return Err(SamlError::Expired {
            element,
            not_on_or_after: xml::format_time(end),
            now: xml::format_time(now),
            skew_secs,
        });
    }
    Ok(Some(end))
}

/// Every `ds:Signature`'s SignatureMethod and DigestMethods must be of [`ALLOWED`]: checked
/// here only to name a refused algorithm (samael enforces the same list).
fn check_algorithms(doc: &roxmltree::Document<'_>) -> Result<(), SamlError> {
    // Only where XML-DSig puts them (parent and grandparent, not any ancestor: a deeply
    // nested input must not make this quadratic).
    let signed_info = |n: Option<Node<'_, '_>>| n.is_some_and(|n| xml::is(n, NS_DS, "SignedInfo"));
    for method in doc.descendants().filter(|n| {
        (xml::is(*n, NS_DS, "SignatureMethod") && signed_info(n.parent()))
            || (xml::is(*n, NS_DS, "DigestMethod")
                && n.parent().is_some_and(|r| xml::is(r, NS_DS, "Reference"))
                && signed_info(n.parent().and_then(|r| r.parent())))
    }) {
        let algorithm = method.attribute("Algorithm").unwrap_or_default();
        let known = ALLOWED.iter().any(|a| {
            if xml::is(method, NS_DS, "SignatureMethod") {
                a.signature_uri() == algorithm
            } else {
                a.digest_uri() == algorithm
            }
        });
        if !known {
            return Err(SamlError::WeakAlgorithm {
                algorithm: algorithm.to_string(),
            });
        }
    }
    Ok(())
}

/// An error and its sources, for a message.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
