//! Small helpers over roxmltree: SAML's namespaces, element text that refuses mixed
//! content, xs:dateTime, and escaping for the XML this crate writes.

use crate::SamlError;
use roxmltree::Node;
use std::time::SystemTime;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(crate) const NS_MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub(crate) const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const NS_SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";

pub(crate) const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub(crate) const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// How every document is parsed: no DTD (so no entity expansion and no external
/// entities; SAML messages never carry one), and a bound on the node count so a large
/// input cannot build a huge tree.
pub(crate) fn parse(text: &str) -> Result<roxmltree::Document<'_>, roxmltree::Error> {
    roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            nodes_limit: 200_000,
            ..roxmltree::ParsingOptions::default()
        },
    )
}

/// Whether `node` is the element `{ns}local`.
pub(crate) fn is(node: Node<'_, '_>, ns: &str, local: &str) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(ns) && node.tag_name().name() == local
}

/// The element children of `node` named `{ns}local`.
pub(crate) fn children<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'static str,
    local: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |c| is(*c, ns, local))
}

/// The first element child of `node` named `{ns}local`.
pub(crate) fn child<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'static str,
    local: &'static str,
) -> Option<Node<'a, 'i>> {
    children(node, ns, local).next()
}

/// An element's qualified name for messages: `prefix:local` as written is not kept by
/// roxmltree, so `{namespace}local`.
pub(crate) fn name_of(node: Node<'_, '_>) -> String {
    match node.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", node.tag_name().name()),
        None => node.tag_name().name().to_string(),
    }
}

/// The whole text of a simple-content element, trimmed. An element child inside it is
/// refused (the value would be ambiguous), and every text node counts, not only the first:
/// reading only the first is how comment injection (`admin@example.com<!---->.evil.com`)
/// fools a service provider.
pub(crate) fn text(node: Node<'_, '_>, element: &'static str) -> Result<String, SamlError> {
    let mut out = String::new();
    for c in node.children() {
        if c.is_element() {
            return Err(SamlError::Malformed {
                element,
                reason: format!("it holds an element ({}) where text belongs", name_of(c)),
            });
        }
        if let Some(t) = c.text().filter(|_| c.is_text()) {
            out.push_str(t);
        }
    }
    Ok(out
        .trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'))
        .to_string())
}

/// An attribute's value, or `Missing`.
pub(crate) fn required_attr<'a>(
    node: Node<'a, '_>,
    name: &'static str,
    element: &'static str,
) -> Result<&'a str, SamlError> {
    node.attribute(name).ok_or(SamlError::Missing {
        element,
        what: name,
    })
}

/// An xs:dateTime as SAML uses it (UTC, `Z`, optional fractional seconds). A time with no
/// time zone is refused: its instant is unknown.
pub(crate) fn parse_time(value: &str, element: &'static str) -> Result<SystemTime, SamlError> {
    OffsetDateTime::parse(value.trim(), &Rfc3339)
        .map(SystemTime::from)
        .map_err(|err| SamlError::Malformed {
            element,
            reason: format!("time {value:?} is not an xs:dateTime with a time zone ({err})"),
        })
}

/// `t` as xs:dateTime in UTC, whole seconds (what this crate writes and shows in errors).
pub(crate) fn format_time(t: SystemTime) -> String {
    let dt = OffsetDateTime::from(t);
    dt.replace_nanosecond(0)
        .unwrap_or(dt)
        .format(&Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Text escaped for XML content and double-quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reads_every_text_node_and_refuses_elements() {
        let doc = parse("<a>admin@example.com<!---->.evil.com</a>").unwrap();
        assert_eq!(
            text(doc.root_element(), "NameID").unwrap(),
            "admin@example.com.evil.com"
        );
        let doc = parse("<a> x<b/>y </a>").unwrap();
        assert!(matches!(
            text(doc.root_element(), "NameID"),
            Err(SamlError::Malformed { .. })
        ));
        let doc = parse("<a>\n  a&amp;b <![CDATA[<c>]]>\n</a>").unwrap();
        assert_eq!(text(doc.root_element(), "x").unwrap(), "a&b <c>");
    }

    #[test]
    fn dtds_are_refused() {
        let billion = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>"#;
        assert!(parse(billion).is_err());
    }

    #[test]
    fn times() {
        let t = parse_time("2026-12-07T13:30:00.123Z", "Conditions").unwrap();
        assert_eq!(format_time(t), "2026-12-07T13:30:00Z");
        assert!(parse_time("2026-12-07T13:30:00", "Conditions").is_err());
        assert!(parse_time("yesterday", "Conditions").is_err());
        assert_eq!(
            parse_time("2026-12-07T14:30:00+01:00", "x").unwrap(),
            parse_time("2026-12-07T13:30:00Z", "x").unwrap()
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
