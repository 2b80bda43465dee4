//! The IdP's SAML 2.0 metadata: who it is, where to send users, which keys sign.

use crate::SamlError;
use crate::xml::{self, BINDING_POST, BINDING_REDIRECT, NS_DS, NS_MD};
use base64::Engine as _;
use roxmltree::Node;

/// An identity provider as its metadata describes it. Made only by [`IdpMetadata::parse`],
/// so every value has been checked: an entity ID, an HTTP-Redirect SSO URL and at least
/// one signing certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    entity_id: String,
    sso_redirect_url: String,
    sso_post_url: Option<String>,
    signing_certs: Vec<Vec<u8>>,
}

impl IdpMetadata {
    /// Reads an IdP's metadata: an `md:EntityDescriptor`, or an `md:EntitiesDescriptor`
    /// holding exactly one identity provider (some IdPs serve that form). Certificates are
    /// the `md:KeyDescriptor`s with `use="signing"` or no `use`; their validity dates are
    /// not checked (IdPs publish self-signed certificates as bare keys, often expired: the
    /// metadata is what makes them trusted), only that they are X.509 certificates.
    pub fn parse(metadata_xml: &str) -> Result<IdpMetadata, SamlError> {
        let doc = xml::parse(metadata_xml).map_err(|e| SamlError::MetadataXml(e.to_string()))?;
        let root = doc.root_element();
        let entity = if xml::is(root, NS_MD, "EntityDescriptor") {
            root
        } else if xml::is(root, NS_MD, "EntitiesDescriptor") {
            let idps: Vec<Node> = root
                .descendants()
                .filter(|n| xml::is(*n, NS_MD, "EntityDescriptor") && idp_descriptor(*n).is_some())
                .collect();
            match idps.as_slice() {
                [one] => *one,
                [] => return Err(SamlError::MetadataNoIdpDescriptor),
                several => {
                    return Err(SamlError::MetadataSeveralIdps {
                        count: several.len(),
                    });
                }
            }
        } else {
            return Err(SamlError::MetadataNotEntityDescriptor {
                found: xml::name_of(root),
            });
        };
        let entity_id = entity
            .attribute("entityID")
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or(SamlError::MetadataNoEntityId)?
            .to_string();
        let idp = idp_descriptor(entity).ok_or(SamlError::MetadataNoIdpDescriptor)?;

        let sso_url = |binding: &str| -> Result<Option<String>, SamlError> {
            let Some(service) = xml::children(idp, NS_MD, "SingleSignOnService")
                .find(|s| s.attribute("Binding") == Some(binding))
            else {
                return Ok(None);
            };
            let location = service.attribute("Location").unwrap_or_default().trim();
            match url::Url::parse(location) {
                Ok(url) if matches!(url.scheme(), "https" | "http") => {
                    Ok(Some(location.to_string()))
                }
                _ => Err(SamlError::MetadataBadSsoUrl {
                    location: location.to_string(),
                }),
            }
        };
        let sso_redirect_url =
            sso_url(BINDING_REDIRECT)?.ok_or(SamlError::MetadataNoRedirectSso)?;
        let sso_post_url = sso_url(BINDING_POST)?;

        let mut signing_certs = Vec::new();
        for key in xml::children(idp, NS_MD, "KeyDescriptor")
            .filter(|k| matches!(k.attribute("use"), None | Some("signing")))
        {
            for cert in key
                .descendants()
                .filter(|n| xml::is(*n, NS_DS, "X509Certificate"))
            {
                let der = certificate_der(cert)?;
                if !signing_certs.contains(&der) {
                    signing_certs.push(der);
                }
            }
        }
        if signing_certs.is_empty() {
            return Err(SamlError::MetadataNoSigningCert);
        }
        Ok(IdpMetadata {
            entity_id,
            sso_redirect_url,
            sso_post_url,
            signing_certs,
        })
    }

    /// An IdP given without metadata (Teleport's `issuer`, `sso`, `cert`): its entity ID,
    /// its HTTP-Redirect SSO URL and its signing certificate (PEM, or bare base64 DER),
    /// checked as [`IdpMetadata::parse`] checks metadata.
    pub fn from_parts(
        entity_id: &str,
        sso_redirect_url: &str,
        cert_pem: &str,
    ) -> Result<IdpMetadata, SamlError> {
        let body: String = cert_pem
            .lines()
            .filter(|line| !line.trim_start().starts_with("-----"))
            .collect::<String>()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let metadata = format!(
            concat!(
                r#"<md:EntityDescriptor xmlns:md="{md}" xmlns:ds="{ds}" entityID="{entity}">"#,
                r#"<md:IDPSSODescriptor protocolSupportEnumeration="{samlp}">"#,
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
                r#"<md:SingleSignOnService Binding="{redirect}" Location="{sso}"/>"#,
                "</md:IDPSSODescriptor></md:EntityDescriptor>"
            ),
            md = NS_MD,
            ds = NS_DS,
            samlp = crate::xml::NS_SAMLP,
            redirect = BINDING_REDIRECT,
            entity = xml::escape(entity_id),
            sso = xml::escape(sso_redirect_url),
            cert = xml::escape(&body),
        );
        IdpMetadata::parse(&metadata)
    }

    /// The IdP's entity ID: what the `Issuer` of its assertions must be.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// Where [`crate::ServiceProvider::authn_request`] sends the browser (HTTP-Redirect).
    pub fn sso_redirect_url(&self) -> &str {
        &self.sso_redirect_url
    }

    /// The IdP's HTTP-POST SSO endpoint, if it has one (for callers that post requests).
    pub fn sso_post_url(&self) -> Option<&str> {
        self.sso_post_url.as_deref()
    }

    /// The DER certificates whose keys may sign responses (more than one during the IdP's
    /// key rollover).
    pub fn signing_certs(&self) -> &[Vec<u8>] {
        &self.signing_certs
    }
}

/// The SAML 2.0 `md:IDPSSODescriptor` of an entity, if it has one.
fn idp_descriptor<'a, 'i>(entity: Node<'a, 'i>) -> Option<Node<'a, 'i>> {
    xml::children(entity, NS_MD, "IDPSSODescriptor").find(|d| {
        d.attribute("protocolSupportEnumeration")
            .is_some_and(|p| p.split_whitespace().any(|p| p == crate::xml::NS_SAMLP))
    })
}

/// A `ds:X509Certificate`'s DER, checked to be a certificate.
fn certificate_der(node: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let b64: String = xml::text(node, "X509Certificate")
        .map_err(|e| SamlError::MetadataBadCert {
            reason: e.to_string(),
        })?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| SamlError::MetadataBadCert {
            reason: format!("not base64 ({e})"),
        })?;
    x509_parser::parse_x509_certificate(&der).map_err(|e| SamlError::MetadataBadCert {
        reason: e.to_string(),
    })?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made once for these tests (`openssl req -x509 -newkey rsa:2048`).
    pub(crate) const CERT_B64: &str = include_str!("../tests/data/idp-cert.b64");

    pub(crate) fn metadata(sso: &str, keys: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com/metadata">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="false">
    {keys}
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    {sso}
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
        )
    }

    fn key(usage: &str) -> String {
        format!(
            r#"<md:KeyDescriptor {usage}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>
{CERT_B64}
</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
        )
    }

    #[test]
    fn an_idp_given_by_its_parts_is_checked_as_metadata() {
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            CERT_B64.trim()
        );
        let idp = IdpMetadata::from_parts(
            "https://idp.example.com",
            "https://idp.example.com/sso",
            &pem,
        )
        .unwrap();
        assert_eq!(idp.entity_id(), "https://idp.example.com");
        assert_eq!(idp.sso_redirect_url(), "https://idp.example.com/sso");
        assert_eq!(idp.signing_certs().len(), 1);
        assert!(matches!(
            IdpMetadata::from_parts(
                "https://idp.example.com",
                "https://idp.example.com/sso",
                "x"
            ),
            Err(SamlError::MetadataBadCert { .. })
        ));
    }

    const REDIRECT: &str = r#"<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso?app=1"/>"#;
    const POST: &str = r#"<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.com/sso-post"/>"#;

    #[test]
    fn parses_entity_endpoints_and_keys() {
        let md = IdpMetadata::parse(&metadata(
            &format!("{REDIRECT}{POST}"),
            &format!("{}{}", key(r#"use="signing""#), key(r#"use="encryption""#)),
        ))
        .unwrap();
        assert_eq!(md.entity_id(), "https://idp.example.com/metadata");
        assert_eq!(md.sso_redirect_url(), "https://idp.example.com/sso?app=1");
        assert_eq!(md.sso_post_url(), Some("https://idp.example.com/sso-post"));
        assert_eq!(md.signing_certs().len(), 1);
        // A key without `use` signs too; the same certificate twice counts once.
        let md =
            IdpMetadata::parse(&metadata(REDIRECT, &format!("{}{}", key(""), key("")))).unwrap();
        assert_eq!(md.signing_certs().len(), 1);
        assert_eq!(md.sso_post_url(), None);
    }

    #[test]
    fn refusals_say_what_is_missing() {
        let signing = key(r#"use="signing""#);
        assert_eq!(
            IdpMetadata::parse(&metadata(POST, &signing)),
            Err(SamlError::MetadataNoRedirectSso)
        );
        assert_eq!(
            IdpMetadata::parse(&metadata(REDIRECT, &key(r#"use="encryption""#))),
            Err(SamlError::MetadataNoSigningCert)
        );
        assert!(matches!(
            IdpMetadata::parse(&metadata(
                REDIRECT,
                "<md:KeyDescriptor><ds:X509Certificate>bm90IGEgY2VydA==</ds:X509Certificate></md:KeyDescriptor>"
            )),
            Err(SamlError::MetadataBadCert { .. })
        ));
        assert!(matches!(
            IdpMetadata::parse(&metadata(
                r#"<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="javascript:alert(1)"/>"#,
                &signing
            )),
            Err(SamlError::MetadataBadSsoUrl { .. })
        ));
        assert!(matches!(
            IdpMetadata::parse("<html><body>Sign in</body></html>"),
            Err(SamlError::MetadataNotEntityDescriptor { .. })
        ));
        assert!(matches!(
            IdpMetadata::parse("{\"not\": \"xml\"}"),
            Err(SamlError::MetadataXml(_))
        ));
        let sp_only = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="sp"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>"#;
        assert_eq!(
            IdpMetadata::parse(sp_only),
            Err(SamlError::MetadataNoIdpDescriptor)
        );
        let no_id = metadata(REDIRECT, &signing)
            .replace(r#"entityID="https://idp.example.com/metadata""#, "");
        assert_eq!(
            IdpMetadata::parse(&no_id),
            Err(SamlError::MetadataNoEntityId)
        );
    }

    #[test]
    fn entities_descriptor_with_one_idp() {
        let one = metadata(REDIRECT, &key(""));
        let wrapped = format!(
            r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{one}</md:EntitiesDescriptor>"#
        );
        assert!(IdpMetadata::parse(&wrapped).is_ok());
        let two = format!(
            r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{one}{one}</md:EntitiesDescriptor>"#
        );
        assert_eq!(
            IdpMetadata::parse(&two),
            Err(SamlError::MetadataSeveralIdps { count: 2 })
        );
    }
}
