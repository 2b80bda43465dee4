//! Throws arbitrary bytes at the ClientHello peek.
//!
//! Besides "never panics", checks that the answer is consistent: a complete ClientHello stays
//! complete when more bytes follow, an error stays an error, and "need more" only below the cap.

#![no_main]

use jumpgate_proxy::client_hello::{self, MAX_CLIENT_HELLO_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut extended = data.to_vec();
    extended.extend_from_slice(&[0x17, 0x03, 0x03, 0x00]);
    match client_hello::peek(data) {
        Ok(Some(info)) => {
            assert_eq!(client_hello::peek(&extended).ok().flatten(), Some(info));
        }
        Ok(None) => assert!(data.len() < MAX_CLIENT_HELLO_LEN),
        Err(_) => assert!(client_hello::peek(&extended).is_err()),
    }
});
