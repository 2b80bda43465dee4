//! A stream that first replays bytes already read from it.
//!
//! Routing reads the PROXY header and the ClientHello before anyone owns the TLS session; those
//! bytes must reach the TLS acceptor (or the passthrough copy) as if never read. Writes go
//! straight through: nothing was ever taken from the write side.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads `prefix` first, then `inner`; writes go to `inner`.
#[derive(Debug)]
pub struct PrefixedStream<S> {
    prefix: Vec<u8>,
    /// How much of `prefix` has been read; never more than its length.
    pos: usize,
    inner: S,
}

impl<S> PrefixedStream<S> {
    /// Wraps `inner` so that reads return `prefix` before anything from `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// Gives back the part of the prefix not read yet, and the inner stream.
    pub fn into_parts(self) -> (Vec<u8>, S) {
        let mut prefix = self.prefix;
        prefix.drain(..self.pos.min(prefix.len()));
        (prefix, self.inner)
    }

    /// The inner stream, e.g. for its peer address.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream, mutably; reading from it directly skips the unread prefix.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefixedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let rest = this.prefix.get(this.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        this.pos = this.pos.saturating_add(n);
        if this.pos >= this.prefix.len() {
            // Free the replayed bytes; the connection may live for hours.
            this.prefix = Vec::new();
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefixedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_prefix_then_inner() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut stream = PrefixedStream::new(b"hello".to_vec(), near);
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn small_reads_do_not_lose_or_mix_bytes() {
        let inner: &[u8] = b"DEF";
        let mut stream = PrefixedStream::new(b"ABC".to_vec(), inner);
        let mut out = Vec::new();
        let mut one = [0u8; 1];
        while stream.read(&mut one).await.unwrap() == 1 {
            out.push(one[0]);
        }
        assert_eq!(out, b"ABCDEF");
    }

    #[tokio::test]
    async fn a_read_never_mixes_prefix_and_inner() {
        // Returning the prefix alone keeps the inner stream untouched until it is needed.
        let inner: &[u8] = b"DEF";
        let mut stream = PrefixedStream::new(b"ABC".to_vec(), inner);
        let mut buf = [0u8; 16];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"ABC");
        assert_eq!(stream.read(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"DEF");
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn empty_prefix_reads_inner() {
        let inner: &[u8] = b"xyz";
        let mut stream = PrefixedStream::new(Vec::new(), inner);
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"xyz");
    }

    #[tokio::test]
    async fn into_parts_returns_the_unread_prefix() {
        let inner: &[u8] = b"rest";
        let mut stream = PrefixedStream::new(b"abcdef".to_vec(), inner);
        let mut two = [0u8; 2];
        stream.read_exact(&mut two).await.unwrap();
        let (prefix, inner) = stream.into_parts();
        assert_eq!(prefix, b"cdef");
        assert_eq!(inner, b"rest");

        let stream = PrefixedStream::new(b"ab".to_vec(), &b""[..]);
        assert_eq!(stream.into_parts().0, b"ab");
        let mut stream = PrefixedStream::new(b"ab".to_vec(), &b"c"[..]);
        stream.read_exact(&mut two).await.unwrap();
        assert_eq!(stream.into_parts(), (Vec::new(), &b"c"[..]));
    }

    #[tokio::test]
    async fn writes_go_to_inner() {
        let (mut far, near) = tokio::io::duplex(64);
        let mut stream = PrefixedStream::new(b"unread".to_vec(), near);
        stream.write_all(b"ping").await.unwrap();
        stream.flush().await.unwrap();
        let mut got = [0u8; 4];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        stream.shutdown().await.unwrap();
        assert_eq!(far.read(&mut got).await.unwrap(), 0);
    }

    /// Records how it was written to.
    #[derive(Default)]
    struct Recorder {
        written: Vec<u8>,
        vectored_calls: usize,
        vectored: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.get_mut().written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            this.vectored_calls += 1;
            let mut n = 0;
            for b in bufs {
                this.written.extend_from_slice(b);
                n += b.len();
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn vectored_writes_are_forwarded() {
        for vectored in [true, false] {
            let recorder = Recorder {
                vectored,
                ..Recorder::default()
            };
            let mut stream = PrefixedStream::new(Vec::new(), recorder);
            assert_eq!(stream.is_write_vectored(), vectored);
            let bufs = [IoSlice::new(b"ab"), IoSlice::new(b"cd")];
            let n = stream.write_vectored(&bufs).await.unwrap();
            assert_eq!(n, 4);
            let (_, recorder) = stream.into_parts();
            assert_eq!(recorder.written, b"abcd");
            assert_eq!(recorder.vectored_calls, 1);
        }
    }

    /// What the proxy does with it: peek the ClientHello, then hand every byte read so far to
    /// a real TLS acceptor, which must complete the handshake as if nothing had been read.
    #[tokio::test]
    async fn tls_handshake_completes_after_peeked_client_hello() {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let name = "jumpgate.cluster.local";
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        server_config.alpn_protocols = vec![b"jumpgate-ssh".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let mut client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_config.alpn_protocols = vec![b"jumpgate-ssh".to_vec(), b"h2".to_vec()];

        let (client_io, mut server_io) = tokio::io::duplex(16 * 1024);
        let client = tokio::spawn(async move {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
            let server_name = rustls::pki_types::ServerName::try_from(name).unwrap();
            let mut tls = connector.connect(server_name, client_io).await.unwrap();
            tls.write_all(b"hello over tls").await.unwrap();
            // Stay until the server answers: it still writes session tickets after the
            // client considers the handshake done.
            let mut ack = [0u8; 3];
            tls.read_exact(&mut ack).await.unwrap();
            assert_eq!(&ack, b"ack");
        });

        let mut buf = Vec::new();
        let timeout = Duration::from_secs(5);
        let info = crate::client_hello::read_client_hello(&mut server_io, &mut buf, timeout)
            .await
            .unwrap();
        assert_eq!(info.alpn[0], b"jumpgate-ssh");

        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let mut tls = acceptor
            .accept(PrefixedStream::new(buf, server_io))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"jumpgate-ssh"[..]));
        let mut got = [0u8; 14];
        tls.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello over tls");
        tls.write_all(b"ack").await.unwrap();
        tls.flush().await.unwrap();
        client.await.unwrap();
    }
}
