//! Throws arbitrary bytes at the asciicast v2 recording parser (recordings are uploaded by
//! nodes and read back by users, so auth treats them as untrusted).
//!
//! Besides "never panics", checks that the answers are consistent: tolerant mode accepts
//! everything strict mode accepts (with the same result) and only differs on a cut-off last
//! line; a parsed recording re-encodes to a stable form; the exports never fail.

#![no_main]

use jumpgate_audit::recording::{ParseOptions, parse_cast, to_json, to_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = ParseOptions::strict().with_max_len(1 << 20);
    let strict = parse_cast(data, &options);
    let tolerant = parse_cast(
        data,
        &ParseOptions {
            tolerate_truncated_tail: true,
            ..options
        },
    );
    match (strict, tolerant) {
        (Ok(strict), Ok(tolerant)) => {
            assert_eq!(strict, tolerant);
            assert!(strict.truncated.is_none());
            let once = strict.to_cast();
            let again =
                parse_cast(&once, &ParseOptions::strict()).expect("re-encoded recording parses");
            assert_eq!(again.to_cast(), once);
            let _ = (to_text(&strict), to_json(&strict));
        }
        (Ok(_), Err(e)) => panic!("strict mode accepted what tolerant mode refused: {e}"),
        (Err(_), Ok(tolerant)) => assert!(tolerant.truncated.is_some()),
        (Err(_), Err(_)) => {}
    }
});
