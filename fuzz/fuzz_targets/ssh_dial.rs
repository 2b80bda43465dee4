//! Throws arbitrary bytes at the dial-request line a user's `jsh` sends the proxy before
//! SSH starts (`ssh_route::read_line::<DialRequest>`, what `proxy::ssh` calls).
//!
//! Besides "never panics", checks that the answer is consistent: the reader consumes the
//! line and not one byte after its newline (those are the SSH bytes that follow), the
//! result does not change when more bytes follow the newline, a request re-encodes to a
//! line that reads back the same, and the kind of error matches where the newline is.

#![no_main]

use jumpgate_api::ssh_route::{DialRequest, LineError, MAX_LINE, read_line, to_line};
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs `read_line` on a byte slice, which is always ready, so one poll finishes it.
/// Returns the result and the bytes left unread.
fn read(data: &[u8]) -> (Result<DialRequest, LineError>, &[u8]) {
    let mut reader = data;
    let result = {
        let mut future = pin!(read_line::<DialRequest, _>(&mut reader));
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => result,
            Poll::Pending => panic!("read_line waited on a byte slice"),
        }
    };
    (result, reader)
}

/// The error's kind, for comparing two results (the messages carry byte offsets).
fn kind(result: &Result<DialRequest, LineError>) -> Result<&DialRequest, &'static str> {
    match result {
        Ok(request) => Ok(request),
        Err(LineError::Closed) => Err("closed"),
        Err(LineError::TooLong) => Err("too long"),
        Err(LineError::Malformed(_)) => Err("malformed"),
        Err(LineError::Io(_)) => Err("io"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (result, rest) = read(data);
    let newline = data.iter().position(|&b| b == b'\n');
    match (&result, newline) {
        (Err(LineError::Io(err)), _) => panic!("I/O error from a byte slice: {err}"),
        (Err(LineError::TooLong), _) => {
            assert!(newline.is_none_or(|at| at > MAX_LINE));
            assert!(data.len() > MAX_LINE);
        }
        (Err(LineError::Closed), None) => assert!(data.len() <= MAX_LINE && rest.is_empty()),
        (Err(LineError::Closed), Some(_)) => panic!("closed although a newline came"),
        (Ok(_) | Err(LineError::Malformed(_)), None) => panic!("a line without its newline"),
        (Ok(request), Some(at)) => {
            assert!(at <= MAX_LINE);
            assert_eq!(rest, data.get(at + 1..).unwrap_or_default());
            let line = to_line(request);
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(
                !line
                    .get(..line.len() - 1)
                    .unwrap_or_default()
                    .contains(&b'\n')
            );
            let (again, left) = read(&line);
            assert_eq!(again.ok().as_ref(), Some(request));
            assert!(left.is_empty());
        }
        (Err(LineError::Malformed(_)), Some(at)) => {
            assert!(at <= MAX_LINE);
            assert_eq!(rest, data.get(at + 1..).unwrap_or_default());
        }
    }
    if newline.is_some() {
        let mut extended = data.to_vec();
        extended.extend_from_slice(b"SSH-2.0-OpenSSH_9.6\r\n");
        let (again, _) = read(&extended);
        assert_eq!(kind(&again), kind(&result));
    }
});
