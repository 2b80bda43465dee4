//! SAML 2.0 (`kind: saml`): the Web Browser SSO profile with `jumpgate-saml` as the service
//! provider. The first leg sends the browser to the IdP with an AuthnRequest (HTTP-Redirect
//! binding) whose `RelayState` is the login's `state`; the second checks the response the
//! IdP has the browser post to the proxy's ACS (signature, issuer, audience, recipient,
//! destination, times, `InResponseTo` = the pending request's ID) and maps its attributes.
//!
//! The IdP's metadata is inline (`entity_descriptor`), given by parts (`issuer`, `sso`,
//! `cert`), or read from `entity_descriptor_url` at both legs (as OIDC's discovery: a fresh
//! read picks up a rotated certificate at once).
//!
//! Replay of an assertion is refused by the caller (`service::sso_saml`), which records
//! each accepted assertion's ID in the backend until it could no longer pass these checks.

use super::http::{HttpClient, read_limited};
use super::{
    ExternalIdentity, SsoError, claims_to_traits, describe_claims, provider_error, refused,
};
use jumpgate_saml::{Assertion, IdpMetadata, ServiceProvider};
use jumpgate_types::SamlConnector;
use jumpgate_types::connector::roles_from_claims;
use std::time::SystemTime;

/// Which of the three ways to give the IdP a connector uses; a connector must use one.
fn idp_source(connector: &SamlConnector) -> Result<IdpSource<'_>, String> {
    let spec = &connector.spec;
    let parts = [&spec.issuer, &spec.sso, &spec.cert]
        .iter()
        .filter(|part| !part.is_empty())
        .count();
    match (
        spec.entity_descriptor.trim().is_empty(),
        spec.entity_descriptor_url.is_empty(),
        parts,
    ) {
        (false, true, 0) => Ok(IdpSource::Inline(&spec.entity_descriptor)),
        (true, false, 0) => Ok(IdpSource::Url(&spec.entity_descriptor_url)),
        (true, true, 3) => Ok(IdpSource::Parts),
        (true, true, 0) => Err("give the IdP's metadata: entity_descriptor (the XML), \
             entity_descriptor_url (where the IdP publishes it), or issuer, sso and cert"
            .to_owned()),
        (true, true, _) => Err("issuer, sso and cert go together: give all three (or the \
             IdP's metadata as entity_descriptor or entity_descriptor_url)"
            .to_owned()),
        _ => Err("give the IdP's metadata one way only: entity_descriptor, \
             entity_descriptor_url, or issuer + sso + cert"
            .to_owned()),
    }
}

enum IdpSource<'a> {
    Inline(&'a str),
    Url(&'a str),
    Parts,
}

/// What `jctl create` checks of a SAML connector beyond its fields' syntax: one IdP
/// source, inline metadata that reads as an IdP's, and usable SP settings.
pub fn check_connector(connector: &SamlConnector) -> Result<(), String> {
    let idp = match idp_source(connector)? {
        IdpSource::Inline(xml) => {
            Some(IdpMetadata::parse(xml).map_err(|err| format!("entity_descriptor: {err}"))?)
        }
        IdpSource::Parts => Some(
            IdpMetadata::from_parts(
                &connector.spec.issuer,
                &connector.spec.sso,
                &connector.spec.cert,
            )
            .map_err(|err| format!("issuer, sso, cert: {err}"))?,
        ),
        // Read at each login; a bad URL is refused there with the fetch's error.
        IdpSource::Url(_) => None,
    };
    if let Some(idp) = idp {
        service_provider_with(connector, idp).map_err(|err| err.to_string())?;
    }
    if connector.spec.allow_idp_initiated {
        return Err(
            "allow_idp_initiated: true is refused: a login the IdP starts cannot be \
             tied to the browser that posts it (login CSRF); point the IdP's app tile at \
             the login page instead"
                .to_owned(),
        );
    }
    Ok(())
}

fn service_provider_with(
    connector: &SamlConnector,
    idp: IdpMetadata,
) -> Result<ServiceProvider, jumpgate_saml::SamlError> {
    let spec = &connector.spec;
    ServiceProvider::new(spec.entity_id(), spec.acs.clone(), idp)?
        .with_audience(spec.expected_audience())
}

/// The SP for `connector`, with the IdP's metadata read (fetched when given by URL).
pub async fn service_provider(
    http: &HttpClient,
    connector: &SamlConnector,
) -> Result<ServiceProvider, SsoError> {
    let idp = match idp_source(connector).map_err(|err| provider_error(connector, err))? {
        IdpSource::Inline(xml) => IdpMetadata::parse(xml)
            .map_err(|err| provider_error(connector, format!("entity_descriptor: {err}")))?,
        IdpSource::Parts => IdpMetadata::from_parts(
            &connector.spec.issuer,
            &connector.spec.sso,
            &connector.spec.cert,
        )
        .map_err(|err| provider_error(connector, format!("issuer, sso, cert: {err}")))?,
        IdpSource::Url(url) => {
            let fetch = async {
                let response = http.inner().get(url).send().await?;
                let status = response.status();
                let body = read_limited(response).await?;
                Ok::<_, super::http::HttpError>((status, body))
            };
            let (status, body) = fetch.await.map_err(|err| {
                provider_error(
                    connector,
                    format!("reading the IdP metadata at {url}: {err}"),
                )
            })?;
            if !status.is_success() {
                return Err(provider_error(
                    connector,
                    format!("reading the IdP metadata at {url}: HTTP {status}"),
                ));
            }
            let text = String::from_utf8(body).map_err(|_| {
                provider_error(connector, format!("the IdP metadata at {url} is not UTF-8"))
            })?;
            IdpMetadata::parse(&text).map_err(|err| {
                provider_error(connector, format!("the IdP metadata at {url}: {err}"))
            })?
        }
    };
    service_provider_with(connector, idp)
        .map_err(|err| provider_error(connector, format!("the connector's SP settings: {err}")))
}

/// The first leg's output: where to send the browser, and the request the answer must
/// answer (kept in the pending login).
#[derive(Debug)]
pub struct Started {
    pub redirect_url: String,
    pub request_id: String,
}

/// The first leg: an AuthnRequest to the IdP by redirect, `RelayState` = `state`.
pub async fn start(
    http: &HttpClient,
    connector: &SamlConnector,
    state: &str,
    now: SystemTime,
) -> Result<Started, SsoError> {
    let sp = service_provider(http, connector).await?;
    let request = sp
        .authn_request(now, Some(state))
        .map_err(|err| provider_error(connector, err))?;
    Ok(Started {
        redirect_url: request.url,
        request_id: request.request_id,
    })
}

/// The second leg: the response verified for the request `request_id` at `now`, and the
/// user it names: NameID is the user name (as Teleport), every attribute a trait, and
/// `attributes_to_roles` gives the roles. The [`Assertion`] is returned for the replay
/// record.
pub async fn finish(
    http: &HttpClient,
    connector: &SamlConnector,
    saml_response: &str,
    request_id: &str,
    now: SystemTime,
) -> Result<(ExternalIdentity, Assertion), SsoError> {
    if saml_response.is_empty() {
        return Err(refused(
            connector,
            "the post to the assertion consumer service has no SAMLResponse",
        ));
    }
    let sp = service_provider(http, connector).await?;
    let assertion = sp
        .verify_response(saml_response, Some(request_id), now)
        .map_err(|err| {
            if err.is_misconfiguration() {
                tracing::warn!(connector = connector.name(), error = %err,
                    "a SAML response was refused for a reason an admin should look at");
            }
            refused(connector, err)
        })?;
    let attributes: serde_json::Map<String, serde_json::Value> = assertion
        .attributes
        .iter()
        .map(|(name, values)| (name.clone(), serde_json::Value::from(values.clone())))
        .collect();
    let traits = claims_to_traits(&attributes);
    let username = assertion.name_id.trim().to_owned();
    if username.is_empty() {
        return Err(refused(
            connector,
            "the assertion's NameID is empty; configure the IdP to send the user's name or \
             e-mail as the NameID",
        ));
    }
    let spec = &connector.spec;
    let roles = roles_from_claims(&spec.attributes_to_roles, &traits);
    if roles.is_empty() {
        let mut mapped: Vec<&str> = spec
            .attributes_to_roles
            .iter()
            .map(|mapping| mapping.claim.as_str())
            .collect();
        mapped.sort_unstable();
        mapped.dedup();
        return Err(SsoError::NoRoles {
            user: username,
            connector: connector.name().to_owned(),
            claims: describe_claims(&traits, &mapped),
            field: "attributes_to_roles",
        });
    }
    Ok((
        ExternalIdentity {
            username,
            roles,
            traits,
            logins: Vec::new(),
            session_ends: assertion.session_not_on_or_after,
        },
        assertion,
    ))
}

/// The SP metadata of `connector`, for the IdP: its entity ID and ACS.
pub fn metadata_xml(connector: &SamlConnector) -> String {
    jumpgate_saml::sp_metadata_xml(connector.spec.entity_id(), &connector.spec.acs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(extra: &str) -> Result<(), String> {
        let yaml = format!(
            "kind: saml\nversion: v2\nmetadata: {{name: idp}}\nspec:\n  acs: \
             https://jumpgate.example.com/v1/webapi/saml/acs/idp\n  attributes_to_roles: \
             [{{name: groups, value: devs, roles: [access]}}]\n{extra}"
        );
        let connector = SamlConnector::from_yaml("idp.yaml", &yaml).map_err(|e| e.to_string())?;
        check_connector(&connector)
    }

    #[test]
    fn a_connector_names_its_idp_one_way() {
        assert!(connector("  entity_descriptor_url: https://idp.example.com/metadata\n").is_ok());
        let none = connector("").unwrap_err();
        assert!(none.contains("give the IdP's metadata"), "{none}");
        let two = connector(
            "  entity_descriptor_url: https://idp.example.com/md\n  issuer: https://idp\n",
        )
        .unwrap_err();
        assert!(two.contains("one way only"), "{two}");
        let partial = connector("  issuer: https://idp\n").unwrap_err();
        assert!(partial.contains("go together"), "{partial}");
        let bad = connector("  entity_descriptor: <html/>\n").unwrap_err();
        assert!(bad.contains("entity_descriptor"), "{bad}");
        let idp_initiated = connector(
            "  entity_descriptor_url: https://idp.example.com/md\n  allow_idp_initiated: true\n",
        )
        .unwrap_err();
        assert!(idp_initiated.contains("login CSRF"), "{idp_initiated}");
    }
}
