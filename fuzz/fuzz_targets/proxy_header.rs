//! Throws arbitrary bytes at the PROXY protocol header parser.
//!
//! Besides "never panics", checks that the answer is consistent: a complete header fits in the
//! input and stays complete when more bytes follow, and `NotAHeader` agrees with
//! `looks_like_header`.

#![no_main]

use jumpgate_proxy::proxy_protocol::{self, MAX_HEADER_LEN, ProxyHeaderError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let looks = proxy_protocol::looks_like_header(data);
    let mut extended = data.to_vec();
    extended.extend_from_slice(b"\r\n\x16\x03\x01");
    match proxy_protocol::parse(data) {
        Ok(Some((header, consumed))) => {
            assert!(consumed > 0 && consumed <= data.len() && consumed <= MAX_HEADER_LEN);
            assert!(looks);
            assert_eq!(header.source.is_some(), header.destination.is_some());
            let again = proxy_protocol::parse(&extended).ok().flatten();
            assert_eq!(again, Some((header, consumed)));
        }
        Ok(None) => assert!(data.is_empty() || (looks && data.len() < MAX_HEADER_LEN)),
        Err(ProxyHeaderError::NotAHeader) => {
            assert!(!looks);
            assert!(proxy_protocol::parse(&extended).is_err());
        }
        Err(_) => {
            assert!(looks);
            assert!(proxy_protocol::parse(&extended).is_err());
        }
    }
});
