//! Joining a cluster: fresh keys made here, a join token, and the cluster's CA pin.
//!
//! The agent reaches the auth API through the proxy's public port (the proxy passes it
//! through by SNI, untouched) or directly, and checks the auth server's certificate
//! chains to a CA whose public key hashes to one of the configured `ca_pin`s, so the
//! token is only ever sent to the real cluster, even through an untrusted network or a
//! proxy with a public certificate.

use crate::identity::{HostIdentity, HostKeys};
use crate::{AgentError, JoinRefused, Unreachable};
use jumpgate_api::proto;
use jumpgate_pki::TlsCa;

/// Everything one [`join`] call needs: where to dial, the token, the pins, and the
/// identity asked for. Not the config's `jumpgate.join_params`
/// ([`jumpgate_types::config::JoinParams`]: the join method and token), one of its inputs.
#[derive(Clone)]
pub struct JoinSpec<'a> {
    /// The proxy's public address or an auth server's, `host:port`.
    pub server: &'a str,
    pub token: &'a str,
    pub ca_pins: &'a [String],
    pub host_uuid: &'a str,
    pub host_name: &'a str,
    /// `node` or `proxy`.
    pub role: &'a str,
    /// DNS names and IP addresses the host serves under (put in its certificates).
    pub addresses: &'a [String],
    /// How to dial: the source address, the `LOCAL` PROXY header to the daemon's own proxy.
    pub dial: jumpgate_api::DialOptions,
}

impl std::fmt::Debug for JoinSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinSpec")
            .field("server", &self.server)
            .field("token", &"[redacted]")
            .field("ca_pins", &self.ca_pins)
            .finish_non_exhaustive()
    }
}

/// Joins with `params.role`; the identity is returned, not yet saved.
pub async fn join(params: JoinSpec<'_>) -> Result<HostIdentity, AgentError> {
    if params.ca_pins.is_empty() {
        return Err(AgentError::Config(
            "jumpgate.ca_pin is empty: a host joining for the first time must check that it \
             talks to the right cluster; copy the ca_pin that `jctl tokens add` printed"
                .to_string(),
        ));
    }
    let tls = jumpgate_api::tls::pinned_client_config(params.ca_pins).map_err(AgentError::CaPin)?;
    let mut client = jumpgate_api::connect_from(params.server, tls, params.dial)
        .await
        .map_err(|err| AgentError::Unreachable(Unreachable::Connect(err)))?;
    let keys = HostKeys::generate(params.host_name)?;
    let joined = client
        .join(proto::JoinRequest {
            token: params.token.to_string(),
            role: params.role.to_string(),
            host_name: params.host_name.to_string(),
            host_uuid: params.host_uuid.to_string(),
            ssh_public_key: keys.ssh.public_openssh.clone(),
            tls_public_key_pem: keys.tls_public_pem.clone(),
            addresses: params.addresses.to_vec(),
            client_addr: String::new(),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                AgentError::Unreachable(Unreachable::Status(status))
            }
            _ => AgentError::JoinRefused(JoinRefused::Status(status)),
        })?
        .into_inner();
    // The TLS handshake already checked the pin; the CAs handed to us must match too.
    let pinned = joined
        .tls_ca_pems
        .iter()
        .any(|pem| TlsCa::pin_of_cert_pem(pem).is_ok_and(|pin| params.ca_pins.contains(&pin)));
    if !pinned {
        return Err(AgentError::JoinRefused(JoinRefused::UnpinnedCa));
    }
    let cluster = joined.cluster_name.clone();
    // Auth decides the UUID: another host may already hold the one this host asked for.
    let host_uuid = if joined.host_uuid.is_empty() {
        params.host_uuid.to_string()
    } else {
        joined.host_uuid.clone()
    };
    if host_uuid != params.host_uuid {
        tracing::warn!(
            requested = params.host_uuid,
            assigned = %host_uuid,
            "another host holds the UUID this host asked for; auth assigned this one"
        );
    }
    Ok(keys.into_identity(cluster, host_uuid, joined))
}
