//! Reading a TLS ClientHello without consuming it, to route a connection by ALPN and SNI.
//!
//! The proxy decides from the ClientHello whether to terminate TLS itself or pass the raw
//! bytes through to the auth server, so the bytes stay in the caller's buffer for replay
//! (see `prefixed::PrefixedStream`). Parsing is rustls's own [`Acceptor`], so what we route on
//! is exactly what the terminating rustls will see; we add only a cheap first-record check that
//! names what a non-TLS client sent, a size cap, and a read loop with a deadline.

use std::time::Duration;

use rustls::server::{Accepted, Acceptor};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What routing needs from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHelloInfo {
    /// The SNI host name, lowercased; `None` when absent or an IP address.
    pub server_name: Option<String>,
    /// The ALPN protocols offered, in the client's order; empty when none.
    pub alpn: Vec<Vec<u8>>,
}

/// Why no ClientHello could be read from a connection.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// The first bytes are not a TLS handshake record.
    #[error("client did not start a TLS handshake; what it sent looks like {0}")]
    NotTls(LooksLike),
    /// The client sent a TLS record that is not a valid ClientHello.
    #[error("malformed TLS ClientHello from client: {0}")]
    Malformed(String),
    /// The ClientHello is longer than [`MAX_CLIENT_HELLO_LEN`].
    #[error("TLS ClientHello from client is larger than {MAX_CLIENT_HELLO_LEN} bytes")]
    TooLarge,
    /// The client did not send a whole ClientHello in time.
    #[error("client sent no complete TLS ClientHello in time")]
    Timeout,
    /// The client closed the connection before a whole ClientHello arrived.
    #[error("client closed the connection before a complete TLS ClientHello")]
    Closed,
    /// Reading from the socket failed.
    #[error("reading the TLS ClientHello: {0}")]
    Io(#[from] std::io::Error),
}

/// What a connection that is not TLS seems to carry, so the error can say what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LooksLike {
    /// A plain-text HTTP request (or the HTTP/2 cleartext preface).
    Http,
    /// A PROXY protocol header, which is refused while `proxy_protocol` is off.
    ProxyHeader,
    /// An SSH client's version banner.
    Ssh,
    /// None of the above.
    Other,
}

impl std::fmt::Display for LooksLike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "plain HTTP (use https://)",
            Self::ProxyHeader => {
                "a PROXY protocol header (set proxy_protocol: on if a trusted load balancer \
                 sends one)"
            }
            Self::Ssh => "an SSH client's banner (connect through the proxy with jsh)",
            Self::Other => "neither TLS, HTTP, SSH nor a PROXY protocol header",
        })
    }
}

/// Biggest ClientHello accepted, record headers included.
///
/// Post-quantum key shares make ClientHellos several KiB, and TLS lets a client split one over
/// many records, so neither one record nor one read is assumed. rustls refuses handshake
/// messages over 64 KiB; this caps the bytes buffered for one the same way.
pub const MAX_CLIENT_HELLO_LEN: usize = 64 * 1024;

/// Longest first record let through to rustls: a ClientHello record is plaintext, at most
/// 2^14 bytes (RFC 8446 section 5.1); the slack of TLS 1.3's ciphertext limit refuses only
/// what no TLS stack would send.
const MAX_RECORD_LEN: usize = 16_384 + 256;
/// TLS record content type of handshake messages.
const HANDSHAKE: u8 = 0x16;

/// Looks at the bytes so far.
///
/// `Ok(Some(info))` once the whole ClientHello is in `buf`, `Ok(None)` while more bytes are
/// needed, `Err` if it can never be a valid ClientHello. Never panics, whatever `buf` holds.
pub fn peek(buf: &[u8]) -> Result<Option<ClientHelloInfo>, PeekError> {
    check_first_record(buf)?;
    Parser::default().feed(buf)
}

/// Reads from `stream`, appending to `buf`, until the whole ClientHello is in `buf`.
///
/// `buf` may already hold bytes (those read past a PROXY header). All bytes read stay in `buf`
/// for the caller to replay. Gives up after `timeout`, so a slow or silent client cannot hold
/// the connection.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<ClientHelloInfo, PeekError> {
    let read = async {
        // One parser fed only the new bytes: re-parsing the whole buffer after every read
        // would let a client sending one byte at a time cost quadratic work.
        let mut parser = Parser::default();
        loop {
            check_first_record(buf)?;
            if let Some(info) = parser.feed(buf)? {
                return Ok(info);
            }
            // `feed` fails once the cap is reached, so this is at least 1.
            let room = MAX_CLIENT_HELLO_LEN.saturating_sub(buf.len()).max(1);
            buf.reserve(room.min(4096));
            let limit = u64::try_from(room).unwrap_or(u64::MAX);
            if (&mut *stream).take(limit).read_buf(buf).await? == 0 {
                return Err(PeekError::Closed);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| PeekError::Timeout)?
}

/// Refuses at once what cannot start a ClientHello, from the first record header alone.
fn check_first_record(buf: &[u8]) -> Result<(), PeekError> {
    match buf.first() {
        None => return Ok(()),
        Some(&HANDSHAKE) => {}
        Some(_) => return Err(PeekError::NotTls(looks_like(buf))),
    }
    // Record versions are 0x0300 (SSL 3.0) to 0x0304; ClientHellos send 0x0301 or 0x0303.
    if buf.get(1).is_some_and(|&major| major != 0x03)
        || buf.get(2).is_some_and(|&minor| minor > 0x04)
    {
        return Err(PeekError::NotTls(LooksLike::Other));
    }
    if let (Some(&hi), Some(&lo)) = (buf.get(3), buf.get(4)) {
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(PeekError::Malformed(format!(
                "first record claims {len} bytes; TLS records hold 1 to {MAX_RECORD_LEN}"
            )));
        }
    }
    Ok(())
}

fn looks_like(buf: &[u8]) -> LooksLike {
    // At least four bytes must agree (or the whole token if shorter), so that "P" is not
    // called a PROXY header when it may be "POST".
    let starts = |token: &[u8]| {
        buf.len() >= token.len().min(4) && buf.iter().zip(token).all(|(a, b)| a == b)
    };
    const HTTP: &[&[u8]] = &[
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"PRI * HTTP/2.0",
    ];
    if starts(b"PROXY ") || starts(b"\r\n\r\n\0\r\nQUIT\n") {
        LooksLike::ProxyHeader
    } else if HTTP.iter().any(|m| starts(m)) {
        LooksLike::Http
    } else if starts(b"SSH-") {
        LooksLike::Ssh
    } else {
        LooksLike::Other
    }
}

/// A rustls [`Acceptor`] and how many bytes of the buffer it has been fed.
#[derive(Default)]
struct Parser {
    acceptor: Acceptor,
    fed: usize,
}

impl Parser {
    /// Feeds the bytes of `buf` not yet fed, and says whether the ClientHello is complete.
    fn feed(&mut self, buf: &[u8]) -> Result<Option<ClientHelloInfo>, PeekError> {
        // Bytes past the cap are never looked at, so a ClientHello ending there is refused
        // whether it arrived all at once or in pieces.
        let buf = buf.get(..MAX_CLIENT_HELLO_LEN).unwrap_or(buf);
        let mut new = buf.get(self.fed..).unwrap_or_default();
        while !new.is_empty() {
            // rustls takes at most 4 KiB per call and must see each record (`accept`) before
            // it lets its buffer grow past one record, so feed and accept in turns.
            match self.acceptor.read_tls(&mut new) {
                Ok(n) if n > 0 => self.fed = self.fed.saturating_add(n),
                // From a non-empty slice, rustls takes nothing or fails only when its
                // handshake buffer is full.
                Ok(_) | Err(_) => return Err(PeekError::TooLarge),
            }
            match self.acceptor.accept() {
                Ok(Some(accepted)) => return Ok(Some(info(&accepted))),
                Ok(None) => {}
                Err((
                    rustls::Error::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge),
                    _,
                )) => {
                    return Err(PeekError::TooLarge);
                }
                // The alert is not sent: this stage only routes, and the connection is dropped.
                Err((e, _alert)) => return Err(PeekError::Malformed(e.to_string())),
            }
        }
        if buf.len() >= MAX_CLIENT_HELLO_LEN {
            return Err(PeekError::TooLarge);
        }
        Ok(None)
    }
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("fed", &self.fed)
            .finish_non_exhaustive()
    }
}

fn info(accepted: &Accepted) -> ClientHelloInfo {
    let hello = accepted.client_hello();
    ClientHelloInfo {
        server_name: hello.server_name().map(str::to_owned),
        alpn: hello
            .alpn()
            .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncWriteExt, ReadBuf};

    const SNI: &str = "jumpgate.cluster.local";

    fn client_config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The first flight a real rustls client sends: its ClientHello.
    fn client_hello(alpn: &[&[u8]], server_name: &str) -> Vec<u8> {
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let mut conn = ClientConnection::new(client_config(alpn), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    fn jumpgate_hello() -> Vec<u8> {
        client_hello(&[b"jumpgate-ssh", b"h2"], SNI)
    }

    fn jumpgate_info() -> ClientHelloInfo {
        ClientHelloInfo {
            server_name: Some(SNI.to_string()),
            alpn: vec![b"jumpgate-ssh".to_vec(), b"h2".to_vec()],
        }
    }

    /// The handshake message inside a single-record ClientHello.
    fn handshake_message(hello: &[u8]) -> &[u8] {
        assert_eq!(hello[0], HANDSHAKE);
        let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(len + 5, hello.len(), "expected a single record");
        &hello[5..]
    }

    /// Splits a handshake message into records of at most `size` bytes.
    fn records(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(size) {
            out.extend_from_slice(&[HANDSHAKE, 0x03, 0x01]);
            out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// The ClientHello message with a padding extension of `pad` bytes in front of the others,
    /// standing in for the large key shares of post-quantum clients.
    fn padded_message(hello: &[u8], pad: usize) -> Vec<u8> {
        let msg = handshake_message(hello);
        let body = &msg[4..];
        let mut at = 2 + 32; // legacy_version, random
        at += 1 + usize::from(body[at]); // session id
        at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]])); // cipher suites
        at += 1 + usize::from(body[at]); // compression methods
        let ext_len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        let mut out_body = body[..at].to_vec();
        out_body.extend_from_slice(&u16::try_from(ext_len + 4 + pad).unwrap().to_be_bytes());
        out_body.extend_from_slice(&[0x00, 0x15]);
        out_body.extend_from_slice(&u16::try_from(pad).unwrap().to_be_bytes());
        out_body.resize(out_body.len() + pad, 0);
        out_body.extend_from_slice(&body[at + 2..]);
        let mut out = vec![0x01];
        out.extend_from_slice(&u32::try_from(out_body.len()).unwrap().to_be_bytes()[1..]);
        out.extend_from_slice(&out_body);
        out
    }

    #[test]
    fn real_client_hello_gives_sni_and_alpn() {
        let hello = jumpgate_hello();
        assert_eq!(peek(&hello).unwrap(), Some(jumpgate_info()));
    }

    #[test]
    fn bytes_after_the_client_hello_are_ignored() {
        let mut bytes = jumpgate_hello();
        bytes.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03]);
        assert_eq!(peek(&bytes).unwrap(), Some(jumpgate_info()));
    }

    #[test]
    fn every_strict_prefix_needs_more() {
        let hello = jumpgate_hello();
        for len in 0..hello.len() {
            let got = peek(&hello[..len]);
            assert!(matches!(got, Ok(None)), "prefix of {len} bytes: {got:?}");
        }
    }

    #[test]
    fn client_hello_split_over_many_records() {
        let hello = jumpgate_hello();
        let split = records(handshake_message(&hello), 100);
        assert!(split.len() > hello.len() + 5);
        assert_eq!(peek(&split).unwrap(), Some(jumpgate_info()));
        for len in (0..split.len()).step_by(7) {
            assert!(matches!(peek(&split[..len]), Ok(None)), "{len}");
        }
    }

    #[test]
    fn large_client_hello_over_several_full_records() {
        let hello = jumpgate_hello();
        let big = records(&padded_message(&hello, 40_000), 16_384);
        assert!(big.len() > 40_000 && big.len() < MAX_CLIENT_HELLO_LEN);
        assert_eq!(peek(&big).unwrap(), Some(jumpgate_info()));
        for len in (0..big.len()).step_by(997) {
            assert!(matches!(peek(&big[..len]), Ok(None)), "{len}");
        }
    }

    #[test]
    fn oversized_client_hello_is_too_large() {
        // A message rustls would take, but in so many small records that the bytes on the wire
        // pass the cap.
        // The padding brings the message to about 64,000 bytes whatever the size of the
        // hello (its key shares vary: a post-quantum one alone is over 1 KiB).
        let hello = jumpgate_hello();
        let pad = 64_000usize.saturating_sub(hello.len());
        let huge = records(&padded_message(&hello, pad), 200);
        assert!(huge.len() > MAX_CLIENT_HELLO_LEN);
        let got = peek(&huge);
        assert!(matches!(got, Err(PeekError::TooLarge)), "{got:?}");
        // The same message in full records fits.
        let fits = records(&padded_message(&hello, pad), 16_384);
        assert!(fits.len() <= MAX_CLIENT_HELLO_LEN);
        assert_eq!(peek(&fits).unwrap(), Some(jumpgate_info()));
    }

    #[test]
    fn no_alpn_and_ip_address_server_name() {
        // rustls clients send no SNI for an IP address, as RFC 6066 asks.
        let hello = client_hello(&[], "192.0.2.1");
        assert_eq!(peek(&hello).unwrap(), Some(ClientHelloInfo::default()));
        let hello = client_hello(&[b"h2"], "[2001:db8::1]".trim_matches(['[', ']']));
        let info = peek(&hello).unwrap().unwrap();
        assert_eq!((info.server_name, info.alpn), (None, vec![b"h2".to_vec()]));
        let hello = client_hello(&[], SNI);
        let info = peek(&hello).unwrap().unwrap();
        assert_eq!(info.server_name.as_deref(), Some(SNI));
        assert!(info.alpn.is_empty());
    }

    #[test]
    fn sni_is_lowercased() {
        let hello = client_hello(&[], "Jumpgate.Cluster.LOCAL");
        assert_eq!(
            peek(&hello).unwrap().unwrap().server_name.as_deref(),
            Some(SNI)
        );
    }

    #[test]
    fn non_tls_is_refused_with_what_it_looks_like() {
        let cases: &[(&[u8], LooksLike)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", LooksLike::Http),
            (b"POST /v1/webapi HTTP/1.1\r\n", LooksLike::Http),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", LooksLike::Http),
            (
                b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n",
                LooksLike::ProxyHeader,
            ),
            (
                b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
                LooksLike::ProxyHeader,
            ),
            (b"SSH-2.0-OpenSSH_9.6\r\n", LooksLike::Ssh),
            (b"\x00\x01\x02\x03", LooksLike::Other),
            (b"P", LooksLike::Other),
        ];
        for (bytes, kind) in cases {
            match peek(bytes) {
                Err(PeekError::NotTls(got)) => assert_eq!(got, *kind, "{bytes:?}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        let msg = peek(b"GET / HTTP/1.1\r\n").unwrap_err().to_string();
        assert!(msg.contains("plain HTTP"), "{msg}");
        let msg = peek(b"PROXY UNKNOWN\r\n").unwrap_err().to_string();
        assert!(msg.contains("PROXY protocol header"), "{msg}");
    }

    #[test]
    fn bad_record_headers_are_refused_at_once() {
        // Not a TLS version.
        assert!(matches!(
            peek(&[0x16, 0x02]),
            Err(PeekError::NotTls(LooksLike::Other))
        ));
        assert!(matches!(
            peek(&[0x16, 0x03, 0x09]),
            Err(PeekError::NotTls(_))
        ));
        // Oversized and empty record lengths are known from the 5-byte header alone.
        for len in [0u16, 16_384 + 257, u16::MAX] {
            let mut bytes = vec![0x16, 0x03, 0x01];
            bytes.extend_from_slice(&len.to_be_bytes());
            let got = peek(&bytes);
            assert!(
                matches!(got, Err(PeekError::Malformed(_))),
                "{len}: {got:?}"
            );
        }
    }

    #[test]
    fn garbage_inside_a_record_is_malformed() {
        // A handshake record holding a ServerHello (type 2) instead of a ClientHello.
        let mut hello = jumpgate_hello();
        hello[5] = 0x02;
        assert!(matches!(peek(&hello), Err(PeekError::Malformed(_))));
        // A record of random bytes.
        // A ClientHello of the right length whose body is junk.
        let mut bytes = vec![0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c];
        bytes.extend((0..60u8).map(|i| i.wrapping_mul(37)));
        assert!(matches!(peek(&bytes), Err(PeekError::Malformed(_))));
        // A handshake message declaring more than rustls will ever buffer.
        let bytes = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00];
        assert!(matches!(peek(&bytes), Err(PeekError::TooLarge)));
    }

    /// Hands out its bytes one per read, then EOF.
    struct OneByteReader {
        data: Vec<u8>,
        pos: usize,
    }

    impl AsyncRead for OneByteReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(&b) = self.data.get(self.pos) {
                buf.put_slice(&[b]);
                self.pos += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn read_one_byte_at_a_time() {
        let hello = jumpgate_hello();
        for data in [hello.clone(), records(handshake_message(&hello), 50)] {
            let mut reader = OneByteReader {
                data: data.clone(),
                pos: 0,
            };
            let mut buf = Vec::new();
            let info = read_client_hello(&mut reader, &mut buf, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(info, jumpgate_info());
            assert_eq!(buf, data, "every byte read stays in the buffer");
        }
    }

    #[tokio::test]
    async fn read_with_bytes_already_buffered() {
        let hello = jumpgate_hello();
        let (head, tail) = hello.split_at(10);
        let mut reader = OneByteReader {
            data: tail.to_vec(),
            pos: 0,
        };
        let mut buf = head.to_vec();
        let info = read_client_hello(&mut reader, &mut buf, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(info, jumpgate_info());
        assert_eq!(buf, hello);
    }

    #[tokio::test]
    async fn read_from_a_tokio_rustls_client() {
        let (client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(client_config(&[b"jumpgate-ssh", b"h2"]));
        let name = ServerName::try_from(SNI).unwrap().to_owned();
        // The handshake never completes: only the ClientHello is wanted.
        let client = tokio::spawn(async move { connector.connect(name, client_io).await });
        let mut buf = Vec::new();
        let info = read_client_hello(&mut server_io, &mut buf, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(info, jumpgate_info());
        drop(server_io);
        assert!(client.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn large_hello_through_a_small_pipe() {
        let hello = jumpgate_hello();
        let big = records(&padded_message(&hello, 40_000), 16_384);
        let (mut client, mut server) = tokio::io::duplex(1000);
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client
        });
        let mut buf = Vec::new();
        let info = read_client_hello(&mut server, &mut buf, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(info, jumpgate_info());
        assert_eq!(buf, big);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn never_reads_past_the_cap() {
        // The largest handshake message rustls takes, in full records: 25 bytes of record
        // headers push it just past the cap, so it must be refused without being read whole.
        let mut message = vec![0x01, 0x00, 0xff, 0xff];
        message.resize(4 + 0xffff, 0);
        let data = records(&message, 16_384);
        assert!(data.len() > MAX_CLIENT_HELLO_LEN);
        let mut reader = &data[..];
        let mut buf = Vec::new();
        let got = read_client_hello(&mut reader, &mut buf, Duration::from_secs(5)).await;
        assert!(matches!(got, Err(PeekError::TooLarge)), "{got:?}");
        assert_eq!(buf.len(), MAX_CLIENT_HELLO_LEN);
    }

    #[tokio::test]
    async fn silent_client_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let mut buf = Vec::new();
        let got = read_client_hello(&mut server, &mut buf, Duration::from_millis(50)).await;
        assert!(matches!(got, Err(PeekError::Timeout)), "{got:?}");
    }

    #[tokio::test]
    async fn client_stalling_mid_hello_times_out() {
        let hello = jumpgate_hello();
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(&hello[..hello.len() / 2]).await.unwrap();
        let mut buf = Vec::new();
        let got = read_client_hello(&mut server, &mut buf, Duration::from_millis(50)).await;
        assert!(matches!(got, Err(PeekError::Timeout)), "{got:?}");
    }

    #[tokio::test]
    async fn eof_before_or_mid_hello_is_closed() {
        let hello = jumpgate_hello();
        for sent in [&[][..], &hello[..3], &hello[..hello.len() - 1]] {
            let mut reader = OneByteReader {
                data: sent.to_vec(),
                pos: 0,
            };
            let mut buf = Vec::new();
            let got = read_client_hello(&mut reader, &mut buf, Duration::from_secs(5)).await;
            assert!(matches!(got, Err(PeekError::Closed)), "{got:?}");
        }
    }

    #[tokio::test]
    async fn plain_http_is_refused_without_waiting() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = Vec::new();
        let got = read_client_hello(&mut server, &mut buf, Duration::from_secs(5)).await;
        assert!(
            matches!(got, Err(PeekError::NotTls(LooksLike::Http))),
            "{got:?}"
        );
    }

    fn mutate(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for _ in 0..rng.random_range(1..4) {
            match rng.random_range(0..5) {
                0 if !bytes.is_empty() => {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
                1 if !bytes.is_empty() => {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                2 => {
                    let len = rng.random_range(0..=bytes.len());
                    bytes.truncate(len);
                }
                3 => {
                    let i = rng.random_range(0..=bytes.len());
                    let n = rng.random_range(1..8);
                    for _ in 0..n {
                        bytes.insert(i, rng.random());
                    }
                }
                _ if !bytes.is_empty() => {
                    let i = rng.random_range(0..bytes.len());
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        bytes
    }

    /// Bounded, deterministic stand-in for `fuzz/fuzz_targets/client_hello.rs`, so CI without
    /// nightly still throws odd input at the parser. Besides "no panic", it checks that the
    /// answer is consistent: a complete ClientHello stays complete with bytes after it, and an
    /// error stays an error.
    #[test]
    fn fuzz_peek_bounded() {
        let hello = jumpgate_hello();
        let seeds = [
            hello.clone(),
            records(handshake_message(&hello), 200),
            client_hello(&[], "192.0.2.1"),
        ];
        let mut rng = SmallRng::seed_from_u64(0x6a75_6d70_6761_7465);
        for round in 0..20_000 {
            let input = if round % 8 == 0 {
                let len = rng.random_range(0..300);
                let mut bytes = vec![0u8; len];
                rng.fill(&mut bytes[..]);
                if rng.random_bool(0.5) && bytes.len() >= 3 {
                    // A plausible record header, so the input gets past the first check.
                    bytes[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
                }
                bytes
            } else {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                mutate(&mut rng, seed)
            };
            let got = peek(&input);
            let extended = [&input[..], &[0x17, 0x03, 0x03, 0x00]].concat();
            match got {
                Ok(Some(info)) => {
                    assert!(info.alpn.iter().all(|p| !p.is_empty()));
                    assert_eq!(peek(&extended).unwrap(), Some(info));
                }
                Ok(None) => assert!(input.len() < MAX_CLIENT_HELLO_LEN),
                Err(e) => assert!(peek(&extended).is_err(), "{e} then OK for {input:?}"),
            }
        }
    }
}
