//! The nodes a user may reach: the auth API's node records (through the proxy's auth
//! passthrough, with the user's TLS identity; auth filters them by the user's roles),
//! selected by labels here.

use crate::error::ClientError;
use crate::profile::Profile;
use jumpgate_api::proto::GetResourcesRequest;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// One node, as `jsh ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub hostname: String,
    pub uuid: String,
    pub labels: BTreeMap<String, String>,
    /// The proxies holding its tunnels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
}

impl NodeInfo {
    /// From a `kind: node` JSON document.
    pub fn from_document(document: &str) -> Result<NodeInfo, ClientError> {
        let bad = |reason: String| ClientError::BadResponse {
            what: "node record",
            reason,
        };
        let value: Value = serde_json::from_str(document).map_err(|err| bad(err.to_string()))?;
        let text = |pointer: &str| {
            value
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let uuid = text("/metadata/name");
        if uuid.is_empty() {
            return Err(bad("no metadata.name".to_string()));
        }
        let labels = value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .map(|(key, value)| {
                        let value = value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_string);
                        (key.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tunnels = value
            .pointer("/spec/tunnels")
            .and_then(Value::as_array)
            .map(|tunnels| {
                tunnels
                    .iter()
                    .filter_map(|tunnel| tunnel.get("proxy").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut hostname = text("/spec/hostname");
        if hostname.is_empty() {
            hostname.clone_from(&uuid);
        }
        Ok(NodeInfo {
            hostname,
            uuid,
            labels,
            tunnels,
            version: text("/spec/version"),
        })
    }

    /// `key=value,key=value`, sorted by key.
    pub fn labels_text(&self) -> String {
        self.labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A `KEY=VALUE` label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    pub key: String,
    pub value: String,
}

impl LabelSelector {
    /// `KEY=VALUE`; `None` if `text` has no `=` (it is then a node name).
    pub fn parse(text: &str) -> Option<LabelSelector> {
        let (key, value) = text.split_once('=')?;
        Some(LabelSelector {
            key: key.trim().to_string(),
            value: value.trim().to_string(),
        })
    }

    /// Parses every argument; the error names the first that is not `KEY=VALUE`.
    pub fn parse_all(args: &[String]) -> Result<Vec<LabelSelector>, ClientError> {
        args.iter()
            .map(|arg| {
                LabelSelector::parse(arg)
                    .filter(|selector| !selector.key.is_empty())
                    .ok_or_else(|| ClientError::InvalidArgument {
                        what: "label selector",
                        value: arg.clone(),
                        reason: "expected KEY=VALUE, e.g. env=prod".to_string(),
                    })
            })
            .collect()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        node.labels.get(&self.key) == Some(&self.value)
    }
}

/// The nodes matching every selector (all nodes for none).
pub fn select<'a>(
    nodes: &'a [NodeInfo],
    selectors: &[LabelSelector],
) -> impl Iterator<Item = &'a NodeInfo> {
    nodes
        .iter()
        .filter(move |node| selectors.iter().all(|selector| selector.matches(node)))
}

/// The nodes the user may see, sorted by host name.
pub async fn list_nodes(profile: &Profile) -> Result<Vec<NodeInfo>, ClientError> {
    profile.check_valid(SystemTime::now())?;
    let tls = profile.tls_credentials()?.client_config()?;
    let mut auth = jumpgate_api::connect(&profile.meta.proxy, tls).await?;
    let documents = auth
        .get_resources(GetResourcesRequest {
            kind: "node".to_string(),
            name: String::new(),
        })
        .await
        .map_err(|status| ClientError::Auth {
            code: format!("{:?}", status.code()),
            message: status.message().to_string(),
        })?
        .into_inner()
        .documents;
    let mut nodes = documents
        .iter()
        .map(|document| NodeInfo::from_document(document))
        .collect::<Result<Vec<_>, _>>()?;
    nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.uuid.cmp(&b.uuid)));
    Ok(nodes)
}

/// The `jsh ls` table: Node, UUID, Labels.
pub fn nodes_table<'a>(nodes: impl IntoIterator<Item = &'a NodeInfo>) -> String {
    let rows: Vec<[String; 3]> = nodes
        .into_iter()
        .map(|node| [node.hostname.clone(), node.uuid.clone(), node.labels_text()])
        .collect();
    let header = ["Node".to_string(), "UUID".to_string(), "Labels".to_string()];
    let width = |column: usize| {
        std::iter::once(&header)
            .chain(rows.iter())
            .filter_map(|row| row.get(column))
            .map(|cell| cell.chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = String::new();
    let line = |row: &[String; 3], out: &mut String| {
        let [a, b, c] = row;
        out.push_str(format!("{a:<w0$}  {b:<w1$}  {c}").trim_end());
        out.push('\n');
    };
    line(&header, &mut out);
    line(&["-".repeat(w0), "-".repeat(w1), "-".repeat(6)], &mut out);
    for row in &rows {
        line(row, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"kind":"node","version":"v2","metadata":{"name":"5b0c","labels":{"env":"prod","role":"web"}},"spec":{"hostname":"web-1","tunnels":[{"proxy":"p1","since_unix":1}],"version":"0.1.0"}}"#;

    #[test]
    fn node_documents_parse() {
        let node = NodeInfo::from_document(DOC).unwrap();
        assert_eq!(node.hostname, "web-1");
        assert_eq!(node.uuid, "5b0c");
        assert_eq!(node.labels_text(), "env=prod,role=web");
        assert_eq!(node.tunnels, vec!["p1".to_string()]);
        assert!(NodeInfo::from_document("{}").is_err());
        assert!(NodeInfo::from_document("nope").is_err());
    }

    #[test]
    fn selectors_filter_nodes() {
        let web = NodeInfo::from_document(DOC).unwrap();
        let mut db = web.clone();
        db.hostname = "db-1".to_string();
        db.labels.insert("role".to_string(), "db".to_string());
        let nodes = vec![web, db];
        let selectors = LabelSelector::parse_all(&["role=db".to_string()]).unwrap();
        let picked: Vec<_> = select(&nodes, &selectors)
            .map(|n| n.hostname.as_str())
            .collect();
        assert_eq!(picked, vec!["db-1"]);
        assert_eq!(select(&nodes, &[]).count(), 2);
        assert!(LabelSelector::parse_all(&["web-1".to_string()]).is_err());
        assert!(LabelSelector::parse_all(&["=x".to_string()]).is_err());
        let table = nodes_table(&nodes);
        assert!(table.starts_with("Node"), "{table}");
        assert!(table.contains("db-1   5b0c  env=prod,role=db"), "{table}");
    }
}
