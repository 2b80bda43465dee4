//! The real client address of an auth API connection that a proxy passes through.
//!
//! Hosts joining, agents and `jctl` reach the auth API through the proxy's public port. The
//! proxy splices those bytes (TLS ends at auth, so the proxy cannot add anything inside), and
//! auth would see every such caller as the proxy: one noisy client would spend everybody's
//! join and signup rate limit, and `instance.join` events would name the proxy.
//!
//! So the proxy opens each passed-through connection with a PROXY protocol v2 header naming
//! the client, carrying one custom TLV ([`SIGNED_ADDRESS_TLV`]) that proves a proxy wrote it:
//! the proxy's TLS certificate and its signature, by that certificate's key, over the two
//! addresses and the time. Auth takes the address only when
//! - the signature verifies under the certificate's public key ([`read_forwarded`], here),
//! - the time is within [`FRESHNESS`] of auth's clock (a recorded header is worth little
//!   for long: it can only claim the address it already named), and
//! - the certificate is a *proxy* identity issued by this cluster and not locked (auth
//!   checks that on every call, against its CAs and locks).
//!
//! A header that fails the first two checks closes the connection; a connection without a
//! header is taken as coming from its socket's peer.

use crate::tls::{ApiError, TlsCredentials, provider};
use ppp::v2;
use rustls::SignatureScheme;
use rustls::pki_types::CertificateDer;
use rustls::sign::SigningKey;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The PROXY v2 TLV type that carries the proxy's certificate and signature: in the range
/// the spec leaves to applications (`PP2_TYPE_MIN_CUSTOM` 0xE0 to 0xEF).
pub const SIGNED_ADDRESS_TLV: u8 = 0xE4;

/// How far a header's time may be from auth's clock, either way.
pub const FRESHNESS: Duration = Duration::from_secs(120);

/// Longest header auth reads: the fixed 16 bytes and 4 KiB of addresses and TLVs (a proxy
/// certificate is under 1 KiB).
pub const MAX_HEADER_LEN: usize = 16 + 4096;

/// The fixed part of a v2 header: signature, version/command, family/protocol, length.
const FIXED_LEN: usize = 16;

/// Layout version of the TLV value.
const TLV_VERSION: u8 = 1;

/// Prefix of the signed message, so that the signature means this and nothing else.
const CONTEXT: &[u8] = b"jumpgate: a proxy forwards an auth API connection for a client, v1\0";

/// Schemes a proxy may sign with (cluster keys are ECDSA P-256; the rest for imported ones).
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP384_SHA384,
];

/// Why a forwarding header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection starts like a PROXY header but is not a v2 one")]
    NotV2,
    #[error("the PROXY header is longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error(
        "the PROXY header carries no proxy signature; the auth API takes client addresses \
         only from this cluster's proxies (do not put a PROXY-protocol load balancer in front \
         of the auth API)"
    )]
    Unsigned,
    #[error("the PROXY header's signature does not verify: {0}")]
    BadSignature(String),
    #[error(
        "the PROXY header was signed {skew_secs} s away from this server's time (at most {} s \
         allowed); check the clocks of the proxy and the auth server",
        FRESHNESS.as_secs()
    )]
    Stale { skew_secs: u64 },
    #[error("cannot sign a PROXY header: {0}")]
    Sign(String),
}

/// A client address a proxy vouched for (signature and time checked; whether the
/// certificate is a proxy's of this cluster is the caller's to check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The client the proxy accepted the connection from.
    pub client: SocketAddr,
    /// The signing proxy's certificate (DER).
    pub proxy_cert: Arc<Vec<u8>>,
}

/// The signer a proxy uses now, replaced when its identity is renewed.
pub type SharedForwardSigner = Arc<std::sync::RwLock<Arc<ForwardSigner>>>;

/// A proxy's certificate and key, to sign the headers of passed-through connections.
pub struct ForwardSigner {
    cert: CertificateDer<'static>,
    key: Arc<dyn SigningKey>,
}

impl fmt::Debug for ForwardSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardSigner")
            .field("cert_len", &self.cert.len())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl ForwardSigner {
    /// Signs with the leaf certificate and key of `credentials` (the proxy's identity).
    pub fn new(credentials: &TlsCredentials) -> Result<ForwardSigner, ApiError> {
        let cert = credentials
            .leaf()
            .ok_or_else(|| ApiError::Credentials {
                what: "certificate".into(),
                reason: "holds no certificate".into(),
            })?
            .clone();
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(credentials.private_key())
            .map_err(|err| ApiError::Credentials {
                what: "private key".into(),
                reason: err.to_string(),
            })?;
        Ok(ForwardSigner { cert, key })
    }

    /// The header to send before the client's bytes: `client` as the source, `destination`
    /// (where the client connected) as the destination.
    pub fn header(
        &self,
        client: SocketAddr,
        destination: SocketAddr,
        now: SystemTime,
    ) -> Result<Vec<u8>, ForwardError> {
        // v2 wants both addresses of one family; a client through a load balancer may be
        // IPv6 while the proxy listens on IPv4.
        let destination = same_family(client, destination);
        let unix = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ForwardError::Sign("the clock is before 1970".into()))?
            .as_secs();
        let signer = self
            .key
            .choose_scheme(SCHEMES)
            .ok_or_else(|| ForwardError::Sign("the key type cannot sign here".into()))?;
        let scheme = signer.scheme();
        let signature = signer
            .sign(&signed_message(unix, client, destination))
            .map_err(|err| ForwardError::Sign(err.to_string()))?;
        build_header(unix, scheme, &self.cert, &signature, client, destination)
    }
}

/// The v2 header with the signature TLV made of these parts.
fn build_header(
    unix: u64,
    scheme: SignatureScheme,
    cert: &[u8],
    signature: &[u8],
    client: SocketAddr,
    destination: SocketAddr,
) -> Result<Vec<u8>, ForwardError> {
    let mut value = vec![TLV_VERSION];
    value.extend_from_slice(&unix.to_be_bytes());
    value.extend_from_slice(&u16::from(scheme).to_be_bytes());
    put_u16_prefixed(&mut value, cert)?;
    put_u16_prefixed(&mut value, signature)?;
    let addresses: v2::Addresses = match (client, destination) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
            v2::IPv4::new(*src.ip(), *dst.ip(), src.port(), dst.port()).into()
        }
        (src, dst) => v2::IPv6::new(ipv6(src.ip()), ipv6(dst.ip()), src.port(), dst.port()).into(),
    };
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        addresses,
    )
    .write_tlv(SIGNED_ADDRESS_TLV, &value)
    .and_then(v2::Builder::build)
    .map_err(|err| ForwardError::Sign(err.to_string()))
}

/// Reads a forwarding header from the start of `tcp` if there is one, consuming exactly its
/// bytes (the TLS handshake that follows stays in the socket). `Ok(None)`: the connection
/// does not start like a v2 header (TLS starts with 0x16), so it is a direct caller.
pub async fn read_forwarded(tcp: &mut TcpStream) -> Result<Option<Forwarded>, ForwardError> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 || !v2::PROTOCOL_PREFIX.starts_with(&first) {
        return Ok(None);
    }
    let mut fixed = [0u8; FIXED_LEN];
    tcp.read_exact(&mut fixed).await?;
    let [prefix @ .., length_high, length_low] = fixed;
    if !prefix.starts_with(v2::PROTOCOL_PREFIX) {
        return Err(ForwardError::NotV2);
    }
    let length = usize::from(u16::from_be_bytes([length_high, length_low]));
    if FIXED_LEN + length > MAX_HEADER_LEN {
        return Err(ForwardError::TooLong);
    }
    let mut rest = vec![0u8; length];
    tcp.read_exact(&mut rest).await?;
    let header = [fixed.as_slice(), &rest].concat();
    verify_header(&header, SystemTime::now()).map(Some)
}

/// Checks a whole header's signature and time (see the module docs).
pub fn verify_header(bytes: &[u8], now: SystemTime) -> Result<Forwarded, ForwardError> {
    let header =
        v2::Header::try_from(bytes).map_err(|err| ForwardError::Malformed(err.to_string()))?;
    if header.len() != bytes.len() {
        return Err(ForwardError::Malformed("bytes after the header".into()));
    }
    if header.command != v2::Command::Proxy || header.protocol != v2::Protocol::Stream {
        return Err(ForwardError::Malformed(
            "not a proxied TCP connection".into(),
        ));
    }
    let (client, destination) = match header.addresses {
        v2::Addresses::IPv4(a) => (
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        ),
        v2::Addresses::IPv6(a) => (
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        ),
        _ => return Err(ForwardError::Malformed("no IP addresses".into())),
    };
    let mut signed = None;
    for tlv in header.tlvs() {
        let tlv = tlv.map_err(|err| ForwardError::Malformed(err.to_string()))?;
        if tlv.kind == SIGNED_ADDRESS_TLV {
            if signed.is_some() {
                return Err(ForwardError::Malformed("two signature TLVs".into()));
            }
            signed = Some(tlv.value.into_owned());
        }
    }
    let value = signed.ok_or(ForwardError::Unsigned)?;
    let mut reader = Reader(&value);
    if reader.take(1)? != [TLV_VERSION] {
        return Err(ForwardError::Malformed(
            "unknown signature TLV version".into(),
        ));
    }
    let unix = u64::from_be_bytes(
        reader
            .take(8)?
            .try_into()
            .map_err(|_| ForwardError::Malformed("time".into()))?,
    );
    let scheme = SignatureScheme::from(u16::from_be_bytes(
        reader
            .take(2)?
            .try_into()
            .map_err(|_| ForwardError::Malformed("scheme".into()))?,
    ));
    let cert = reader.take_u16_prefixed()?.to_vec();
    let signature = reader.take_u16_prefixed()?;
    if !reader.0.is_empty() {
        return Err(ForwardError::Malformed("bytes after the signature".into()));
    }
    let signed_at = UNIX_EPOCH + Duration::from_secs(unix);
    let skew = now
        .duration_since(signed_at)
        .or_else(|_| signed_at.duration_since(now))
        .unwrap_or(Duration::MAX);
    if skew > FRESHNESS {
        return Err(ForwardError::Stale {
            skew_secs: skew.as_secs(),
        });
    }
    verify_signature(
        &cert,
        scheme,
        &signed_message(unix, client, destination),
        signature,
    )?;
    Ok(Forwarded {
        client,
        proxy_cert: Arc::new(cert),
    })
}

fn verify_signature(
    cert_der: &[u8],
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<(), ForwardError> {
    if !SCHEMES.contains(&scheme) {
        return Err(ForwardError::BadSignature(format!(
            "scheme {scheme:?} is not accepted"
        )));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|err| ForwardError::BadSignature(format!("not an X.509 certificate: {err}")))?;
    let public_key = &cert.public_key().subject_public_key.data;
    let algorithms = provider()
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(known, _)| *known == scheme)
        .map(|(_, algorithms)| *algorithms)
        .unwrap_or_default();
    if algorithms.iter().any(|algorithm| {
        algorithm
            .verify_signature(public_key, message, signature)
            .is_ok()
    }) {
        Ok(())
    } else {
        Err(ForwardError::BadSignature(
            "not made by the certificate's key over these addresses".into(),
        ))
    }
}

fn signed_message(unix: u64, client: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(&unix.to_be_bytes());
    message.extend_from_slice(format!("{client}\0{destination}").as_bytes());
    message
}

fn same_family(client: SocketAddr, destination: SocketAddr) -> SocketAddr {
    match (client, destination) {
        (SocketAddr::V4(_), SocketAddr::V6(dst)) => match dst.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(IpAddr::V4(ip), dst.port()),
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), dst.port()),
        },
        (SocketAddr::V6(_), SocketAddr::V4(dst)) => {
            SocketAddr::new(IpAddr::V6(dst.ip().to_ipv6_mapped()), dst.port())
        }
        _ => destination,
    }
}

fn ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

fn put_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), ForwardError> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| ForwardError::Sign("a field is longer than 65535 bytes".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Reads the TLV value front to back; running short is a malformed header.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ForwardError> {
        if self.0.len() < n {
            return Err(ForwardError::Malformed("signature TLV too short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn take_u16_prefixed(&mut self) -> Result<&'a [u8], ForwardError> {
        let &[high, low] = self.take(2)? else {
            return Err(ForwardError::Malformed("signature TLV too short".into()));
        };
        self.take(usize::from(u16::from_be_bytes([high, low])))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn signer() -> ForwardSigner {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["proxy".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let credentials =
            TlsCredentials::from_pem(&cert.pem(), &key.serialize_pem(), &cert.pem()).unwrap();
        ForwardSigner::new(&credentials).unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_signed_header_gives_the_client_and_the_signers_certificate() {
        let signer = signer();
        let now = SystemTime::now();
        for (client, destination) in [
            ("203.0.113.7:50000", "192.0.2.1:443"),
            ("[2001:db8::7]:50000", "[2001:db8::1]:443"),
            ("203.0.113.7:50000", "[::ffff:192.0.2.1]:443"),
            ("[2001:db8::7]:50000", "192.0.2.1:443"),
        ] {
            let header = signer.header(addr(client), addr(destination), now).unwrap();
            let forwarded = verify_header(&header, now).unwrap();
            assert_eq!(forwarded.client, addr(client), "{client} -> {destination}");
            assert_eq!(*forwarded.proxy_cert, signer.cert.to_vec());
        }
    }

    #[test]
    fn a_changed_address_or_signature_is_refused() {
        let signer = signer();
        let now = SystemTime::now();
        let header = signer
            .header(addr("203.0.113.7:50000"), addr("192.0.2.1:443"), now)
            .unwrap();
        // The source address sits right after the 16 fixed bytes; the last byte is the
        // signature's.
        for at in [16, 19, 25, header.len() - 1] {
            let mut tampered = header.clone();
            tampered[at] ^= 1;
            let refused = verify_header(&tampered, now).unwrap_err();
            assert!(
                matches!(
                    refused,
                    ForwardError::BadSignature(_) | ForwardError::Malformed(_)
                ),
                "byte {at}: {refused}"
            );
        }
        // Another key's certificate with this key's signature.
        let client = addr("203.0.113.7:50000");
        let destination = addr("192.0.2.1:443");
        let unix = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let signed = signer.key.choose_scheme(SCHEMES).unwrap();
        let signature = signed
            .sign(&signed_message(unix, client, destination))
            .unwrap();
        let genuine = build_header(
            unix,
            signed.scheme(),
            &signer.cert,
            &signature,
            client,
            destination,
        )
        .unwrap();
        assert!(verify_header(&genuine, now).is_ok());
        let swapped = build_header(
            unix,
            signed.scheme(),
            &self::signer().cert,
            &signature,
            client,
            destination,
        )
        .unwrap();
        assert!(matches!(
            verify_header(&swapped, now),
            Err(ForwardError::BadSignature(_))
        ));
    }

    #[test]
    fn an_old_or_future_header_is_refused() {
        let signer = signer();
        let now = SystemTime::now();
        let header = signer
            .header(addr("203.0.113.7:50000"), addr("192.0.2.1:443"), now)
            .unwrap();
        let late = now + FRESHNESS + Duration::from_secs(5);
        let early = now - FRESHNESS - Duration::from_secs(5);
        for when in [late, early] {
            assert!(matches!(
                verify_header(&header, when),
                Err(ForwardError::Stale { .. })
            ));
        }
        assert!(verify_header(&header, now + FRESHNESS - Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn a_header_without_the_signature_is_refused() {
        let plain = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            v2::IPv4::new([10, 0, 0, 9], [10, 0, 0, 1], 1234, 443),
        )
        .build()
        .unwrap();
        assert!(matches!(
            verify_header(&plain, SystemTime::now()),
            Err(ForwardError::Unsigned)
        ));
    }

    #[tokio::test]
    async fn read_forwarded_consumes_the_header_and_leaves_what_follows() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let signer = signer();
        let header = signer
            .header(addr("203.0.113.7:50000"), server, SystemTime::now())
            .unwrap();
        let sent = [header.as_slice(), b"\x16\x03\x01rest"].concat();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(server).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut tcp, &sent)
                .await
                .unwrap();
            tcp
        });
        let (mut tcp, _) = listener.accept().await.unwrap();
        let forwarded = read_forwarded(&mut tcp).await.unwrap().unwrap();
        assert_eq!(forwarded.client, addr("203.0.113.7:50000"));
        let mut rest = [0u8; 7];
        tcp.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x16\x03\x01rest");
        drop(client.await.unwrap());

        // A direct TLS client: nothing is consumed.
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(server).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut tcp, b"\x16\x03\x01")
                .await
                .unwrap();
            tcp
        });
        let (mut tcp, _) = listener.accept().await.unwrap();
        assert_eq!(read_forwarded(&mut tcp).await.unwrap(), None);
        let mut rest = [0u8; 3];
        tcp.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x16\x03\x01");
        drop(client.await.unwrap());
    }
}
