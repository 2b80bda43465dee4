//! Throws arbitrary text at the resource envelope every `jctl create` document goes
//! through: `peek_kind` (how auth picks the parser for a document) and
//! `Resource::from_yaml` / `from_json` (kind, version, metadata: name, labels, expiry),
//! with a spec that takes any value so the envelope itself is what is fuzzed. Roles have
//! their own target (`role`).
//!
//! Besides "never panics", checks that the answer is consistent: a document that parses
//! has the kind `peek_kind` saw, and writes back to YAML and to JSON that read back the
//! same.

#![no_main]

use jumpgate_types::resource::ResourceVersion;
use jumpgate_types::{Resource, ResourceSpec, peek_kind};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

/// Any spec, under the kind of auth's user documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AnySpec(serde_json::Value);

impl ResourceSpec for AnySpec {
    const KIND: &'static str = "user";
    const VERSION: ResourceVersion = ResourceVersion::V2;
}

type Document = Resource<AnySpec>;

fn exercise(document: &Document) {
    assert!(!document.name().is_empty());
    let _ = document
        .metadata
        .is_expired(std::time::SystemTime::UNIX_EPOCH);
    let yaml = document.to_yaml().expect("a parsed document writes YAML");
    let back = Document::from_yaml("again.yaml", &yaml);
    assert_eq!(back.as_ref().ok(), Some(document), "{yaml}\n{back:?}");
    let json = document.to_json().expect("a parsed document writes JSON");
    let back = Document::from_json("again.json", &json);
    assert_eq!(back.as_ref().ok(), Some(document), "{json}\n{back:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(kind) = peek_kind("fuzz.yaml", text) {
        assert!(!kind.trim().is_empty());
    }
    if let Ok(document) = Document::from_yaml("fuzz.yaml", text) {
        // The same YAML parser reads both, so they must agree (JSON goes to serde_json).
        assert_eq!(peek_kind("fuzz.yaml", text).ok().as_deref(), Some("user"));
        exercise(&document);
    }
    if let Ok(document) = Document::from_json("fuzz.json", text) {
        exercise(&document);
    }
});
