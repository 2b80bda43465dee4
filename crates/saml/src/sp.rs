//! The service provider: its metadata and its AuthnRequests (HTTP-Redirect binding).

use crate::xml::{self, BINDING_POST, NS_MD, NS_SAML, NS_SAMLP};
use crate::{IdpMetadata, SamlError};
use base64::Engine as _;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use std::io::Write as _;
use std::time::SystemTime;

/// The most RelayState the HTTP-Redirect binding carries (SAML bindings, 3.4.3).
pub const MAX_RELAY_STATE: usize = 80;

/// Jumpgate as a SAML service provider for one IdP (one `kind: saml` connector).
///
/// Made by [`ServiceProvider::new`], which checks the settings, so a value is always usable.
#[derive(Debug, Clone)]
pub struct ServiceProvider {
    entity_id: String,
    audience: String,
    acs_url: String,
    idp: IdpMetadata,
}

/// An AuthnRequest to send the browser to: keep [`AuthnRedirect::request_id`] with the
/// browser's login state (server-side, keyed by what RelayState or a cookie carries) and
/// pass it to [`ServiceProvider::verify_response`] when the response comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRedirect {
    /// The request's `ID`; the response's `InResponseTo` must name it.
    pub request_id: String,
    /// The IdP's SSO URL with `SAMLRequest` (and `RelayState`) in its query: answer the
    /// browser with a 302 to it.
    pub url: String,
}

impl ServiceProvider {
    /// A service provider with entity ID `entity_id` (the "audience" configured at the IdP;
    /// conventionally the URL its metadata is served at), receiving responses at `acs_url`
    /// (the HTTP-POST assertion consumer service, an absolute http(s) URL), trusting `idp`.
    pub fn new(
        entity_id: impl Into<String>,
        acs_url: impl Into<String>,
        idp: IdpMetadata,
    ) -> Result<ServiceProvider, SamlError> {
        let entity_id = entity_id.into();
        let acs_url = acs_url.into();
        if entity_id.trim().is_empty() || entity_id.trim() != entity_id {
            return Err(SamlError::InvalidSetting {
                field: "entity ID",
                value: entity_id,
                reason: "it must be non-empty, without surrounding spaces".into(),
            });
        }
        match url::Url::parse(&acs_url) {
            Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {}
            Ok(_) => {
                return Err(SamlError::InvalidSetting {
                    field: "ACS URL",
                    value: acs_url,
                    reason: "it must be an http(s) URL (https outside tests)".into(),
                });
            }
            Err(err) => {
                return Err(SamlError::InvalidSetting {
                    field: "ACS URL",
                    value: acs_url,
                    reason: err.to_string(),
                });
            }
        }
        Ok(ServiceProvider {
            audience: entity_id.clone(),
            entity_id,
            acs_url,
            idp,
        })
    }

    /// Expects assertions for `audience` instead of the entity ID (Teleport's `audience`,
    /// for an IdP configured with another audience URI than the SP's entity ID).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Result<Self, SamlError> {
        let audience = audience.into();
        if audience.trim().is_empty() || audience.trim() != audience {
            return Err(SamlError::InvalidSetting {
                field: "audience",
                value: audience,
                reason: "it must be non-empty, without surrounding spaces".into(),
            });
        }
        self.audience = audience;
        Ok(self)
    }

    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// What every `AudienceRestriction` must name: the entity ID unless set otherwise.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn acs_url(&self) -> &str {
        &self.acs_url
    }

    pub fn idp(&self) -> &IdpMetadata {
        &self.idp
    }

    /// The SP's metadata, to serve at its entity ID's URL and to upload to the IdP:
    /// one HTTP-POST assertion consumer service, `WantAssertionsSigned="true"`, and
    /// `AuthnRequestsSigned="false"` (the requests are not signed: see the crate docs).
    pub fn metadata_xml(&self) -> String {
        sp_metadata_xml(&self.entity_id, &self.acs_url)
    }

    /// A new AuthnRequest for the HTTP-Redirect binding (DEFLATE, base64, URL-encoded),
    /// asking for the response by HTTP-POST at the ACS URL, issued at `now`. `relay_state`
    /// comes back with the response unchanged (at most [`MAX_RELAY_STATE`] bytes; it is
    /// not integrity-protected, so make it an opaque key, never a URL to trust).
    pub fn authn_request(
        &self,
        now: SystemTime,
        relay_state: Option<&str>,
    ) -> Result<AuthnRedirect, SamlError> {
        if let Some(state) = relay_state
            && state.len() > MAX_RELAY_STATE
        {
            return Err(SamlError::RelayStateTooLong { len: state.len() });
        }
        // An xs:ID must start with a letter or `_`.
        let request_id = format!("_{}", uuid::Uuid::new_v4().simple());
        let request = format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="{samlp}" xmlns:saml="{saml}" ID="{id}" Version="2.0" IssueInstant="{instant}" "#,
                r#"Destination="{destination}" ProtocolBinding="{post}" AssertionConsumerServiceURL="{acs}">"#,
                "<saml:Issuer>{issuer}</saml:Issuer>",
                r#"<samlp:NameIDPolicy AllowCreate="true"/>"#,
                "</samlp:AuthnRequest>"
            ),
            samlp = NS_SAMLP,
            saml = NS_SAML,
            id = request_id,
            instant = xml::format_time(now),
            destination = xml::escape(self.idp.sso_redirect_url()),
            post = BINDING_POST,
            acs = xml::escape(&self.acs_url),
            issuer = xml::escape(&self.entity_id),
        );
        let mut deflate = DeflateEncoder::new(Vec::new(), Compression::default());
        let deflated = deflate
            .write_all(request.as_bytes())
            .and_then(|()| deflate.finish())
            .map_err(|err| SamlError::Internal(format!("DEFLATE: {err}")))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);

        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("SAMLRequest", &encoded);
        if let Some(state) = relay_state {
            query.append_pair("RelayState", state);
        }
        let sso = self.idp.sso_redirect_url();
        let separator = if sso.contains('?') { '&' } else { '?' };
        Ok(AuthnRedirect {
            request_id,
            url: format!("{sso}{separator}{}", query.finish()),
        })
    }
}

/// [`ServiceProvider::metadata_xml`] of an SP with entity ID `entity_id` and ACS
/// `acs_url`, for serving it without the IdP's metadata at hand (it names only ours).
pub fn sp_metadata_xml(entity_id: &str, acs_url: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<md:EntityDescriptor xmlns:md="{md}" entityID="{entity}">"#,
            "\n  ",
            r#"<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="{samlp}">"#,
            "\n    ",
            "<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>",
            "\n    ",
            r#"<md:AssertionConsumerService Binding="{post}" Location="{acs}" index="0" isDefault="true"/>"#,
            "\n  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n"
        ),
        md = NS_MD,
        samlp = NS_SAMLP,
        post = BINDING_POST,
        entity = xml::escape(entity_id),
        acs = xml::escape(acs_url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn idp() -> IdpMetadata {
        let md = format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com/metadata">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso?app=1"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#,
            include_str!("../tests/data/idp-cert.b64")
        );
        IdpMetadata::parse(&md).unwrap()
    }

    fn sp() -> ServiceProvider {
        ServiceProvider::new(
            "https://jumpgate.example.com/v1/webapi/saml/acs/okta",
            "https://jumpgate.example.com/v1/webapi/saml/acs/okta?x=1&y=\"2\"",
            idp(),
        )
        .unwrap()
    }

    #[test]
    fn settings_are_checked() {
        assert!(matches!(
            ServiceProvider::new("", "https://a/acs", idp()),
            Err(SamlError::InvalidSetting {
                field: "entity ID",
                ..
            })
        ));
        for acs in ["/relative/acs", "ftp://a/acs", "https://"] {
            assert!(
                matches!(
                    ServiceProvider::new("sp", acs, idp()),
                    Err(SamlError::InvalidSetting {
                        field: "ACS URL",
                        ..
                    })
                ),
                "{acs}"
            );
        }
    }

    #[test]
    fn metadata_is_escaped_xml_with_the_acs() {
        let sp = sp();
        let text = sp.metadata_xml();
        let doc = xml::parse(&text).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("entityID"), Some(sp.entity_id()));
        let acs = root
            .descendants()
            .find(|n| xml::is(*n, NS_MD, "AssertionConsumerService"))
            .unwrap();
        assert_eq!(acs.attribute("Location"), Some(sp.acs_url()));
        assert_eq!(acs.attribute("Binding"), Some(BINDING_POST));
    }

    #[test]
    fn authn_request_by_redirect() {
        let sp = sp();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let redirect = sp.authn_request(now, Some("k=v&x y")).unwrap();
        let url = url::Url::parse(&redirect.url).unwrap();
        assert!(
            redirect
                .url
                .starts_with("https://idp.example.com/sso?app=1&SAMLRequest=")
        );
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["RelayState"], "k=v&x y");
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(&pairs["SAMLRequest"])
            .unwrap();
        let mut request = String::new();
        flate2::read::DeflateDecoder::new(&deflated[..])
            .read_to_string(&mut request)
            .unwrap();
        let doc = xml::parse(&request).unwrap();
        let root = doc.root_element();
        assert!(xml::is(root, NS_SAMLP, "AuthnRequest"));
        assert_eq!(root.attribute("ID"), Some(redirect.request_id.as_str()));
        assert_eq!(root.attribute("IssueInstant"), Some("2027-01-15T08:00:00Z"));
        assert_eq!(
            root.attribute("AssertionConsumerServiceURL"),
            Some(sp.acs_url())
        );
        assert_eq!(
            root.attribute("Destination"),
            Some("https://idp.example.com/sso?app=1")
        );
        let issuer = xml::child(root, NS_SAML, "Issuer").unwrap();
        assert_eq!(xml::text(issuer, "Issuer").unwrap(), sp.entity_id());

        // Every request is new; no RelayState, no parameter.
        let other = sp.authn_request(now, None).unwrap();
        assert_ne!(other.request_id, redirect.request_id);
        assert!(!other.url.contains("RelayState"));
        assert_eq!(
            sp.authn_request(now, Some(&"x".repeat(81))),
            Err(SamlError::RelayStateTooLong { len: 81 })
        );
    }
}
