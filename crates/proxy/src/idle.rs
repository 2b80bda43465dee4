//! Deadlines for connections past their TLS handshake: the first request must start
//! within the handshake deadline, and a connection on which nothing moves for its idle
//! timeout is closed. Without them a client that completes TLS on the web route (open
//! to anyone) and then sends nothing would hold a connection slot forever.
//!
//! [`Watched`] wraps a stream and notes the time of every read or write that moved
//! bytes; [`Activity::expired`] resolves when the connection has overstayed. The caller
//! races its serving future against it and drops the connection when it fires.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When a connection was last active, shared between its stream and its watchdog.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last read or write that moved bytes.
    last_ms: AtomicU64,
    /// Whether the client has sent anything yet.
    heard: AtomicBool,
}

impl Activity {
    fn touch(&self, read: bool) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(elapsed, Ordering::Relaxed);
        if read {
            self.heard.store(true, Ordering::Relaxed);
        }
    }

    /// Resolves when the client has sent nothing within `first_byte` of the start, or
    /// when nothing moved either way for `idle`. Returns why, for the log.
    pub async fn expired(&self, first_byte: Duration, idle: Duration) -> &'static str {
        tokio::time::sleep_until(self.start + first_byte).await;
        if !self.heard.load(Ordering::Relaxed) {
            return "sent no request within the handshake deadline";
        }
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let until = last + idle;
            if Instant::now() >= until {
                return "was idle for too long";
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

/// A stream whose reads and writes are noted in an [`Activity`].
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Starts watching `inner` now.
    pub fn new(inner: S) -> (Watched<S>, Arc<Activity>) {
        let activity = Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            heard: AtomicBool::new(false),
        });
        (
            Watched {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch(true);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch(false);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_expires_at_the_first_byte_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let (_watched, activity) = Watched::new(server);
        let started = Instant::now();
        let why = activity
            .expired(Duration::from_secs(10), Duration::from_secs(60))
            .await;
        assert_eq!(why, "sent no request within the handshake deadline");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_postpones_the_idle_timeout() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut watched, activity) = Watched::new(server);
        let started = Instant::now();
        let watchdog = tokio::spawn(async move {
            activity
                .expired(Duration::from_secs(10), Duration::from_secs(60))
                .await
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 3];
        watched.read_exact(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_secs(50)).await;
        watched.write_all(b"ok").await.unwrap();
        let why = watchdog.await.unwrap();
        assert_eq!(why, "was idle for too long");
        // Last activity at 55 s, so it expires at 115 s, not at 65 s.
        assert_eq!(started.elapsed(), Duration::from_secs(115));
    }
}
