//! Jumpgate's SAML 2.0 service provider: the SAML half of single sign-on (issue 18).
//!
//! A `kind: saml` connector names an identity provider (Okta, Entra ID, Google Workspace,
//! Keycloak, ...) by its metadata. The auth service's SSO login flow uses this crate to
//! read that metadata ([`IdpMetadata::parse`]), to serve Jumpgate's own SP metadata
//! ([`ServiceProvider::metadata_xml`]), to send the user's browser to the IdP
//! ([`ServiceProvider::authn_request`], HTTP-Redirect binding) and to check what the browser
//! posts back ([`ServiceProvider::verify_response`], HTTP-POST binding). Then it maps the
//! [`Assertion`]'s attributes to roles and issues certificates as for any login.
//!
//! The crate does no I/O: fetching metadata, keeping login state and the replay cache are
//! the caller's, and every time is passed in (`now`), so tests control the clock.
//!
//! # XML signatures: libxmlsec1, through samael
//!
//! SAML's security rests on XML-DSig, which is easy to get subtly wrong (canonicalization,
//! ID resolution, transforms, signature wrapping); DESIGN.md and issue 18 forbid our own.
//! The choices that build here were:
//!
//! - **libxmlsec1** (Aleksey Sanin's XML Security Library, 20 years old, the reference
//!   implementation that python3-saml, Lasso/mod_auth_mellon and the `xmlsec1` tool use;
//!   Debian ships and patches it) **through `samael`** (the maintained Rust SAML crate,
//!   releases through 2026), whose `reduce_xml_to_signed` verifies every signature of a
//!   document against given certificates only (never a key from `KeyInfo`), restricts the
//!   algorithms, refuses duplicate IDs, and hands back xmlsec's *pre-digest* data: the
//!   exact bytes that were hashed.
//! - A pure-Rust XML-DSig crate (`xml-sec`, `bergshamra`): no C, but a year old or less, a
//!   single maintainer, dozens of releases with API changes, and a second set of RSA/ECDSA
//!   implementations beside aws-lc. Not yet what an access plane should bet its logins on.
//!
//! The cost of libxmlsec1: the binary links libxmlsec1, libxml2 and OpenSSL's libcrypto
//! (xmlsec's crypto engine; samael also links the `openssl` crate). That is a crypto
//! library used for this one job, XML signature verification; it carries no TLS: every
//! connection still uses rustls with aws-lc-rs. Building needs Debian's `libxmlsec1-dev`,
//! `libxml2-dev`, `libssl-dev`, `pkg-config` and `libclang-dev` (samael generates its
//! bindings with bindgen); `test.sh` installs them. A binary linking this crate needs
//! `libxmlsec1-openssl.so.1`, `libxmlsec1.so.1`, `libxml2.so.2` and `libcrypto.so.3`
//! (Debian: `libxmlsec1-openssl`, `libxmlsec1`, `libxml2`, `libssl3`); `jumpgate-dist`'s
//! table of known libraries (`crates/dist/src/elf.rs`) must learn them when the daemon
//! links this crate, or the Debian package build refuses the binary.
//!
//! # What is signed, and what is read
//!
//! A response is accepted when its one assertion is signed, or when the whole response is
//! signed (and so encloses it), by a certificate of the IdP's metadata, with RSA or ECDSA
//! over SHA-256 or stronger. Okta, Entra ID, Google Workspace and ADFS sign the assertion;
//! Keycloak by default signs only the response; both forms are common and equally strong
//! when the signed element is the one read.
//!
//! Every value that grants access is read from xmlsec's pre-digest data of the verified
//! reference, not from the received document: whatever the XML around it says (a second,
//! unsigned assertion; the signed one moved elsewhere; comments splitting a `NameID`), only
//! the signed bytes are believed. Signature wrapping is also refused outright: the response
//! must hold exactly one `saml:Assertion`, a child of the response, whose ID is the signed
//! one; a comment or processing instruction inside the assertion is refused (comments are
//! outside the signature, and readers that stop at one are how `admin@example.com<!---->.evil.com`
//! attacks work). DTDs are refused by the parser (no entity expansion, no external
//! entities).
//!
//! # The rules of [`ServiceProvider::verify_response`]
//!
//! | rule | refusal |
//! |---|---|
//! | a login of ours is pending (`expected_request_id` is `Some`) | [`SamlError::Unsolicited`] |
//! | status `Success` | [`SamlError::Status`] (with the IdP's codes and message) |
//! | exactly one assertion, a child of the response, not encrypted, no comments | [`SamlError::AssertionWrapping`], [`SamlError::EncryptedAssertion`], [`SamlError::CommentInAssertion`], [`SamlError::NoAssertion`] |
//! | signed (assertion or response) by the IdP's key, SHA-256+ | [`SamlError::Unsigned`], [`SamlError::BadSignature`], [`SamlError::WeakAlgorithm`], [`SamlError::SignedElementMismatch`] |
//! | `Issuer` = the IdP's entity ID | [`SamlError::WrongIssuer`] |
//! | every `AudienceRestriction` names the SP's entity ID | [`SamlError::WrongAudience`] |
//! | `Destination` (response, if present) and bearer `Recipient` = the ACS URL | [`SamlError::WrongDestination`], [`SamlError::WrongRecipient`] |
//! | `InResponseTo` (response if present; bearer confirmation always) = the request's ID | [`SamlError::InResponseToMismatch`] |
//! | `Conditions` `NotBefore`/`NotOnOrAfter`, bearer `NotOnOrAfter` (required), [`CLOCK_SKEW`] = 2 minutes | [`SamlError::NotYetValid`], [`SamlError::Expired`] |
//! | `SessionNotOnOrAfter`, if given, not passed | [`SamlError::Expired`] |
//!
//! **IdP-initiated login is refused.** An unsolicited response (no `InResponseTo`, or no
//! pending request for this browser) cannot be tied to the browser that posts it: anyone
//! holding a valid response for their own account could log a victim's browser in as
//! themselves (login CSRF), and a stolen response could be posted from anywhere within its
//! lifetime. Users start at Jumpgate's login page (or `jsh login --auth`); an IdP's app
//! tile can point at that page.
//!
//! **Replay is the caller's to refuse.** A bearer assertion is good once. This crate keeps
//! no state, so the caller must record [`Assertion::id`] in a replay cache shared by every
//! auth server (the backend, with a TTL) until [`Assertion::replay_until`], and refuse an
//! assertion whose ID is there. Consuming the login's pending request (so its ID cannot be
//! answered twice) is a second guard, not a replacement: a response is good for its request
//! only once.
//!
//! # AuthnRequests
//!
//! Requests are sent unsigned (`AuthnRequestsSigned="false"` in the SP metadata), as Okta,
//! Entra ID and Google Workspace accept by default: a request carries no authority (the
//! IdP authenticates the user itself and answers only to the ACS URL registered for the
//! SP), and what protects the login is the check of the signed response. RelayState goes
//! through unchanged and unprotected, at most 80 bytes: make it an opaque key into
//! server-side state, never a redirect target to trust.
//!
//! Not supported: encrypted assertions and `EncryptedID` (the response travels over TLS to
//! the proxy; ask the IdP not to encrypt), single logout, signed requests, the artifact
//! binding.
//!
//! # Tests
//!
//! `tests/idp.rs` runs a real IdP built on samlify (npm) from `tests/idp/` — `npm ci` there
//! first (`./test.sh` does) — and checks a full login and each refusal above against its
//! signed responses. The fuzz target `saml_response` (in `fuzz/`) feeds `verify_response`.
#![forbid(unsafe_code)]

mod error;
mod metadata;
mod response;
mod sp;
mod xml;

pub use error::SamlError;
pub use metadata::IdpMetadata;
pub use response::{Assertion, CLOCK_SKEW, MAX_RESPONSE_LEN, unverified_assertion_id};
pub use sp::{AuthnRedirect, MAX_RELAY_STATE, ServiceProvider, sp_metadata_xml};
