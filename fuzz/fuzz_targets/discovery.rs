//! Throws arbitrary bytes at the reverse tunnel's discovery message, as an agent reads it
//! from a proxy (`node::tunnel`: at most `MAX_DISCOVERY_LEN` bytes, then
//! `serde_json::from_slice::<Discovery>`), and at what the agent does with it.
//!
//! Besides "never panics", checks that the answer is consistent: a message asks for at
//! least one tunnel and never more than `MAX_TUNNELS` (nor more than it names proxies,
//! unless it names none), it re-encodes to a message that reads back the same, and
//! trailing whitespace changes nothing while trailing garbage is refused.

#![no_main]

use jumpgate_api::tunnel::{Discovery, MAX_DISCOVERY_LEN, MAX_TUNNELS};
use libfuzzer_sys::fuzz_target;

fn parse(body: &[u8]) -> Option<Discovery> {
    let body = body.get(..MAX_DISCOVERY_LEN).unwrap_or(body);
    serde_json::from_slice::<Discovery>(body).ok()
}

fuzz_target!(|data: &[u8]| {
    if data.len() + 2 > MAX_DISCOVERY_LEN {
        return;
    }
    let found = parse(data);
    let mut spaced = data.to_vec();
    spaced.extend_from_slice(b" \n");
    assert_eq!(parse(&spaced), found);
    let mut garbage = data.to_vec();
    garbage.extend_from_slice(b"}x");
    assert_eq!(parse(&garbage), None);
    if let Some(discovery) = found {
        let tunnels = discovery.desired_tunnels();
        assert!((1..=MAX_TUNNELS).contains(&tunnels));
        assert!(tunnels <= discovery.proxies().len().max(1));
        let encoded = serde_json::to_vec(&discovery).expect("a discovery message encodes");
        assert_eq!(parse(&encoded), Some(discovery));
    }
});
