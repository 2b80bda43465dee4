//! Renewing a joined host's identity without a token: after a CA rotation (the
//! cluster's active TLS CA is not among the CAs the host holds), and when two thirds of
//! its certificate's lifetime have passed (host certificates live
//! `DEFAULT_HOST_TTL`, 30 days, in the auth service: a stolen one does not work for a
//! year), the host asks with its current certificate for certificates of fresh keys under
//! the current CAs. The old certificates stay valid meanwhile, so there is time; a host
//! that was off for longer than its certificate lives joins again with a token.

use crate::heartbeat::auth_client_from;
use crate::identity::{HostIdentity, HostKeys};
use crate::{AgentError, JoinRefused, Unreachable};
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
/// one the host does not hold yet, or the host's certificate is in the last third of its
/// lifetime at `now`.
pub fn needs_renewal(
    identity: &HostIdentity,
    cluster_pins: &[String],
    now: std::time::SystemTime,
) -> bool {
    let held = pins_of(&identity.tls_ca_pem);
    let rotated = cluster_pins
        .first()
        .is_some_and(|active| !held.contains(active));
    rotated || ageing(&identity.tls_cert_pem, now)
}

/// Two thirds of the certificate's lifetime have passed (or it cannot be read).
fn ageing(cert_pem: &str, now: std::time::SystemTime) -> bool {
    let Ok((not_before, not_after)) = jumpgate_pki::cert_validity(cert_pem) else {
        return true;
    };
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    now >= not_before + lifetime.mul_f64(2.0 / 3.0)
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
        .map_err(|status| AgentError::JoinRefused(JoinRefused::Status(status)))?
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
    dial: jumpgate_api::DialOptions,
    identity: &HostIdentity,
    host_name: &str,
    addresses: &[String],
) -> Result<Option<HostIdentity>, AgentError> {
    let mut client = auth_client_from(server, dial, identity).await?;
    let status = client
        .status(proto::StatusRequest {})
        .await
        .map_err(|status| AgentError::Unreachable(Unreachable::Status(status)))?
        .into_inner();
    if !needs_renewal(identity, &status.ca_pins, std::time::SystemTime::now()) {
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
    dial: jumpgate_api::DialOptions,
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
        match check_and_renew(&server, dial, &current, &host_name, &addresses).await {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::ageing;
    use jumpgate_pki::{IdentityKind, TlsCa, TlsCertParams, TlsIdentity, generate_tls_key};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_certificate_is_renewed_when_two_thirds_of_its_life_have_passed() {
        let now = SystemTime::now();
        let ca = TlsCa::generate("edge", now).unwrap();
        let (_, public) = generate_tls_key().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let cert = ca
            .issue(
                &TlsCertParams {
                    identity: TlsIdentity {
                        cluster: "edge".to_string(),
                        kind: IdentityKind::Node,
                        name: "n1".to_string(),
                        roles: vec![],
                    },
                    public_key_pem: public,
                    dns_names: vec![],
                    ip_addresses: vec![],
                    ttl: 30 * day,
                },
                now,
            )
            .unwrap();
        assert!(!ageing(&cert, now));
        assert!(!ageing(&cert, now + 19 * day));
        assert!(ageing(&cert, now + 21 * day));
        assert!(ageing("not a certificate", now), "unreadable: renew");
    }
}
