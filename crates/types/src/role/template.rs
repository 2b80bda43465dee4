//! Role value templates: `{{internal.logins}}`, `ubuntu-{{external.team}}`,
//! `{{email.local(external.email)}}`, `{{regexp.replace(external.groups, "^admin-(.*)$", "$1")}}`.
//!
//! A template is parsed when the role is parsed, so a malformed one (`{{internal.logins`) is a
//! role error naming the field, never a surprise at login. It is expanded per user, against the
//! user's traits, when an [`AccessChecker`](crate::AccessChecker) is built. The syntax is
//! Teleport's, minus its rarely used extras, so Teleport roles keep working:
//!
//! - at most one `{{ }}` per value, with optional literal text before and after it, which is
//!   added to every value the expression yields;
//! - a variable is `internal.NAME`, `external.NAME` or `external["any key"]`;
//! - functions: `email.local(VAR)` (the part before `@`) and
//!   `regexp.replace(VAR, "pattern", "replacement")` (values that do not match are dropped).
//!
//! Both namespaces read the user's traits: a local user's traits are where Teleport keeps
//! "internal" ones, and SSO (later) will fill the same map from the identity provider's claims.

use std::collections::BTreeMap;
use std::fmt;
use std::iter::Peekable;
use std::str::{CharIndices, FromStr};

use regex::Regex;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::error::suggest;

/// A user's traits: name to values, such as `logins: [alice, ubuntu]`. Templates read them.
pub type Traits = BTreeMap<String, Vec<String>>;

/// The `internal.*` traits Teleport defines. Restricting `internal` to these turns a typo such
/// as `{{internal.login}}`, which would silently grant nothing, into an error with a hint.
pub const INTERNAL_TRAITS: &[&str] = &[
    "logins",
    "windows_logins",
    "kubernetes_groups",
    "kubernetes_users",
    "db_names",
    "db_users",
    "db_roles",
    "aws_role_arns",
    "azure_identities",
    "gcp_service_accounts",
    "host_user_uid",
    "host_user_gid",
    "github_orgs",
    "jwt",
];

/// Deepest nesting of function calls: real templates use one; a bound keeps a hostile role
/// from exhausting the stack.
const MAX_DEPTH: usize = 4;

/// A role value that may hold a `{{ }}` expression. Compared and written back by its text.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Literal,
    Expr {
        prefix: String,
        suffix: String,
        expr: Expr,
    },
}

#[derive(Debug, Clone)]
enum Expr {
    Trait(String),
    EmailLocal(Box<Expr>),
    RegexpReplace {
        input: Box<Expr>,
        pattern: Regex,
        replacement: String,
    },
}

/// Why a template was refused. Each variant carries the template as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `}}` before any `{{`.
    #[error("{template:?} has `}}}}` without a matching `{{{{`")]
    UnmatchedClose {
        /// The value as written.
        template: String,
    },
    /// A `{{` that is never closed.
    #[error("{template:?} has `{{{{` without a closing `}}}}`; write e.g. {{{{internal.logins}}}}")]
    Unclosed {
        /// The value as written.
        template: String,
    },
    /// More than one `{{ }}` in one value.
    #[error("{template:?} has more than one `{{{{ }}}}` expression; a value may hold one")]
    SeveralExpressions {
        /// The value as written.
        template: String,
    },
    /// The expression between `{{` and `}}` is not one Jumpgate reads (an unknown
    /// variable or function, a syntax error); the reason says which and how to write it.
    #[error("in {template:?}: {reason}")]
    Expression {
        /// The value as written.
        template: String,
        /// What is wrong, with a hint.
        reason: String,
    },
    /// `regexp.replace`'s pattern is not a regular expression.
    #[error(
        "in {template:?}: regexp.replace: invalid regular expression {pattern:?}: {}",
        regex_reason(source)
    )]
    Pattern {
        /// The value as written.
        template: String,
        /// The pattern as written.
        pattern: String,
        /// The regex crate's error.
        #[source]
        source: regex::Error,
    },
}

/// Why the text between `{{` and `}}` was refused, before the template is attached.
#[derive(Debug)]
enum Problem {
    Syntax(String),
    Pattern {
        pattern: String,
        source: regex::Error,
    },
}

impl From<String> for Problem {
    fn from(reason: String) -> Self {
        Problem::Syntax(reason)
    }
}

impl Template {
    /// A template that expands to the values of trait `name`: `{{internal.NAME}}` (the built-in
    /// roles use it).
    pub(crate) fn internal_trait(name: &'static str) -> Self {
        Self {
            source: format!("{{{{internal.{name}}}}}"),
            body: Body::Expr {
                prefix: String::new(),
                suffix: String::new(),
                expr: Expr::Trait(name.to_owned()),
            },
        }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The value itself when it has no `{{ }}`.
    pub fn literal(&self) -> Option<&str> {
        match self.body {
            Body::Literal => Some(&self.source),
            Body::Expr { .. } => None,
        }
    }

    /// The values for a user: the literal itself, or one value per trait value the expression
    /// yields (none when the trait is missing or empty), with the literal text around the
    /// `{{ }}` added. Empty values are dropped.
    pub fn expand(&self, traits: &Traits) -> Vec<String> {
        match &self.body {
            Body::Literal => vec![self.source.clone()],
            Body::Expr {
                prefix,
                suffix,
                expr,
            } => expr
                .eval(traits)
                .into_iter()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{prefix}{v}{suffix}"))
                .collect(),
        }
    }

    /// Literal text around the expression (or the literal itself), for callers that check its
    /// characters (logins).
    pub(crate) fn literal_parts(&self) -> Vec<&str> {
        match &self.body {
            Body::Literal => vec![&self.source],
            Body::Expr { prefix, suffix, .. } => vec![prefix, suffix],
        }
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(source: &str) -> Result<Self, TemplateError> {
        let template = || source.to_owned();
        let Some((prefix, rest)) = source.split_once("{{") else {
            if source.contains("}}") {
                return Err(TemplateError::UnmatchedClose {
                    template: template(),
                });
            }
            return Ok(Self {
                source: source.to_owned(),
                body: Body::Literal,
            });
        };
        let Some((inner, suffix)) = rest.split_once("}}") else {
            return Err(TemplateError::Unclosed {
                template: template(),
            });
        };
        if prefix.contains("}}") {
            return Err(TemplateError::UnmatchedClose {
                template: template(),
            });
        }
        if suffix.contains("{{") || suffix.contains("}}") {
            return Err(TemplateError::SeveralExpressions {
                template: template(),
            });
        }
        let expr = Parser::new(inner)
            .parse_all()
            .map_err(|problem| match problem {
                Problem::Syntax(reason) => TemplateError::Expression {
                    template: template(),
                    reason,
                },
                Problem::Pattern { pattern, source } => TemplateError::Pattern {
                    template: template(),
                    pattern,
                    source,
                },
            })?;
        Ok(Self {
            source: source.to_owned(),
            body: Body::Expr {
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
                expr,
            },
        })
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let crate::config::values::ScalarString(s) =
            crate::config::values::ScalarString::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Expr {
    fn eval(&self, traits: &Traits) -> Vec<String> {
        match self {
            Expr::Trait(name) => traits.get(name).cloned().unwrap_or_default(),
            Expr::EmailLocal(input) => input
                .eval(traits)
                .into_iter()
                .filter_map(|v| {
                    let (local, domain) = v.trim().rsplit_once('@')?;
                    (!local.is_empty() && !domain.is_empty()).then(|| local.to_owned())
                })
                .collect(),
            Expr::RegexpReplace {
                input,
                pattern,
                replacement,
            } => input
                .eval(traits)
                .into_iter()
                .filter(|v| pattern.is_match(v))
                .map(|v| pattern.replace_all(&v, replacement.as_str()).into_owned())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Dot,
    Comma,
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Dot => f.write_str("`.`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Open => f.write_str("`(`"),
            Tok::Close => f.write_str("`)`"),
            Tok::OpenBracket => f.write_str("`[`"),
            Tok::CloseBracket => f.write_str("`]`"),
        }
    }
}

/// A recursive-descent parser over the text between `{{` and `}}`.
struct Parser {
    tokens: std::vec::IntoIter<Tok>,
    peeked: Option<Tok>,
    error: Option<String>,
}

impl Parser {
    fn new(text: &str) -> Self {
        let (tokens, error) = match lex(text) {
            Ok(tokens) => (tokens, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let mut tokens = tokens.into_iter();
        let peeked = tokens.next();
        Self {
            tokens,
            peeked,
            error,
        }
    }

    fn next(&mut self) -> Option<Tok> {
        std::mem::replace(&mut self.peeked, self.tokens.next())
    }

    fn peek(&self) -> Option<&Tok> {
        self.peeked.as_ref()
    }

    fn parse_all(mut self) -> Result<Expr, Problem> {
        if let Some(e) = self.error.take() {
            return Err(e.into());
        }
        if self.peek().is_none() {
            return Err(Problem::Syntax(
                "the `{{ }}` is empty; write e.g. {{internal.logins}}".to_owned(),
            ));
        }
        let expr = self.expr(0)?;
        match self.next() {
            None => Ok(expr),
            Some(tok) => Err(format!("unexpected {tok} after the expression").into()),
        }
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<(), String> {
        match self.next() {
            Some(tok) if tok == want => Ok(()),
            Some(tok) => Err(format!("expected {want} {context}, got {tok}")),
            None => Err(format!("expected {want} {context}, got the end")),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            Some(tok) => Err(format!("expected {what} as a \"quoted string\", got {tok}")),
            None => Err(format!(
                "expected {what} as a \"quoted string\", got the end"
            )),
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, Problem> {
        if depth > MAX_DEPTH {
            return Err(format!("functions nest deeper than {MAX_DEPTH} levels").into());
        }
        let mut names = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Ident(name)) => names.push(name),
                Some(tok) => return Err(format!("expected a name, got {tok}").into()),
                None => return Err("expected a name, got the end".to_owned().into()),
            }
            if self.peek() == Some(&Tok::Dot) {
                self.next();
            } else {
                break;
            }
        }
        let dotted = names.join(".");
        match self.peek() {
            Some(Tok::Open) => {
                self.next();
                self.call(&dotted, depth)
            }
            Some(Tok::OpenBracket) => {
                self.next();
                let [namespace] = names.as_slice() else {
                    return Err(format!(
                        "`{dotted}[...]`: brackets follow `external` or `internal` directly"
                    )
                    .into());
                };
                let key = self.string("a trait name in brackets")?;
                self.expect(Tok::CloseBracket, "after the trait name")?;
                Ok(variable(namespace, &key)?)
            }
            _ => match names.as_slice() {
                [namespace, name] => Ok(variable(namespace, name)?),
                [one] => Err(format!(
                    "`{one}` is not a variable; write internal.NAME or external.NAME"
                )
                .into()),
                _ => Err(format!(
                    "`{dotted}` is not a variable; write internal.NAME or external.NAME \
                     (use external[\"a.b\"] for a trait name with dots)"
                )
                .into()),
            },
        }
    }

    fn call(&mut self, name: &str, depth: usize) -> Result<Expr, Problem> {
        match name {
            "email.local" => {
                let input = self.expr(depth + 1)?;
                self.expect(Tok::Close, "to close email.local(")?;
                Ok(Expr::EmailLocal(Box::new(input)))
            }
            "regexp.replace" => {
                let input = self.expr(depth + 1)?;
                self.expect(Tok::Comma, "after regexp.replace's first argument")?;
                let pattern = self.string("regexp.replace's pattern")?;
                self.expect(Tok::Comma, "after regexp.replace's pattern")?;
                let replacement = self.string("regexp.replace's replacement")?;
                self.expect(Tok::Close, "to close regexp.replace(")?;
                let pattern = match Regex::new(&pattern) {
                    Ok(compiled) => compiled,
                    Err(source) => return Err(Problem::Pattern { pattern, source }),
                };
                Ok(Expr::RegexpReplace {
                    input: Box::new(input),
                    pattern,
                    replacement,
                })
            }
            other => Err(format!(
                "unknown function `{other}`; the functions are email.local and regexp.replace"
            )
            .into()),
        }
    }
}

/// `internal.NAME` or `external.NAME`, checked.
fn variable(namespace: &str, name: &str) -> Result<Expr, String> {
    match namespace {
        "external" => {
            if name.is_empty() {
                return Err("external[\"\"]: the trait name is empty".to_owned());
            }
            Ok(Expr::Trait(name.to_owned()))
        }
        "internal" => {
            if INTERNAL_TRAITS.contains(&name) {
                return Ok(Expr::Trait(name.to_owned()));
            }
            let hint = match suggest(name, INTERNAL_TRAITS) {
                Some(h) => format!("did you mean `internal.{h}`?"),
                None => "use external.NAME for other traits".to_owned(),
            };
            Err(format!("unknown internal trait `{name}`; {hint}"))
        }
        other => {
            let hint = suggest(other, &["internal", "external"])
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            Err(format!(
                "unknown namespace `{other}`: variables are internal.NAME or external.NAME{hint}"
            ))
        }
    }
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let mut tokens = Vec::new();
    let mut chars: Peekable<CharIndices<'_>> = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let tok = match c {
            c if c.is_whitespace() => continue,
            '.' => Tok::Dot,
            ',' => Tok::Comma,
            '(' => Tok::Open,
            ')' => Tok::Close,
            '[' => Tok::OpenBracket,
            ']' => Tok::CloseBracket,
            '"' => Tok::Str(lex_string(&mut chars)?),
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut ident = String::from(c);
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        ident.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                Tok::Ident(ident)
            }
            other => {
                return Err(format!(
                    "unexpected {other:?}; use external[\"...\"] for a trait name with \
                     other characters"
                ));
            }
        };
        tokens.push(tok);
    }
    Ok(tokens)
}

/// A double-quoted string after its opening quote. `\"` and `\\` are escapes; any other
/// backslash is kept, so regular expressions such as `"\d+"` read as written.
fn lex_string(chars: &mut Peekable<CharIndices<'_>>) -> Result<String, String> {
    let mut out = String::new();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => return Ok(out),
            '\\' => match chars.peek() {
                Some(&(_, q @ ('"' | '\\'))) => {
                    out.push(q);
                    chars.next();
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    Err("a string is missing its closing `\"`".to_owned())
}

/// The useful line of a regex error (the crate's message spans several lines with a caret).
pub(crate) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn traits() -> Traits {
        let mut t = Traits::new();
        t.insert("logins".into(), vec!["alice".into(), "ubuntu".into()]);
        t.insert(
            "email".into(),
            vec!["alice@example.com".into(), "nope".into()],
        );
        t.insert(
            "groups".into(),
            vec!["admin-db".into(), "dev".into(), "admin-web".into()],
        );
        t.insert("http://schemas/claims/name".into(), vec!["al".into()]);
        t.insert("empty".into(), vec![String::new()]);
        t
    }

    /// (template, expansion)
    #[test]
    fn expansions() {
        let cases: &[(&str, &[&str])] = &[
            ("root", &["root"]),
            ("{{internal.logins}}", &["alice", "ubuntu"]),
            ("{{ internal.logins }}", &["alice", "ubuntu"]),
            ("{{external.logins}}", &["alice", "ubuntu"]),
            ("{{external.missing}}", &[]),
            ("{{external.empty}}", &[]),
            ("{{internal.db_users}}", &[]),
            (
                "adm-{{internal.logins}}-x",
                &["adm-alice-x", "adm-ubuntu-x"],
            ),
            ("{{email.local(external.email)}}", &["alice"]),
            (
                r#"{{regexp.replace(external.groups, "^admin-(.*)$", "$1")}}"#,
                &["db", "web"],
            ),
            (
                r#"{{regexp.replace(email.local(external.email), "a", "A")}}"#,
                &["Alice"],
            ),
            (r#"{{external["http://schemas/claims/name"]}}"#, &["al"]),
            (r#"{{regexp.replace(external.groups, "\d", "")}}"#, &[]),
        ];
        let traits = traits();
        for (template, want) in cases {
            let t: Template = template
                .parse()
                .unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(t.expand(&traits), *want, "{template}");
            assert_eq!(t.as_str(), *template);
        }
    }

    /// (template, fragment of the error)
    #[test]
    fn malformed() {
        let cases = [
            ("{{internal.logins", "without a closing `}}`"),
            ("internal.logins}}", "without a matching `{{`"),
            ("}}{{internal.logins}}", "without a matching `{{`"),
            ("{{internal.logins}}{{external.x}}", "more than one"),
            ("{{}}", "is empty"),
            ("{{  }}", "is empty"),
            ("{{internal.login}}", "did you mean `internal.logins`?"),
            ("{{internal.team}}", "use external.NAME"),
            ("{{interal.logins}}", "did you mean `internal`?"),
            ("{{logins}}", "is not a variable"),
            ("{{external.a.b}}", "external[\"a.b\"]"),
            ("{{external.a b}}", "unexpected `b`"),
            ("{{external.a-b}}", "unexpected '-'"),
            ("{{email.local(external.email}}", "to close email.local("),
            (
                "{{email.remote(external.email)}}",
                "unknown function `email.remote`",
            ),
            (
                r#"{{regexp.replace(external.g, "(", "x")}}"#,
                "invalid regular expression",
            ),
            (r#"{{regexp.replace(external.g, "a")}}"#, "expected `,`"),
            (r#"{{regexp.replace(external.g, x, "y")}}"#, "quoted string"),
            (r#"{{external["unterminated]}}"#, "closing `\"`"),
            (r#"{{external[""]}}"#, "empty"),
            (
                "{{email.local(email.local(email.local(email.local(email.local(email.local(external.e))))))}}",
                "nest deeper",
            ),
        ];
        for (template, want) in cases {
            let err = template.parse::<Template>().unwrap_err().to_string();
            assert!(err.contains(want), "{template}: {err}");
        }
    }

    #[test]
    fn errors_are_variants_and_a_bad_pattern_keeps_the_regex_error() {
        let unclosed = "{{internal.logins".parse::<Template>().unwrap_err();
        assert!(
            matches!(unclosed, TemplateError::Unclosed { .. }),
            "{unclosed:?}"
        );
        let several = "{{a.b}}{{c.d}}".parse::<Template>().unwrap_err();
        assert!(matches!(several, TemplateError::SeveralExpressions { .. }));
        let text = r#"{{regexp.replace(external.g, "(", "x")}}"#;
        let err = text.parse::<Template>().unwrap_err();
        let TemplateError::Pattern {
            template, pattern, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((template.as_str(), pattern.as_str()), (text, "("));
        // The message is the one line of the regex error; the whole error is the source.
        assert_eq!(
            err.to_string(),
            format!(
                "in {text:?}: regexp.replace: invalid regular expression \"(\": unclosed group"
            )
        );
        let source = std::error::Error::source(&err);
        assert!(
            source.is_some_and(|s| s.downcast_ref::<regex::Error>().is_some()),
            "{err:?}"
        );
    }

    #[test]
    fn builtin_template_matches_parsed_one() {
        let built = Template::internal_trait("logins");
        let parsed: Template = "{{internal.logins}}".parse().unwrap();
        assert_eq!(built, parsed);
        assert_eq!(built.expand(&traits()), parsed.expand(&traits()));
    }
}
