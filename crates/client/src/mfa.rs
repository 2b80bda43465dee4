//! The user's own security keys for `jsh mfa ls` and `jsh mfa rm` (the auth API's
//! `ListWebauthnDevices` and `DeleteWebauthnDevice`, through the proxy's auth passthrough
//! with the user's TLS identity, as [`crate::recordings`] reaches it). Registering a key
//! needs a FIDO library jsh does not have: `jsh mfa add` sends the user to the web UI's
//! page ([`keys_page`]).

use crate::error::ClientError;
use crate::profile::Profile;
use jumpgate_api::proto::{
    DeleteWebauthnDeviceRequest, ListWebauthnDevicesRequest, ListWebauthnDevicesResponse,
};
use jumpgate_api::{ApiError, AuthClient};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::Code;

/// The web UI's page for security keys, under the proxy's public address.
pub const KEYS_PAGE: &str = "/web/security-keys";

/// What can go wrong with the user's keys.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// Reaching the cluster, or an unusable profile.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No key by that name.
    #[error("{message}")]
    NotFound { message: String },
    /// Refused: the last second factor the policy requires, or security keys off.
    #[error("{message}")]
    Refused { message: String },
}

/// The URL of the web UI's security-keys page at proxy `addr` (`host:port`).
pub fn keys_page(addr: &str) -> String {
    match addr.strip_suffix(":443") {
        Some(host) => format!("https://{host}{KEYS_PAGE}"),
        None => format!("https://{addr}{KEYS_PAGE}"),
    }
}

async fn auth_client(profile: &Profile) -> Result<AuthClient, ClientError> {
    profile.check_valid(SystemTime::now())?;
    let tls = profile.tls_credentials()?.client_config()?;
    jumpgate_api::connect(&profile.meta.proxy, tls)
        .await
        .map_err(|err| match err {
            ApiError::Connect { addr, reason } => ClientError::Connect { addr, reason },
            other => ClientError::Credentials(other),
        })
}

fn status_error(status: &tonic::Status) -> MfaError {
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound => MfaError::NotFound { message },
        Code::PermissionDenied | Code::InvalidArgument => MfaError::Refused { message },
        code => MfaError::Client(ClientError::Auth {
            code: format!("{code:?}"),
            message,
        }),
    }
}

/// The user's keys and the cluster's policy.
pub async fn list_devices(profile: &Profile) -> Result<ListWebauthnDevicesResponse, MfaError> {
    let mut auth = auth_client(profile).await?;
    auth.list_webauthn_devices(ListWebauthnDevicesRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| status_error(&status))
}

/// Removes the key named (or with the credential ID) `name`.
pub async fn remove_device(profile: &Profile, name: &str) -> Result<(), MfaError> {
    let mut auth = auth_client(profile).await?;
    auth.delete_webauthn_device(DeleteWebauthnDeviceRequest {
        name: name.to_string(),
    })
    .await
    .map(|_| ())
    .map_err(|status| status_error(&status))
}

/// `jsh mfa ls`'s table.
pub fn devices_table(list: &ListWebauthnDevicesResponse) -> String {
    let when = |unix: i64| {
        if unix <= 0 {
            "never".to_string()
        } else {
            let at = UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs());
            humantime::format_rfc3339_seconds(at).to_string()
        }
    };
    let mut rows = vec![[
        "Name".to_string(),
        "Type".to_string(),
        "Passwordless".to_string(),
        "Added".to_string(),
        "Last used".to_string(),
    ]];
    for device in &list.devices {
        rows.push([
            device.name.clone(),
            "WebAuthn".to_string(),
            if device.passwordless { "yes" } else { "no" }.to_string(),
            when(device.added_unix),
            when(device.last_used_unix),
        ]);
    }
    if list.has_otp {
        rows.push([
            "(authenticator app)".to_string(),
            "TOTP".to_string(),
            "no".to_string(),
            "-".to_string(),
            "-".to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jumpgate_api::proto::WebauthnDeviceInfo;

    #[test]
    fn the_keys_page_is_under_the_proxy_public_address() {
        assert_eq!(
            keys_page("jumpgate.example.com:443"),
            "https://jumpgate.example.com/web/security-keys"
        );
        assert_eq!(
            keys_page("localhost:3080"),
            "https://localhost:3080/web/security-keys"
        );
    }

    #[test]
    fn the_table_lists_keys_and_the_app() {
        let list = ListWebauthnDevicesResponse {
            devices: vec![WebauthnDeviceInfo {
                name: "yubikey-blue".to_string(),
                id: "abc".to_string(),
                passwordless: true,
                added_unix: 1_800_000_000,
                last_used_unix: 0,
            }],
            has_otp: true,
            ..Default::default()
        };
        let table = devices_table(&list);
        assert!(table.starts_with("Name"), "{table}");
        let row = table.lines().nth(1).unwrap_or_default();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells.get(..3),
            Some(&["yubikey-blue", "WebAuthn", "yes"][..]),
            "{table}"
        );
        assert!(table.contains("never"), "{table}");
        assert!(table.contains("TOTP"), "{table}");
    }
}
