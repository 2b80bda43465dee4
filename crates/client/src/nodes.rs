//! The nodes a user may reach: the auth API's node records (through the proxy's auth
//! passthrough, with the user's TLS identity; auth filters them by the user's roles),
//! selected by labels here.

use crate::error::ClientError;
use crate::profile::Profile;
use jumpgate_api::proto::GetResourcesRequest;
use jumpgate_types::NodePresence;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// One node, as `jsh ls` shows it (and prints it with `--format json`): the parts of its
/// [`NodePresence`] a user sees, named by its host name, or its UUID when it has none.
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
    /// From a `kind: node` JSON document (a [`NodePresence`]).
    pub fn from_document(document: &str) -> Result<NodeInfo, ClientError> {
        NodePresence::from_json("node record", document)
            .map(NodeInfo::from)
            .map_err(|err| ClientError::BadResponse {
                what: "node record",
                reason: match err.field_path() {
                    Some(path) => format!("{path}: {}", err.reason()),
                    None => err.reason().to_string(),
                },
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

impl From<NodePresence> for NodeInfo {
    fn from(node: NodePresence) -> NodeInfo {
        let hostname = if node.hostname.is_empty() {
            node.uuid.clone()
        } else {
            node.hostname
        };
        NodeInfo {
            hostname,
            tunnels: node
                .tunnels
                .into_iter()
                .map(|tunnel| tunnel.proxy)
                .collect(),
            uuid: node.uuid,
            labels: node.labels,
            version: node.version,
        }
    }
}

/// A `KEY=VALUE` filter from `jsh`'s command line (`jsh ls env=prod`, `jsh ssh
/// root@env=prod`): a node passes when its label `KEY` is exactly `VALUE`. It only narrows
/// what the user sees or where a command runs; it decides no access. Unlike a role's
/// [`jumpgate_types::LabelSelector`] (`node_labels`: several values, wildcards and
/// regexes, which RBAC evaluates), it matches one value literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: String,
}

impl LabelFilter {
    /// `KEY=VALUE`; `None` if `text` has no `=` (it is then a node name).
    pub fn parse(text: &str) -> Option<LabelFilter> {
        let (key, value) = text.split_once('=')?;
        Some(LabelFilter {
            key: key.trim().to_string(),
            value: value.trim().to_string(),
        })
    }

    /// Parses every argument; the error names the first that is not `KEY=VALUE`.
    pub fn parse_all(args: &[String]) -> Result<Vec<LabelFilter>, ClientError> {
        args.iter()
            .map(|arg| {
                LabelFilter::parse(arg)
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

/// The nodes passing every filter (all nodes for none).
pub fn select<'a>(
    nodes: &'a [NodeInfo],
    filters: &[LabelFilter],
) -> impl Iterator<Item = &'a NodeInfo> {
    nodes
        .iter()
        .filter(move |node| filters.iter().all(|filter| filter.matches(node)))
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
            ..Default::default()
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
    fn a_node_without_a_host_name_goes_by_its_uuid() {
        let node = NodeInfo::from_document(r#"{"kind":"node","metadata":{"name":"9f"}}"#).unwrap();
        assert_eq!((node.hostname.as_str(), node.uuid.as_str()), ("9f", "9f"));
        assert!(node.labels.is_empty() && node.tunnels.is_empty() && node.version.is_empty());
        let err = NodeInfo::from_document(r#"{"kind":"node","metadata":{"name":""}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the proxy sent an unusable node record: metadata.name: is required: the node's host UUID"
        );
    }

    #[test]
    fn selectors_filter_nodes() {
        let web = NodeInfo::from_document(DOC).unwrap();
        let mut db = web.clone();
        db.hostname = "db-1".to_string();
        db.labels.insert("role".to_string(), "db".to_string());
        let nodes = vec![web, db];
        let selectors = LabelFilter::parse_all(&["role=db".to_string()]).unwrap();
        let picked: Vec<_> = select(&nodes, &selectors)
            .map(|n| n.hostname.as_str())
            .collect();
        assert_eq!(picked, vec!["db-1"]);
        assert_eq!(select(&nodes, &[]).count(), 2);
        assert!(LabelFilter::parse_all(&["web-1".to_string()]).is_err());
        assert!(LabelFilter::parse_all(&["=x".to_string()]).is_err());
        let table = nodes_table(&nodes);
        assert!(table.starts_with("Node"), "{table}");
        assert!(table.contains("db-1   5b0c  env=prod,role=db"), "{table}");
    }
}
