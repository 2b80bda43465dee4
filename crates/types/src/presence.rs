//! Presence records: the documents hosts send with every heartbeat so the cluster knows
//! who is up and how to reach them (`jctl nodes ls`, `jsh ls`, the proxy's routing, the
//! agents' discovery of proxies). Auth keeps each under `/presence/{kind}/{name}` with a
//! TTL of a few beats, and hands it to readers as it was written.
//!
//! Each kind has one type here, which its writer serialises and every reader parses, in
//! Teleport's document shape:
//!
//! ```
//! use jumpgate_types::NodePresence;
//!
//! let node = NodePresence::from_json("auth:node", r#"{
//!     "kind": "node", "version": "v2",
//!     "metadata": {"name": "5b0c", "labels": {"env": "prod"}},
//!     "spec": {"hostname": "web-1", "tunnels": [{"proxy": "p1", "since_unix": 1}],
//!              "version": "0.1.0"}
//! }"#)?;
//! assert_eq!(node.uuid, "5b0c");
//! assert_eq!(node.tunnel_proxies().collect::<Vec<_>>(), ["p1"]);
//! assert_eq!(NodePresence::from_json("auth:node", &node.to_json())?, node);
//! # Ok::<(), jumpgate_types::ResourceError>(())
//! ```
//!
//! Reading is tolerant, unlike reading the resources admins write ([`crate::resource`]): a
//! record is written by a program, maybe a newer one, and auth may add fields. So unknown
//! fields are ignored, and a known field of another type than expected reads as empty (a
//! label value that is not a string reads as `""`, a tunnel without a proxy is skipped):
//! one odd record must not hide the others from `jctl nodes ls`. What makes a document a
//! record is required: a name (the host's UUID) and, when it says one, the right kind.

use crate::resource::{ResourceError, json_syntax};
use crate::role::kinds;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The `version` presence records are written with.
const RECORD_VERSION: &str = "v2";

/// A node's presence record (`kind: node`), written by its agent's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePresence {
    /// `metadata.name`: the host's UUID, which auth gave it when it joined. Never empty
    /// in a record that was read.
    pub uuid: String,
    /// `metadata.labels`: the static labels and those computed by commands, which roles
    /// select nodes by.
    pub labels: BTreeMap<String, String>,
    /// `spec.hostname`: the host's name; may be empty.
    pub hostname: String,
    /// `spec.tunnels`: the proxies holding the node's reverse tunnels.
    pub tunnels: Vec<NodeTunnel>,
    /// `spec.version`: the agent's Jumpgate version; empty when not said.
    pub version: String,
}

/// One of a node's reverse tunnels, as its presence record lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeTunnel {
    /// The identity name (host UUID) of the proxy at the other end.
    pub proxy: String,
    /// Since when it is up, in Unix seconds (0 when not said).
    pub since_unix: u64,
}

impl NodePresence {
    /// Reads a `node` record (JSON, as auth sends it). `source_name` names it in errors.
    pub fn from_json(source_name: &str, text: &str) -> Result<NodePresence, ResourceError> {
        let value: Value =
            serde_json::from_str(text).map_err(|err| json_syntax(source_name, &err))?;
        NodePresence::from_value(source_name, &value)
    }

    /// Reads a `node` record already parsed as JSON.
    pub fn from_value(source_name: &str, value: &Value) -> Result<NodePresence, ResourceError> {
        let uuid = record_name(source_name, value, kinds::NODE, "nodes")?;
        let tunnels = value
            .pointer("/spec/tunnels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|tunnel| {
                Some(NodeTunnel {
                    proxy: tunnel.get("proxy")?.as_str()?.to_owned(),
                    since_unix: tunnel
                        .get("since_unix")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                })
            })
            .collect();
        Ok(NodePresence {
            uuid,
            labels: labels(value),
            hostname: text_at(value, "/spec/hostname"),
            tunnels,
            version: text_at(value, "/spec/version"),
        })
    }

    /// The record as JSON, the document [`NodePresence::from_json`] reads.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Spec<'a> {
            hostname: &'a str,
            tunnels: &'a [NodeTunnel],
            version: &'a str,
        }
        to_json(
            kinds::NODE,
            Metadata {
                name: &self.uuid,
                labels: Some(&self.labels),
            },
            Spec {
                hostname: &self.hostname,
                tunnels: &self.tunnels,
                version: &self.version,
            },
        )
    }

    /// The identity names of the proxies holding the node's tunnels, in the record's order.
    pub fn tunnel_proxies(&self) -> impl Iterator<Item = &str> {
        self.tunnels.iter().map(|tunnel| tunnel.proxy.as_str())
    }
}

/// A proxy's presence record (`kind: proxy`), written by the proxy service's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPresence {
    /// `metadata.name`: the proxy's host UUID (its identity name, which agents' tunnels
    /// and nodes' records name). Never empty in a record that was read.
    pub uuid: String,
    /// `spec.hostname`: the host's name; may be empty.
    pub hostname: String,
    /// `spec.addr`: the address its listener is bound to (`host:port`).
    pub addr: String,
    /// `spec.public_addr`: the addresses clients are told (`proxy_service.public_addr`),
    /// `host:port` each. Auth reserves their host names for proxies.
    pub public_addr: Vec<String>,
    /// `spec.peer_addr`: where the other proxies reach this one
    /// (`proxy_service.peer_public_addr`), if it says.
    pub peer_addr: Option<String>,
    /// `spec.version`: the proxy's Jumpgate version; empty when not said.
    pub version: String,
}

impl ProxyPresence {
    /// Reads a `proxy` record (JSON, as auth sends it). `source_name` names it in errors.
    pub fn from_json(source_name: &str, text: &str) -> Result<ProxyPresence, ResourceError> {
        let value: Value =
            serde_json::from_str(text).map_err(|err| json_syntax(source_name, &err))?;
        ProxyPresence::from_value(source_name, &value)
    }

    /// Reads a `proxy` record already parsed as JSON.
    pub fn from_value(source_name: &str, value: &Value) -> Result<ProxyPresence, ResourceError> {
        let uuid = record_name(source_name, value, kinds::PROXY, "proxies")?;
        let public_addr = value
            .pointer("/spec/public_addr")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        Ok(ProxyPresence {
            uuid,
            hostname: text_at(value, "/spec/hostname"),
            addr: text_at(value, "/spec/addr"),
            public_addr,
            peer_addr: value
                .pointer("/spec/peer_addr")
                .and_then(Value::as_str)
                .map(str::to_owned),
            version: text_at(value, "/spec/version"),
        })
    }

    /// The record as JSON, the document [`ProxyPresence::from_json`] reads.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Spec<'a> {
            hostname: &'a str,
            addr: &'a str,
            public_addr: &'a [String],
            /// Written as `null` when there is none, as proxies always have.
            peer_addr: Option<&'a str>,
            version: &'a str,
        }
        to_json(
            kinds::PROXY,
            Metadata {
                name: &self.uuid,
                labels: None,
            },
            Spec {
                hostname: &self.hostname,
                addr: &self.addr,
                public_addr: &self.public_addr,
                peer_addr: self.peer_addr.as_deref(),
                version: &self.version,
            },
        )
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<&'a BTreeMap<String, String>>,
}

fn to_json<S: Serialize>(kind: &'static str, metadata: Metadata<'_>, spec: S) -> String {
    #[derive(Serialize)]
    struct Document<'a, S> {
        kind: &'static str,
        version: &'static str,
        metadata: Metadata<'a>,
        spec: S,
    }
    // Strings, string maps and integers only: serialising cannot fail.
    serde_json::to_string(&Document {
        kind,
        version: RECORD_VERSION,
        metadata,
        spec,
    })
    .unwrap_or_default()
}

/// Checks what makes `value` a record of `kind` and returns its name. The kind may be
/// absent, and is compared as auth compares it when it takes a heartbeat (any case, the
/// plural too), since auth stores the document as it was sent.
fn record_name(
    source_name: &str,
    value: &Value,
    kind: &str,
    plural: &str,
) -> Result<String, ResourceError> {
    let field = |path: &str, reason: String| ResourceError::Field {
        source_name: source_name.to_owned(),
        path: path.to_owned(),
        reason,
    };
    if !value.is_object() {
        return Err(ResourceError::Document {
            source_name: source_name.to_owned(),
            reason: format!("expected a {kind} record (a JSON object with metadata and spec)"),
        });
    }
    match value.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(found))
            if found.eq_ignore_ascii_case(kind) || found.eq_ignore_ascii_case(plural) => {}
        Some(found) => {
            return Err(field("kind", format!("expected `{kind}`, got {found}")));
        }
    }
    match value.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(field(
            "metadata.name",
            format!("is required: the {kind}'s host UUID"),
        )),
    }
}

/// `metadata.labels`; a value that is not a string reads as "".
fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// The string at `pointer`, or "" when there is none.
fn text_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use serde_json::json;

    fn node() -> NodePresence {
        NodePresence {
            uuid: "5b0c".to_owned(),
            labels: BTreeMap::from([
                ("env".to_owned(), "prod".to_owned()),
                ("arch".to_owned(), "x86_64".to_owned()),
            ]),
            hostname: "web-1".to_owned(),
            tunnels: vec![
                NodeTunnel {
                    proxy: "p1".to_owned(),
                    since_unix: 1_700_000_000,
                },
                NodeTunnel {
                    proxy: "p2".to_owned(),
                    since_unix: 1_700_000_005,
                },
            ],
            version: "0.1.0".to_owned(),
        }
    }

    fn proxy() -> ProxyPresence {
        ProxyPresence {
            uuid: "9f1e".to_owned(),
            hostname: "proxy-1".to_owned(),
            addr: "0.0.0.0:3080".to_owned(),
            public_addr: vec!["jumpgate.example.com:443".to_owned()],
            peer_addr: Some("proxy-1.example.com:3021".to_owned()),
            version: "0.1.0".to_owned(),
        }
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_node_record_is_written_as_heartbeats_always_wrote_it_and_reads_back() {
        let node = node();
        assert_eq!(
            parsed(&node.to_json()),
            json!({
                "kind": "node",
                "version": "v2",
                "metadata": {"name": "5b0c", "labels": {"env": "prod", "arch": "x86_64"}},
                "spec": {
                    "hostname": "web-1",
                    "tunnels": [
                        {"proxy": "p1", "since_unix": 1_700_000_000},
                        {"proxy": "p2", "since_unix": 1_700_000_005},
                    ],
                    "version": "0.1.0",
                },
            })
        );
        assert_eq!(NodePresence::from_json("t", &node.to_json()).unwrap(), node);
        assert_eq!(node.tunnel_proxies().collect::<Vec<_>>(), ["p1", "p2"]);

        // A node without labels or tunnels still writes both, empty.
        let bare = NodePresence {
            labels: BTreeMap::new(),
            tunnels: Vec::new(),
            ..node
        };
        let written = parsed(&bare.to_json());
        assert_eq!(written["metadata"]["labels"], json!({}));
        assert_eq!(written["spec"]["tunnels"], json!([]));
        assert_eq!(NodePresence::from_json("t", &bare.to_json()).unwrap(), bare);
    }

    #[test]
    fn a_node_record_is_read_tolerantly() {
        // Fields auth or a newer agent may add are ignored, everywhere.
        let node = NodePresence::from_json(
            "t",
            r#"{"kind":"node","version":"v3","status":{"x":1},
                "metadata":{"name":"5b0c","revision":"r1","labels":{"env":"dev"}},
                "spec":{"hostname":"web-1","new":[1],"version":"9.9.9",
                        "tunnels":[{"proxy":"p1","since_unix":3,"rtt_ms":4}]}}"#,
        )
        .unwrap();
        assert_eq!(node.uuid, "5b0c");
        assert_eq!(node.hostname, "web-1");
        assert_eq!(node.labels.get("env").map(String::as_str), Some("dev"));
        assert_eq!(
            node.tunnels,
            [NodeTunnel {
                proxy: "p1".to_owned(),
                since_unix: 3
            }]
        );
        assert_eq!(node.version, "9.9.9");

        // Known fields of another type read as empty; tunnels without a proxy are skipped.
        let odd = NodePresence::from_value(
            "t",
            &json!({
                "metadata": {"name": "9f", "labels": {"n": 1, "ok": "yes", "no": null}},
                "spec": {
                    "hostname": 7,
                    "tunnels": [{"proxy": "p1"}, {"other": "x"}, {"proxy": 5}, "p9"],
                    "version": false,
                },
            }),
        )
        .unwrap();
        assert_eq!(odd.uuid, "9f");
        assert_eq!(
            odd.labels,
            BTreeMap::from([
                ("n".to_owned(), String::new()),
                ("no".to_owned(), String::new()),
                ("ok".to_owned(), "yes".to_owned()),
            ])
        );
        assert_eq!(odd.hostname, "");
        assert_eq!(odd.tunnel_proxies().collect::<Vec<_>>(), ["p1"]);
        assert_eq!(odd.tunnels[0].since_unix, 0);
        assert_eq!(odd.version, "");

        // Only the name is needed; the kind may be absent, or spelled as auth takes it.
        let lonely = NodePresence::from_json("t", r#"{"metadata":{"name":"9f"}}"#).unwrap();
        assert_eq!(lonely.hostname, "");
        assert!(lonely.labels.is_empty() && lonely.tunnels.is_empty());
        for kind in ["Node", "nodes", "NODES"] {
            let text = format!(r#"{{"kind":"{kind}","metadata":{{"name":"9f"}},"spec":null}}"#);
            assert_eq!(NodePresence::from_json("t", &text).unwrap(), lonely);
        }
    }

    #[test]
    fn a_document_that_is_not_a_node_record_is_refused_with_the_reason() {
        let refused = |text: &str| NodePresence::from_json("auth:node", text).unwrap_err();
        for text in [
            "{}",
            r#"{"kind":"node","metadata":{}}"#,
            r#"{"kind":"node","metadata":{"name":""},"spec":{"hostname":"web-1"}}"#,
            r#"{"kind":"node","metadata":{"name":7}}"#,
            r#"{"kind":"node","metadata":"5b0c"}"#,
        ] {
            let err = refused(text);
            assert_eq!(err.field_path(), Some("metadata.name"), "{text}: {err}");
            assert_eq!(
                err.to_string(),
                "auth:node: metadata.name: is required: the node's host UUID"
            );
        }
        let err = refused(r#"{"kind":"proxy","metadata":{"name":"5b0c"}}"#);
        assert_eq!(err.field_path(), Some("kind"));
        assert_eq!(
            err.to_string(),
            r#"auth:node: kind: expected `node`, got "proxy""#
        );
        assert_eq!(
            refused(r#"{"kind":1,"metadata":{"name":"5b0c"}}"#).field_path(),
            Some("kind")
        );
        let err = refused("nope");
        assert!(matches!(err, ResourceError::Syntax { .. }), "{err}");
        assert!(
            err.to_string().starts_with("auth:node:1:2: syntax error"),
            "{err}"
        );
        assert!(matches!(refused("[]"), ResourceError::Document { .. }));
        assert!(matches!(
            refused("\"5b0c\""),
            ResourceError::Document { .. }
        ));
    }

    #[test]
    fn a_proxy_record_is_written_as_proxies_always_wrote_it_and_reads_back() {
        let proxy = proxy();
        assert_eq!(
            parsed(&proxy.to_json()),
            json!({
                "kind": "proxy",
                "version": "v2",
                "metadata": {"name": "9f1e"},
                "spec": {
                    "hostname": "proxy-1",
                    "addr": "0.0.0.0:3080",
                    "public_addr": ["jumpgate.example.com:443"],
                    "peer_addr": "proxy-1.example.com:3021",
                    "version": "0.1.0",
                },
            })
        );
        assert_eq!(
            ProxyPresence::from_json("t", &proxy.to_json()).unwrap(),
            proxy
        );

        // Without a peer address, `null` is written, and read back as none.
        let alone = ProxyPresence {
            peer_addr: None,
            public_addr: Vec::new(),
            ..proxy
        };
        let written = parsed(&alone.to_json());
        assert_eq!(written["spec"]["peer_addr"], Value::Null);
        assert_eq!(written["spec"]["public_addr"], json!([]));
        assert_eq!(
            ProxyPresence::from_json("t", &alone.to_json()).unwrap(),
            alone
        );
    }

    #[test]
    fn a_proxy_record_is_read_tolerantly_and_needs_a_name() {
        let odd = ProxyPresence::from_value(
            "t",
            &json!({
                "kind": "proxies",
                "metadata": {"name": "9f1e", "labels": {"a": "b"}},
                "spec": {"public_addr": ["a.example.com:443", 443, null], "peer_addr": 1, "x": 2},
                "status": {},
            }),
        )
        .unwrap();
        assert_eq!(odd.uuid, "9f1e");
        assert_eq!(odd.public_addr, ["a.example.com:443"]);
        assert_eq!(odd.peer_addr, None);
        assert_eq!((odd.hostname.as_str(), odd.addr.as_str()), ("", ""));

        let err =
            ProxyPresence::from_json("auth:proxy", r#"{"kind":"proxy","spec":{}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth:proxy: metadata.name: is required: the proxy's host UUID"
        );
        let err = ProxyPresence::from_json("auth:proxy", &node().to_json()).unwrap_err();
        assert_eq!(err.field_path(), Some("kind"));
    }
}
