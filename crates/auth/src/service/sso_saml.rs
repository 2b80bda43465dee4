//! SAML's own part of the single sign-on RPCs (the flow is in [`super::sso`]): the replay
//! record of accepted assertions, and the connectors' SP metadata for the proxy to serve.
//!
//! **Replay.** A bearer assertion logs in once. Each accepted assertion's ID is created under
//! `/sso/saml-assertions/SHA256(ID)` in the backend (shared by every auth server), expiring
//! when the assertion could no longer pass the checks anyway (its `NotOnOrAfter` plus the
//! clock skew). `create` is atomic: of two auth servers racing with one assertion, one wins.
//! Consuming the pending login (its `state` and request ID are used once) is a second guard.

use super::AuthServer;
use super::errors::ServiceError;
use super::sso::CONNECTORS_PREFIX;
use super::web_sessions::backend_error;
use jumpgate_api::proto;
use jumpgate_backend::{BackendError, Key, NewItem};
use jumpgate_types::SamlConnector;
use sha2::{Digest, Sha256};

const ASSERTIONS_PREFIX: &str = "/sso/saml-assertions/";

fn assertion_key(id: &str) -> Result<Key, ServiceError> {
    Key::new(format!(
        "{ASSERTIONS_PREFIX}{}",
        hex::encode(Sha256::digest(id.as_bytes()))
    ))
    .map_err(ServiceError::internal)
}

fn replayed() -> ServiceError {
    ServiceError::PermissionDenied(
        "this SAML response was already used: an assertion logs in once, and a replayed \
         one is refused; start again from the login page or jsh login"
            .to_owned(),
    )
}

impl AuthServer {
    /// Refuses, early and by name, a response whose assertion ID is already recorded. The
    /// ID is read before any check: this can only refuse; what accepts is
    /// [`AuthServer::record_saml_assertion`] after the response is verified.
    pub(super) async fn refuse_replayed_saml(
        &self,
        saml_response: &str,
    ) -> Result<(), ServiceError> {
        let Some(id) = jumpgate_saml::unverified_assertion_id(saml_response) else {
            return Ok(());
        };
        match self.inner.backend.get(&assertion_key(&id)?).await {
            Ok(_) => Err(replayed()),
            Err(BackendError::NotFound { .. }) => Ok(()),
            Err(err) => Err(backend_error(err)),
        }
    }

    /// Records a verified assertion as used, or refuses it as a replay.
    pub(super) async fn record_saml_assertion(
        &self,
        assertion: &jumpgate_saml::Assertion,
    ) -> Result<(), ServiceError> {
        let item = NewItem::new(assertion_key(&assertion.id)?, assertion.issuer.clone())
            .expiring(assertion.replay_until);
        match self.inner.backend.create(item).await {
            Ok(_) => Ok(()),
            Err(BackendError::AlreadyExists { .. }) => Err(replayed()),
            Err(err) => Err(backend_error(err)),
        }
    }

    /// `GetSamlMetadata`: the SP metadata of the saml connector `name`.
    pub(super) fn saml_metadata(
        &self,
        name: &str,
    ) -> Result<proto::GetSamlMetadataResponse, ServiceError> {
        let unknown = || {
            ServiceError::NotFound(format!(
                "there is no saml connector {name:?}; `jctl get saml` lists them"
            ))
        };
        if name.is_empty() || name.contains('/') {
            return Err(unknown());
        }
        let key = format!("{CONNECTORS_PREFIX}saml/{name}");
        let value = self.inner.cache.get(&key).ok_or_else(unknown)?;
        let text = std::str::from_utf8(&value).map_err(ServiceError::internal)?;
        let connector = SamlConnector::from_json(&key, text)
            .map_err(|err| ServiceError::internal_in("stored connector", err))?;
        Ok(proto::GetSamlMetadataResponse {
            xml: crate::sso::saml::metadata_xml(&connector),
        })
    }
}
