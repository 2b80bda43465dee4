use super::*;
use ssh_key::certificate::Builder;

fn user_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
}

fn params(key: &PrivateKey) -> UserCertParams {
    UserCertParams {
        public_key: key.public_key().clone(),
        user: "alice".to_string(),
        logins: vec!["alice".to_string(), "ubuntu".to_string()],
        roles: vec!["access".to_string(), "dev".to_string()],
        traits: [("logins".to_string(), vec!["alice".to_string()])].into(),
        ttl: Duration::from_secs(3600),
        permissions: Permissions {
            pty: true,
            port_forwarding: true,
            ..Permissions::default()
        },
        source_address: None,
    }
}

fn check<'a>(trusted: &'a [Fingerprint], login: &'a str) -> UserCertCheck<'a> {
    UserCertCheck {
        trusted,
        cluster: "prod",
        login,
        client_addr: Some("127.0.0.1".parse().unwrap()),
        now: SystemTime::now(),
    }
}

#[test]
fn an_issued_user_certificate_verifies_and_says_what_was_asked() {
    let ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let key = user_key();
    let cert = ca.sign_user(&params(&key), SystemTime::now()).unwrap();
    let trusted = ca.trusted_fingerprints();
    let verified = verify_user_cert(&cert, &check(&trusted, "ubuntu")).unwrap();
    assert_eq!(verified.user, "alice");
    assert_eq!(verified.roles, ["access", "dev"]);
    assert_eq!(verified.logins, ["alice", "ubuntu"]);
    assert_eq!(
        verified.traits.get("logins"),
        Some(&vec!["alice".to_string()])
    );
    assert!(verified.permissions.pty && verified.permissions.port_forwarding);
    assert!(!verified.permissions.agent_forwarding);
    assert_eq!(cert.key_id(), "alice");
    assert_eq!(cert.public_key(), key.public_key().key_data());
}

/// A certificate, what it is checked against, and the refusal expected.
type RefusalCase<'a> = (
    &'a str,
    &'a Certificate,
    UserCertCheck<'a>,
    fn(&CertError) -> bool,
);

/// Every refusal, each with the variant that names its cause.
#[test]
fn user_certificate_refusals() {
    let ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let other_cluster_ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let host_ca = SshCa::generate(CaKind::Host, "prod").unwrap();
    let key = user_key();
    let trusted = ca.trusted_fingerprints();
    let now = SystemTime::now();
    let good = ca.sign_user(&params(&key), now).unwrap();

    let expired = ca
        .sign_user(&params(&key), now - Duration::from_secs(7200))
        .unwrap();
    let future = ca
        .sign_user(&params(&key), now + Duration::from_secs(7200))
        .unwrap();
    let foreign = other_cluster_ca.sign_user(&params(&key), now).unwrap();
    let host_cert = host_ca
        .sign_host(
            &HostCertParams {
                public_key: key.public_key().clone(),
                host_id: "uuid".to_string(),
                principals: vec!["alice".to_string()],
                ttl: Duration::from_secs(3600),
            },
            now,
        )
        .unwrap();
    let mut pinned_params = params(&key);
    pinned_params.source_address = Some(vec!["10.0.0.0/8".parse().unwrap()]);
    let pinned = ca.sign_user(&pinned_params, now).unwrap();
    let renamed_cluster = SshCa::generate(CaKind::User, "staging").unwrap();
    let staging = renamed_cluster.sign_user(&params(&key), now).unwrap();
    let staging_trusted = renamed_cluster.trusted_fingerprints();

    // A certificate with an option we do not implement, signed by the trusted CA.
    let mut builder = Builder::new_with_random_nonce(
        &mut rand::rng(),
        key.public_key().key_data().clone(),
        0,
        u64::MAX - 1,
    )
    .unwrap();
    builder.cert_type(CertType::User).unwrap();
    builder.valid_principal("alice").unwrap();
    builder
        .critical_option("force-command", "/bin/true")
        .unwrap();
    builder.extension(EXT_CLUSTER, "prod").unwrap();
    let forced = builder.sign(&ca.signer).unwrap();

    // A tampered certificate: a principal changed after signing ("ubuntu" -> "rootie").
    let tampered = {
        let mut bytes = good.to_bytes().unwrap();
        let at = bytes
            .windows(6)
            .position(|w| w == b"ubuntu")
            .expect("principal in the encoding");
        bytes[at..at + 6].copy_from_slice(b"rootie");
        Certificate::from_bytes(&bytes).unwrap()
    };
    let host_trusted = host_ca.trusted_fingerprints();

    let cases: Vec<RefusalCase<'_>> = vec![
        ("expired", &expired, check(&trusted, "alice"), |e| {
            matches!(e, CertError::Expired { .. })
        }),
        ("not yet valid", &future, check(&trusted, "alice"), |e| {
            matches!(e, CertError::NotYetValid { .. })
        }),
        ("wrong CA", &foreign, check(&trusted, "alice"), |e| {
            matches!(e, CertError::UntrustedCa { .. })
        }),
        ("wrong principal", &good, check(&trusted, "root"), |e| {
            matches!(e, CertError::PrincipalNotAllowed { .. })
        }),
        (
            "host cert as user cert",
            &host_cert,
            check(&host_trusted, "alice"),
            |e| matches!(e, CertError::WrongType { .. }),
        ),
        ("source address", &pinned, check(&trusted, "alice"), |e| {
            matches!(e, CertError::SourceAddressDenied { .. })
        }),
        (
            "unknown critical option",
            &forced,
            check(&trusted, "alice"),
            |e| matches!(e, CertError::UnknownCriticalOption { .. }),
        ),
        (
            "other cluster",
            &staging,
            check(&staging_trusted, "alice"),
            |e| matches!(e, CertError::WrongCluster { .. }),
        ),
        ("tampered", &tampered, check(&trusted, "rootie"), |e| {
            matches!(e, CertError::BadSignature)
        }),
    ];
    for (name, cert, check, expected) in cases {
        match verify_user_cert(cert, &check) {
            Ok(verified) => panic!("{name}: accepted {verified:?}"),
            Err(err) => assert!(expected(&err), "{name}: wrong refusal {err:?}"),
        }
    }
}

#[test]
fn source_address_accepts_listed_networks_and_mapped_ipv4() {
    let ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let key = user_key();
    let mut p = params(&key);
    p.source_address = Some(vec![
        "127.0.0.0/8".parse().unwrap(),
        "::1/128".parse().unwrap(),
    ]);
    let cert = ca.sign_user(&p, SystemTime::now()).unwrap();
    let trusted = ca.trusted_fingerprints();
    for addr in ["127.0.0.1", "::1", "::ffff:127.0.0.5"] {
        let mut c = check(&trusted, "alice");
        c.client_addr = Some(addr.parse().unwrap());
        verify_user_cert(&cert, &c).unwrap_or_else(|e| panic!("{addr}: {e}"));
    }
    let mut unknown = check(&trusted, "alice");
    unknown.client_addr = None;
    assert!(matches!(
        verify_user_cert(&cert, &unknown),
        Err(CertError::SourceAddressDenied { .. })
    ));
}

#[test]
fn malformed_source_address_is_refused_not_ignored() {
    assert!(matches!(
        check_source_address(
            "10.0.0.0/8,not-an-address",
            Some("10.1.1.1".parse().unwrap())
        ),
        Err(CertError::MalformedSourceAddress { .. })
    ));
}

#[test]
fn rotation_keeps_the_previous_ca_trusted_during_the_grace_period() {
    let old = SshCa::generate(CaKind::User, "prod").unwrap();
    let key = user_key();
    let issued_before = old.sign_user(&params(&key), SystemTime::now()).unwrap();
    let mut new = SshCa::generate(CaKind::User, "prod").unwrap();
    let strict = new.trusted_fingerprints();
    assert!(verify_user_cert(&issued_before, &check(&strict, "alice")).is_err());
    new.trust_previous(old.public_key().clone());
    let grace = new.trusted_fingerprints();
    verify_user_cert(&issued_before, &check(&grace, "alice")).unwrap();
    assert_eq!(new.export_openssh().unwrap().lines().count(), 2);
}

#[test]
fn requests_that_would_be_dangerous_are_refused() {
    let ca = SshCa::generate(CaKind::User, "prod").unwrap();
    let key = user_key();
    let mut no_logins = params(&key);
    no_logins.logins.clear();
    assert!(matches!(
        ca.sign_user(&no_logins, SystemTime::now()),
        Err(PkiError::InvalidRequest(_))
    ));
    let mut zero_ttl = params(&key);
    zero_ttl.ttl = Duration::ZERO;
    assert!(ca.sign_user(&zero_ttl, SystemTime::now()).is_err());
    let mut comma_role = params(&key);
    comma_role.roles = vec!["a,b".to_string()];
    assert!(ca.sign_user(&comma_role, SystemTime::now()).is_err());
    let host_ca = SshCa::generate(CaKind::Host, "prod").unwrap();
    assert!(matches!(
        host_ca.sign_user(&params(&key), SystemTime::now()),
        Err(PkiError::WrongCa { .. })
    ));
}

#[test]
fn the_ca_round_trips_through_its_stored_form_and_hides_its_key_in_debug() {
    let ca = SshCa::generate(CaKind::Host, "prod").unwrap();
    let stored = ca.private_key_openssh().unwrap();
    let loaded = SshCa::from_openssh(CaKind::Host, "prod", &stored).unwrap();
    assert_eq!(loaded.fingerprint(), ca.fingerprint());
    let debug = format!("{ca:?}");
    assert!(
        debug.contains("[redacted]") && !debug.contains("PRIVATE KEY"),
        "{debug}"
    );
    let line = ca.export_openssh().unwrap();
    assert!(line.starts_with("@cert-authority * ssh-ed25519 "), "{line}");
    assert!(line.trim_end().ends_with("jumpgate-host-ca@prod"), "{line}");
}

#[test]
fn host_certificates_check_the_dialled_name() {
    let ca = SshCa::generate(CaKind::Host, "prod").unwrap();
    let key = user_key();
    let cert = ca
        .sign_host(
            &HostCertParams {
                public_key: key.public_key().clone(),
                host_id: "5f0c".to_string(),
                principals: vec![
                    "node1".to_string(),
                    "5f0c".to_string(),
                    "10.0.0.7".to_string(),
                ],
                ttl: Duration::from_secs(3600),
            },
            SystemTime::now(),
        )
        .unwrap();
    let trusted = ca.trusted_fingerprints();
    verify_host_cert(&cert, &trusted, "node1", SystemTime::now()).unwrap();
    assert!(matches!(
        verify_host_cert(&cert, &trusted, "node2", SystemTime::now()),
        Err(CertError::PrincipalNotAllowed { .. })
    ));
    let user_ca = SshCa::generate(CaKind::User, "prod").unwrap();
    assert!(matches!(
        verify_host_cert(
            &cert,
            &user_ca.trusted_fingerprints(),
            "node1",
            SystemTime::now()
        ),
        Err(CertError::UntrustedCa { .. })
    ));
}
