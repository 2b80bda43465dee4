//! A stream the SSH service can end from outside: russh's running session offers no way
//! to drop a connection that has not finished its key exchange (a disconnect message
//! waits for it), so the login grace timer ends the stream itself: reads return end of
//! file, the session loop ends, and the connection is closed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Ends a [`Killable`] stream.
#[derive(Debug, Default)]
pub struct KillSwitch {
    killed: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl KillSwitch {
    /// From now on the stream reads as closed, and a pending read wakes up to see it.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let waker = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A stream that reads as closed once its [`KillSwitch`] is used.
#[derive(Debug)]
pub struct Killable<S> {
    inner: S,
    switch: Arc<KillSwitch>,
}

impl<S> Killable<S> {
    pub fn new(inner: S) -> (Killable<S>, Arc<KillSwitch>) {
        let switch = Arc::new(KillSwitch::default());
        (
            Killable {
                inner,
                switch: switch.clone(),
            },
            switch,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.switch.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        *self
            .switch
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cx.waker().clone());
        // Killed between the check and storing the waker: nobody will wake us.
        if self.switch.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.switch.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_pending_read_ends_when_killed() {
        let (_client, server) = tokio::io::duplex(64);
        let (mut stream, switch) = Killable::new(server);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            stream.read(&mut buf).await.unwrap()
        });
        tokio::task::yield_now().await;
        switch.kill();
        assert_eq!(reader.await.unwrap(), 0, "reads as end of file");
    }
}
