//! Throws arbitrary text at the daemon's config parser (`Config::from_yaml`, which parses
//! and validates `/etc/jumpgate.yaml` in one step).
//!
//! Besides "never panics" (nor hangs, nor blows up on YAML aliases), checks that the
//! answer is consistent: every error names the file and gives a reason, a syntax error's
//! location is inside the text, and a comment line before the document changes nothing.

#![no_main]

use jumpgate_types::Config;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = Config::from_yaml(NAME, text);
    if let Err(err) = &result {
        assert!(err.to_string().starts_with(NAME), "{err}");
        assert!(!err.reason().is_empty(), "{err:?}");
        if let Some(at) = err.location() {
            // libyaml breaks lines at `\n`, `\r\n`, a lone `\r` and YAML 1.1's NEL, LS, PS.
            let breaks = text
                .replace("\r\n", "\n")
                .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
                .count();
            // An error at the end of the stream is put on a line of its own.
            assert!(at.line <= breaks + 2, "{err:?}");
        }
        if let Some(path) = err.field_path() {
            assert!(!path.is_empty(), "{err:?}");
        }
    }
    // A byte-order mark is only allowed first.
    if !text.starts_with('\u{feff}') {
        let commented = format!("# a comment\n{text}");
        match (&result, Config::from_yaml(NAME, &commented)) {
            (Ok(config), Ok(again)) => assert_eq!(config, &again),
            (Err(_), Err(_)) => {}
            (first, again) => panic!("a leading comment changed {first:?} into {again:?}"),
        }
    }
});
