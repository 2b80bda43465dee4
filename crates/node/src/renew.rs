//! Renewing a joined host's identity without a token: after a CA rotation (the
//! cluster's active TLS CA is not among the CAs the host holds) the host asks, with its
//! current certificate, for certificates of fresh keys under the current CAs. The old
//! certificates stay valid through the rotation's grace period, so there is time.

use crate::AgentError;
use crate::heartbeat::auth_client;
use crate::identity::{HostIdentity, HostKeys};
use jumpgate_api::{AuthClient, proto};
use jumpgate_pki::TlsCa;

/// The `ca_pin`s of the CA certificates in a PEM text (several certificates).
pub fn pins_of(ca_pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    ca_pem
        .split_inclusive(END)
        .filter(|block| block.contains(END))
        .filter_map(|block| TlsCa::pin_of_cert_pem(block.trim_start()).ok())
        .collect()
}

/// Whether the cluster's active TLS CA (`cluster_pins[0]`, as `Status` lists them) is
/// one the host does not hold yet.
pub fn needs_renewal(identity: &HostIdentity, cluster_pins: &[String]) -> bool {
    let held = pins_of(&identity.tls_ca_pem);
    cluster_pins
        .first()
        .is_some_and(|active| !held.contains(active))
}

/// Asks the cluster for a renewed identity; `client` must carry `identity`.
pub async fn renew(
    client: &mut AuthClient,
    identity: &HostIdentity,
    host_name: &str,
    addresses: &[String],
) -> Result<HostIdentity, AgentError> {
    let keys = HostKeys::generate(host_name)?;
    let renewed = client
        .renew_host(proto::RenewHostRequest {
            host_name: host_name.to_string(),
            ssh_public_key: keys.ssh.public_openssh.clone(),
            tls_public_key_pem: keys.tls_public_pem.clone(),
            addresses: addresses.to_vec(),
        })
        .await
        .map_err(|status| AgentError::JoinRefused(status.message().to_string()))?
        .into_inner();
    Ok(keys.into_identity(
        identity.cluster.clone(),
        identity.host_uuid.clone(),
        renewed,
    ))
}

/// Checks the cluster's CAs and renews `identity` when needed; returns the new one.
pub async fn check_and_renew(
    server: &str,
    identity: &HostIdentity,
    host_name: &str,
    addresses: &[String],
) -> Result<Option<HostIdentity>, AgentError> {
    let mut client = auth_client(server, identity).await?;
    let status = client
        .status(proto::StatusRequest {})
        .await
        .map_err(|status| AgentError::Unreachable(status.message().to_string()))?
        .into_inner();
    if !needs_renewal(identity, &status.ca_pins) {
        return Ok(None);
    }
    renew(&mut client, identity, host_name, addresses)
        .await
        .map(Some)
}

/// How often an agent checks whether the cluster's CAs moved on.
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks every [`CHECK_EVERY`] until `stop` resolves; a renewed identity is saved in
/// `data_dir` first, then published to the tasks that use it.
pub async fn run(
    server: String,
    identity: tokio::sync::watch::Sender<HostIdentity>,
    data_dir: std::path::PathBuf,
    host_name: String,
    addresses: Vec<String>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let current = identity.borrow().clone();
        match check_and_renew(&server, &current, &host_name, &addresses).await {
            Ok(None) => {}
            Ok(Some(renewed)) => {
                if let Err(err) = renewed.save(&data_dir) {
                    tracing::warn!(%err, "cannot store the renewed host identity; keeping the old one");
                    continue;
                }
                tracing::info!("renewed the host identity under the cluster's current CAs");
                identity.send_replace(renewed);
            }
            Err(err) => tracing::debug!(%err, "cannot check the cluster's CAs"),
        }
    }
}
