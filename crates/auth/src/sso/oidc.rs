//! OpenID Connect: the authorization code flow with PKCE, `state` and `nonce`, through the
//! `openidconnect` crate (discovery, the provider's keys, the ID token's signature and its
//! `iss`, `aud`, `azp`, `exp` and `nonce`), then the userinfo endpoint when the
//! provider has one (claims such as `groups` are often only there).
//!
//! The provider's discovery document is read at both legs of a login (they may run on
//! different auth servers); logins are rare next to connections, and a fresh read picks up
//! a provider's rotated keys at once.

use super::http::HttpClient;
use super::{
    ExternalIdentity, SsoError, claims_to_traits, describe_claims, provider_error, refused,
};
use jumpgate_types::OidcConnector;
use jumpgate_types::connector::roles_from_claims;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

/// Every claim the standard ones leave over (`groups`, custom claims), kept as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The first leg's output: where to send the browser, and what to keep until it is back.
pub struct Started {
    pub redirect_url: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The nonce and verifier are the login's secrets: never in a log.
        f.debug_struct("Started")
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

async fn client(http: &HttpClient, connector: &OidcConnector) -> Result<Client, SsoError> {
    let spec = &connector.spec;
    let issuer = IssuerUrl::new(spec.issuer_url.clone())
        .map_err(|err| provider_error(connector, format!("issuer_url: {err}")))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|err| {
            provider_error(
                connector,
                format!(
                    "reading {}/.well-known/openid-configuration: {}",
                    spec.issuer_url.trim_end_matches('/'),
                    error_chain(&err)
                ),
            )
        })?;
    let redirect = spec.redirect_url.first().cloned().unwrap_or_default();
    let redirect = RedirectUrl::new(redirect)
        .map_err(|err| provider_error(connector, format!("redirect_url: {err}")))?;
    let secret =
        (!spec.client_secret.is_empty()).then(|| ClientSecret::new(spec.client_secret.clone()));
    Ok(
        Client::from_provider_metadata(metadata, ClientId::new(spec.client_id.clone()), secret)
            .set_redirect_uri(redirect),
    )
}

/// The first leg: the provider's authorization URL for a login whose `state` is `state`.
pub async fn start(
    http: &HttpClient,
    connector: &OidcConnector,
    state: &str,
) -> Result<Started, SsoError> {
    let client = client(http, connector).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = state.to_owned();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in &connector.spec.scope {
        if scope != "openid" {
            request = request.add_scope(Scope::new(scope.clone()));
        }
    }
    if !connector.spec.prompt.is_empty() {
        request = request.add_extra_param("prompt", connector.spec.prompt.clone());
    }
    if !connector.spec.acr_values.is_empty() {
        request = request.add_extra_param("acr_values", connector.spec.acr_values.clone());
    }
    let (url, _state, nonce) = request.url();
    Ok(Started {
        redirect_url: url.to_string(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// The second leg: the code exchanged, the ID token checked, the user's claims mapped.
pub async fn finish(
    http: &HttpClient,
    connector: &OidcConnector,
    code: &str,
    nonce: &str,
    pkce_verifier: &str,
) -> Result<ExternalIdentity, SsoError> {
    let client = client(http, connector).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|err| provider_error(connector, err))?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .request_async(http)
        .await
        .map_err(|err| {
            refused(
                connector,
                format!("exchanging the code for tokens: {}", error_chain(&err)),
            )
        })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| refused(connector, "the provider sent no ID token"))?;
    let expected_nonce = Nonce::new(nonce.to_owned());
    let claims = id_token
        .claims(&client.id_token_verifier(), &expected_nonce)
        .map_err(|err| refused(connector, format!("the ID token: {err}")))?;

    let mut all = claims.additional_claims().claims.clone();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            all.insert(name.to_owned(), serde_json::Value::String(value));
        }
    };
    put("sub", Some(claims.subject().to_string()));
    put("email", claims.email().map(|email| email.to_string()));
    put(
        "preferred_username",
        claims.preferred_username().map(|name| name.to_string()),
    );
    put(
        "name",
        claims
            .name()
            .and_then(|name| name.get(None))
            .map(|name| name.to_string()),
    );
    let mut email_verified = claims.email_verified();

    // Providers often put groups in userinfo only; its claims complete the ID token's
    // (the ID token wins where both have one).
    if let Ok(request) = client.user_info(
        tokens.access_token().clone(),
        Some(claims.subject().clone()),
    ) {
        match request
            .request_async::<OtherClaims, _, CoreGenderClaim>(http)
            .await
        {
            Ok(info) => {
                for (name, value) in &info.additional_claims().claims {
                    all.entry(name.clone()).or_insert_with(|| value.clone());
                }
                if let Some(email) = info.email() {
                    all.entry("email".to_owned())
                        .or_insert_with(|| serde_json::Value::String(email.to_string()));
                }
                email_verified = email_verified.or(info.email_verified());
            }
            Err(err) => {
                tracing::warn!(connector = connector.name(), error = %error_chain(&err),
                    "the OIDC userinfo endpoint failed; using the ID token's claims only");
            }
        }
    }
    let traits = claims_to_traits(&all);

    let spec = &connector.spec;
    let username_claim = if spec.username_claim.is_empty() {
        "email"
    } else {
        spec.username_claim.as_str()
    };
    let username = traits
        .get(username_claim)
        .and_then(|values| values.first())
        .cloned()
        .ok_or_else(|| {
            refused(
                connector,
                format!(
                    "the provider sent no {username_claim:?} claim to name the user by \
                     (set the connector's username_claim, or add the scope that carries it)"
                ),
            )
        })?;
    if username_claim == "email" && email_verified == Some(false) && !spec.allow_unverified_email {
        return Err(refused(
            connector,
            format!(
                "the provider says {username:?} is not a verified e-mail address (set \
                 allow_unverified_email on the connector only if the provider checks \
                 addresses some other way)"
            ),
        ));
    }
    let roles = roles_from_claims(&spec.claims_to_roles, &traits);
    if roles.is_empty() {
        let mut mapped: Vec<&str> = spec
            .claims_to_roles
            .iter()
            .map(|mapping| mapping.claim.as_str())
            .collect();
        mapped.dedup();
        return Err(SsoError::NoRoles {
            user: username,
            connector: connector.name().to_owned(),
            claims: describe_claims(&traits, &mapped),
            field: "claims_to_roles",
        });
    }
    Ok(ExternalIdentity {
        username,
        roles,
        traits,
        logins: Vec::new(),
        session_ends: None,
    })
}

/// An error with its sources, which the `openidconnect` errors keep the useful part in.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
