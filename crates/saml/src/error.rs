//! What can be wrong with IdP metadata, the SP's settings or an IdP's response.
//!
//! Each variant names what is wrong and what to do. Most refusals of a response come
//! from the IdP's side (its configuration) or from whoever handed the browser the
//! response (an attacker): [`SamlError::is_misconfiguration`] tells the caller which
//! ones an administrator should look at. None of the messages carry a secret: a
//! response holds none (it is signed, not encrypted), and the values quoted are the
//! response's own identifiers, URLs and times.

/// Everything this crate refuses, with the reason and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SamlError {
    // --- IdP metadata -------------------------------------------------------------
    #[error(
        "the IdP metadata is not well-formed XML: {0}; give the metadata document itself (the IdP's metadata URL or file), not an HTML page about it"
    )]
    MetadataXml(String),
    #[error(
        "the IdP metadata's root is <{found}>, not an md:EntityDescriptor (or an md:EntitiesDescriptor holding one); give the IdP's SAML 2.0 metadata"
    )]
    MetadataNotEntityDescriptor { found: String },
    #[error(
        "the IdP metadata describes {count} identity providers; give the metadata of the one IdP this connector uses"
    )]
    MetadataSeveralIdps { count: usize },
    #[error(
        "the IdP metadata has no md:IDPSSODescriptor for SAML 2.0; this is not an identity provider's metadata (an SP's?)"
    )]
    MetadataNoIdpDescriptor,
    #[error("the IdP metadata's EntityDescriptor has no entityID")]
    MetadataNoEntityId,
    #[error(
        "the IdP metadata has no SingleSignOnService with the HTTP-Redirect binding; Jumpgate sends its AuthnRequest by redirect: enable that binding for the application at the IdP"
    )]
    MetadataNoRedirectSso,
    #[error(
        "the IdP metadata's SingleSignOnService location {location:?} is not an absolute http(s) URL"
    )]
    MetadataBadSsoUrl { location: String },
    #[error(
        "the IdP metadata has no signing certificate (md:KeyDescriptor with use=\"signing\" or no use, holding ds:X509Certificate); without one no response can be verified"
    )]
    MetadataNoSigningCert,
    #[error("a signing certificate in the IdP metadata is not a valid X.509 certificate: {reason}")]
    MetadataBadCert { reason: String },

    // --- the SP's own settings ------------------------------------------------------
    #[error("the SP's {field} {value:?} is not valid: {reason}")]
    InvalidSetting {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "the RelayState is {len} bytes; the HTTP-Redirect binding allows 80 (SAML bindings 3.4.3): keep the state server-side and send a short key"
    )]
    RelayStateTooLong { len: usize },

    // --- the response as bytes ------------------------------------------------------
    #[error(
        "the SAMLResponse is {len} bytes, more than the {max} accepted; a real IdP's response is far smaller"
    )]
    TooLarge { len: usize, max: usize },
    #[error(
        "the SAMLResponse is not valid base64; the form field must be posted as the IdP sent it"
    )]
    Base64,
    #[error("the SAMLResponse is not UTF-8 XML")]
    NotUtf8,
    #[error("the SAMLResponse is not well-formed XML (or carries a DTD, which SAML forbids): {0}")]
    Xml(String),
    #[error("the SAMLResponse's root is <{found}>, not a SAML 2.0 samlp:Response")]
    NotAResponse { found: String },

    // --- the protocol ---------------------------------------------------------------
    #[error(
        "the response answers no login of ours (IdP-initiated login is refused: an unsolicited response cannot be tied to the browser that receives it); start the login from Jumpgate"
    )]
    Unsolicited,
    #[error("the IdP refused the login: status {code}{}{}; see the IdP's logs for the user (often: the user is not assigned to the application)",
        .sub_code.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
        .message.as_deref().map(|m| format!(", {m:?}")).unwrap_or_default())]
    Status {
        code: String,
        sub_code: Option<String>,
        message: Option<String>,
    },
    #[error(
        "the response answers request {found:?}, not this login's {expected:?}; start the login again (a response is good for the browser session that asked for it, once)"
    )]
    InResponseToMismatch {
        expected: String,
        found: Option<String>,
    },
    #[error(
        "the response is for {found:?}, not this SP's assertion consumer service {expected:?}: check the ACS URL configured for the application at the IdP"
    )]
    WrongDestination { expected: String, found: String },

    // --- the assertion and its signature -------------------------------------------
    #[error("the response holds no assertion; the IdP sent a success status without one")]
    NoAssertion,
    #[error(
        "the response holds an encrypted assertion, which Jumpgate does not decrypt (it is carried over TLS); turn off assertion encryption for the application at the IdP"
    )]
    EncryptedAssertion,
    #[error(
        "the response holds {count} assertions where exactly one, a child of the response, is accepted: a signature-wrapping attempt, or an IdP that bundles several"
    )]
    AssertionWrapping { count: usize },
    #[error(
        "the assertion contains an XML comment or processing instruction: it was altered after signing (comments are outside the signature, so they can split a signed NameID)"
    )]
    CommentInAssertion,
    #[error(
        "neither the assertion nor the response is signed; configure the IdP to sign assertions (or the response)"
    )]
    Unsigned,
    #[error(
        "the signature uses {algorithm}, which is refused; configure the IdP to sign with RSA-SHA256 or stronger"
    )]
    WeakAlgorithm { algorithm: String },
    #[error(
        "the signature does not verify with the IdP's signing certificate: the response was altered, or signed by another key (if the IdP rotated its certificate, reload its metadata)"
    )]
    BadSignature,
    #[error("the signature could not be processed: {0}; the response is malformed or was altered")]
    SignatureUnreadable(String),
    #[error(
        "the signed element is not the response's assertion (signed {signed:?}, assertion {assertion:?}): a signature-wrapping attempt"
    )]
    SignedElementMismatch { signed: String, assertion: String },
    #[error(
        "the assertion was issued by {found:?}, not the IdP of the metadata {expected:?}: check which connector this response is for"
    )]
    WrongIssuer { expected: String, found: String },
    #[error(
        "the assertion is for audience {found:?}, not this SP's entity ID {expected:?}: set the application's audience (SP entity ID) at the IdP to {expected:?}"
    )]
    WrongAudience {
        expected: String,
        found: Vec<String>,
    },
    #[error(
        "the assertion's bearer confirmation is for recipient {found:?}, not this SP's ACS URL {expected:?}: check the ACS URL configured at the IdP"
    )]
    WrongRecipient { expected: String, found: String },
    #[error(
        "the assertion has no bearer SubjectConfirmation with its SubjectConfirmationData, which the Web SSO profile requires"
    )]
    NoBearerConfirmation,
    #[error(
        "the assertion's {element} is valid only from {not_before} (now {now}, with {skew_secs} s of clock skew allowed): check the clocks of the IdP and this host"
    )]
    NotYetValid {
        element: &'static str,
        not_before: String,
        now: String,
        skew_secs: u64,
    },
    #[error(
        "the assertion's {element} expired at {not_on_or_after} (now {now}, with {skew_secs} s of clock skew allowed): log in again (and check the clocks)"
    )]
    Expired {
        element: &'static str,
        not_on_or_after: String,
        now: String,
        skew_secs: u64,
    },
    #[error("the assertion's {element} lacks {what}, which Jumpgate requires")]
    Missing {
        element: &'static str,
        what: &'static str,
    },
    #[error("the assertion's {element} is malformed: {reason}")]
    Malformed {
        element: &'static str,
        reason: String,
    },
    #[error(
        "the XML signature library failed: {0}; this is a fault on this host (libxmlsec1), not in the response"
    )]
    Internal(String),
}

impl SamlError {
    /// Whether the refusal points at a setting (the IdP's or ours) that an administrator
    /// should fix, rather than at the response's sender: log these where operators look.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            SamlError::MetadataXml(_)
                | SamlError::MetadataNotEntityDescriptor { .. }
                | SamlError::MetadataSeveralIdps { .. }
                | SamlError::MetadataNoIdpDescriptor
                | SamlError::MetadataNoEntityId
                | SamlError::MetadataNoRedirectSso
                | SamlError::MetadataBadSsoUrl { .. }
                | SamlError::MetadataNoSigningCert
                | SamlError::MetadataBadCert { .. }
                | SamlError::InvalidSetting { .. }
                | SamlError::RelayStateTooLong { .. }
                | SamlError::EncryptedAssertion
                | SamlError::Unsigned
                | SamlError::WeakAlgorithm { .. }
                | SamlError::WrongIssuer { .. }
                | SamlError::WrongAudience { .. }
                | SamlError::WrongRecipient { .. }
                | SamlError::WrongDestination { .. }
                | SamlError::Internal(_)
        )
    }
}
