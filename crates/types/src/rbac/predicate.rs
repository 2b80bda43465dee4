//! Teleport's predicate language, as admin rules use it in `where`:
//! `contains(session.participants, user.metadata.name)`.
//!
//! A rule's `where` is parsed when its role is parsed, so a typo (`contain(..)`,
//! `user.metadata.nmae`) is an error naming the field and the column, never a rule that
//! silently grants nothing. The subset is the one Teleport documents for roles:
//!
//! - conditions: `contains(LIST, VALUE)`, `equals(VALUE, VALUE)`, `true`, `false`, combined with
//!   `&&`, `||`, `!` and parentheses (`!` binds tightest, then `&&`, then `||`);
//! - values: string literals (`"text"` with `\"`, `\\`, `\n`, `\t` escapes, or `` `raw` ``) and
//!   fields: `user.metadata.name`, `user.spec.roles`, `user.spec.traits.NAME` or
//!   `user.spec.traits["NAME"]`, `session.participants`, `session.user`, `session.login`, ...
//!   (see [`FIELDS`]).
//!
//! Every field has a type, a single value or a list, checked when parsing: `contains` takes a
//! list and a value, `equals` two values.
//!
//! Evaluation is three-valued. A field of a resource the caller did not describe (a
//! `session.*` field when no session is given) is *unknown*, and so is any condition that
//! depends on it; [`AccessChecker`](crate::AccessChecker) then fails closed: an unknown allow
//! grants nothing, an unknown deny applies. That is what lets a list call ask "could any
//! session be readable?" before checking each one.
//!
//! The input is bounded ([`MAX_PREDICATE_LEN`] bytes, [`MAX_PREDICATE_DEPTH`] levels of `(` and
//! `!`), so a hostile role cannot exhaust the stack or make parsing slow.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::error::suggest;
use crate::role::{Traits, kinds};

/// Longest `where` accepted, in bytes. Teleport's are one line; this leaves room for a long
/// `||` of names.
pub const MAX_PREDICATE_LEN: usize = 4096;

/// Deepest nesting of parentheses and `!`. Real conditions use two or three.
pub const MAX_PREDICATE_DEPTH: usize = 32;

/// The fields a condition may read, and what they hold. `user.spec.traits.NAME` (or
/// `user.spec.traits["NAME"]`) is a list too, for any trait name.
pub const FIELDS: &[(&str, &str)] = &[
    ("user.metadata.name", "the user's name"),
    ("user.spec.roles", "the user's roles (a list)"),
    (
        "user.spec.traits",
        "the user's trait NAME, as user.spec.traits.NAME (a list)",
    ),
    (
        "session.participants",
        "the users who took part in the session (a list)",
    ),
    ("session.user", "the user who started the session"),
    ("session.login", "the OS login of the session"),
    ("session.sid", "the session id"),
    ("session.server_id", "the UUID of the node"),
    ("session.server_hostname", "the host name of the node"),
    ("session.cluster_name", "the cluster"),
    (
        "event.type",
        "the audit event's type, such as session.start",
    ),
    ("event.code", "the audit event's code"),
    ("event.user", "the user the audit event is about"),
    ("event.login", "the OS login of the audit event"),
    ("event.sid", "the session id of the audit event"),
    ("event.server_id", "the server the audit event comes from"),
];

/// The functions, for error messages.
const FUNCTIONS: &[&str] = &["contains", "equals"];

/// A parsed `where` condition. Compared, shown and written back by its text.
#[derive(Debug, Clone)]
pub struct Predicate {
    source: String,
    expr: Expr,
}

/// Why a condition was refused. Positions are 1-based character columns in the condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PredicateError {
    /// Blank text.
    #[error(
        "the condition is empty: write one such as contains(session.participants, \
         user.metadata.name), or remove `where`"
    )]
    Empty,
    /// Longer than [`MAX_PREDICATE_LEN`].
    #[error(
        "the condition is {len} bytes long, more than the {max} allowed: split it across rules"
    )]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_PREDICATE_LEN`].
        max: usize,
    },
    /// Nested deeper than [`MAX_PREDICATE_DEPTH`].
    #[error(
        "at column {column}: parentheses and `!` nest more than {max} deep; write the condition \
         more simply"
    )]
    TooDeep {
        /// Where the limit was passed.
        column: usize,
        /// [`MAX_PREDICATE_DEPTH`].
        max: usize,
    },
    /// A character that starts no token.
    #[error(
        "at column {column}: unexpected character {found:?}; conditions use function calls, \
         field names, \"strings\", `&&`, `||`, `!` and parentheses"
    )]
    BadCharacter {
        /// Where it is.
        column: usize,
        /// The character.
        found: char,
    },
    /// A string without its closing quote.
    #[error("at column {column}: the string starting here has no closing {quote}")]
    UnclosedString {
        /// Where the string starts.
        column: usize,
        /// The quote it needs.
        quote: char,
    },
    /// A backslash escape other than `\"`, `\\`, `\n`, `\t`, `\r`.
    #[error(
        "at column {column}: unknown escape \\{found} in a string; use \\\", \\\\, \\n, \\t or \
         \\r, or a `raw` string"
    )]
    BadEscape {
        /// Where the backslash is.
        column: usize,
        /// The character after it.
        found: char,
    },
    /// A token where another was needed.
    #[error("at column {column}: expected {expected}, found {found}")]
    Unexpected {
        /// Where the token is.
        column: usize,
        /// What would have fit.
        expected: &'static str,
        /// The token, shortened.
        found: String,
    },
    /// A call to a function that does not exist.
    #[error("at column {column}: unknown function `{name}`{hint}")]
    UnknownFunction {
        /// Where the name is.
        column: usize,
        /// The name, shortened.
        name: String,
        /// "; did you mean ...?" or the list of functions.
        hint: String,
    },
    /// A field that does not exist.
    #[error("at column {column}: unknown field `{path}`{hint}")]
    UnknownField {
        /// Where the field is.
        column: usize,
        /// The field as written, shortened.
        path: String,
        /// "; did you mean ...?" or the list of fields.
        hint: String,
    },
    /// A function called with the wrong number of arguments.
    #[error("at column {column}: `{function}` takes 2 arguments, got {got}")]
    Arity {
        /// Where the call is.
        column: usize,
        /// The function.
        function: &'static str,
        /// How many it was given.
        got: usize,
    },
    /// An argument of the wrong type.
    #[error("at column {column}: {problem}")]
    Type {
        /// Where the argument is.
        column: usize,
        /// What is wrong and what to write instead.
        problem: String,
    },
    /// A value (field or string) where a condition was needed.
    #[error(
        "at column {column}: {found} is a value, not a condition; compare it with \
         equals(..) or contains(..)"
    )]
    NotACondition {
        /// Where the value is.
        column: usize,
        /// The value, shortened.
        found: String,
    },
}

/// Which resource's fields a condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Namespace {
    /// `user.*`: the caller; always known.
    User,
    /// `session.*`: a session recording.
    Session,
    /// `event.*`: an audit event.
    Event,
}

impl Namespace {
    /// The resource kind whose rules can read this namespace; `None` for `user`, which every
    /// rule can read.
    pub fn kind(self) -> Option<&'static str> {
        match self {
            Namespace::User => None,
            Namespace::Session => Some(kinds::SESSION),
            Namespace::Event => Some(kinds::EVENT),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Namespace::User => "user",
            Namespace::Session => "session",
            Namespace::Event => "event",
        })
    }
}

/// What a condition knows about a session recording: `session.*`. Jumpgate sessions have
/// one participant, the user who started them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFacts {
    /// `session.sid`.
    pub sid: String,
    /// `session.participants`.
    pub participants: Vec<String>,
    /// `session.user`.
    pub user: String,
    /// `session.login`.
    pub login: String,
    /// `session.server_id`.
    pub server_id: String,
    /// `session.server_hostname`.
    pub server_hostname: String,
    /// `session.cluster_name`.
    pub cluster_name: String,
}

/// What a condition knows about an audit event: `event.*`. Fields the event lacks are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFacts {
    /// `event.type`: `session.start`, `user.login`, ...
    pub event_type: String,
    /// `event.code`.
    pub code: String,
    /// `event.user`.
    pub user: String,
    /// `event.login`.
    pub login: String,
    /// `event.sid`.
    pub sid: String,
    /// `event.server_id`.
    pub server_id: String,
}

/// The resource a rule is checked against, if one is known. Fields of any other resource
/// are unknown.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub enum ResourceFacts<'a> {
    /// Nothing is known about the resource: the question is about its kind.
    #[default]
    Unknown,
    /// A session recording.
    Session(&'a SessionFacts),
    /// An audit event.
    Event(&'a EventFacts),
}

/// The caller, as `user.*` reads it.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserFacts {
    /// Unknown for a checker built without [`AccessChecker::with_user`](crate::AccessChecker::with_user).
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub traits: Traits,
}

/// Kleene's three-valued logic: `Unknown` when the answer depends on a field nobody knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

impl From<bool> for Truth {
    fn from(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Const(bool),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Contains(ListField, Scalar),
    Equals(Scalar, Scalar),
}

#[derive(Debug, Clone)]
enum Scalar {
    Literal(String),
    Field(ScalarField),
}

#[derive(Debug, Clone, Copy)]
enum ScalarField {
    UserName,
    SessionUser,
    SessionLogin,
    SessionSid,
    SessionServerId,
    SessionServerHostname,
    SessionClusterName,
    EventType,
    EventCode,
    EventUser,
    EventLogin,
    EventSid,
    EventServerId,
}

#[derive(Debug, Clone)]
enum ListField {
    UserRoles,
    UserTrait(String),
    SessionParticipants,
}

#[derive(Debug, Clone)]
enum Field {
    Scalar(ScalarField),
    List(ListField),
}

impl Predicate {
    /// Parses and type-checks a condition.
    pub fn parse(source: &str) -> Result<Predicate, PredicateError> {
        if source.len() > MAX_PREDICATE_LEN {
            return Err(PredicateError::TooLong {
                len: source.len(),
                max: MAX_PREDICATE_LEN,
            });
        }
        if source.trim().is_empty() {
            return Err(PredicateError::Empty);
        }
        let tokens = lex(source)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            depth: 0,
        };
        let expr = parser.or()?;
        parser.expect_end()?;
        Ok(Predicate {
            source: source.to_owned(),
            expr,
        })
    }

    /// Teleport's condition on its `access` preset's session rule: the user took part in the
    /// session. Built directly; a unit test checks it parses to the same.
    pub(crate) fn own_sessions() -> Predicate {
        Predicate {
            source: "contains(session.participants, user.metadata.name)".to_owned(),
            expr: Expr::Contains(
                ListField::SessionParticipants,
                Scalar::Field(ScalarField::UserName),
            ),
        }
    }

    /// The condition as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The namespaces whose fields the condition reads.
    pub fn namespaces(&self) -> BTreeSet<Namespace> {
        let mut out = BTreeSet::new();
        self.expr.namespaces(&mut out);
        out
    }

    /// Evaluates the condition for `user` acting on `resource`.
    pub(crate) fn eval(&self, user: &UserFacts, resource: ResourceFacts<'_>) -> Truth {
        self.expr.eval(&Env { user, resource })
    }
}

impl PartialEq for Predicate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Predicate {}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Predicate {
    type Err = PredicateError;
    fn from_str(s: &str) -> Result<Predicate, PredicateError> {
        Predicate::parse(s)
    }
}

impl Serialize for Predicate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Predicate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Predicate::parse(&source).map_err(de::Error::custom)
    }
}

// ---- evaluation ----

struct Env<'a> {
    user: &'a UserFacts,
    resource: ResourceFacts<'a>,
}

const NO_VALUES: &[String] = &[];

impl Expr {
    fn eval(&self, env: &Env<'_>) -> Truth {
        match self {
            Expr::Const(b) => Truth::from(*b),
            Expr::Not(inner) => inner.eval(env).not(),
            Expr::And(items) => {
                let mut out = Truth::True;
                for item in items {
                    match item.eval(env) {
                        Truth::False => return Truth::False,
                        Truth::Unknown => out = Truth::Unknown,
                        Truth::True => {}
                    }
                }
                out
            }
            Expr::Or(items) => {
                let mut out = Truth::False;
                for item in items {
                    match item.eval(env) {
                        Truth::True => return Truth::True,
                        Truth::Unknown => out = Truth::Unknown,
                        Truth::False => {}
                    }
                }
                out
            }
            Expr::Contains(list, value) => match (list.get(env), value.get(env)) {
                (Some(list), Some(value)) => Truth::from(list.iter().any(|v| v == value)),
                _ => Truth::Unknown,
            },
            Expr::Equals(a, b) => match (a.get(env), b.get(env)) {
                (Some(a), Some(b)) => Truth::from(a == b),
                _ => Truth::Unknown,
            },
        }
    }

    fn namespaces(&self, out: &mut BTreeSet<Namespace>) {
        match self {
            Expr::Const(_) => {}
            Expr::Not(inner) => inner.namespaces(out),
            Expr::And(items) | Expr::Or(items) => {
                for item in items {
                    item.namespaces(out);
                }
            }
            Expr::Contains(list, value) => {
                out.insert(list.namespace());
                value.namespace().map(|ns| out.insert(ns));
            }
            Expr::Equals(a, b) => {
                for value in [a, b] {
                    value.namespace().map(|ns| out.insert(ns));
                }
            }
        }
    }
}

impl Scalar {
    fn get<'a>(&'a self, env: &Env<'a>) -> Option<&'a str> {
        match self {
            Scalar::Literal(text) => Some(text),
            Scalar::Field(field) => field.get(env),
        }
    }

    fn namespace(&self) -> Option<Namespace> {
        match self {
            Scalar::Literal(_) => None,
            Scalar::Field(field) => Some(field.namespace()),
        }
    }
}

impl ScalarField {
    fn get<'a>(self, env: &Env<'a>) -> Option<&'a str> {
        use ScalarField as F;
        let session = || match env.resource {
            ResourceFacts::Session(s) => Some(s),
            _ => None,
        };
        let event = || match env.resource {
            ResourceFacts::Event(e) => Some(e),
            _ => None,
        };
        match self {
            F::UserName => env.user.name.as_deref(),
            F::SessionUser => session().map(|s| s.user.as_str()),
            F::SessionLogin => session().map(|s| s.login.as_str()),
            F::SessionSid => session().map(|s| s.sid.as_str()),
            F::SessionServerId => session().map(|s| s.server_id.as_str()),
            F::SessionServerHostname => session().map(|s| s.server_hostname.as_str()),
            F::SessionClusterName => session().map(|s| s.cluster_name.as_str()),
            F::EventType => event().map(|e| e.event_type.as_str()),
            F::EventCode => event().map(|e| e.code.as_str()),
            F::EventUser => event().map(|e| e.user.as_str()),
            F::EventLogin => event().map(|e| e.login.as_str()),
            F::EventSid => event().map(|e| e.sid.as_str()),
            F::EventServerId => event().map(|e| e.server_id.as_str()),
        }
    }

    fn namespace(self) -> Namespace {
        use ScalarField as F;
        match self {
            F::UserName => Namespace::User,
            F::SessionUser
            | F::SessionLogin
            | F::SessionSid
            | F::SessionServerId
            | F::SessionServerHostname
            | F::SessionClusterName => Namespace::Session,
            F::EventType
            | F::EventCode
            | F::EventUser
            | F::EventLogin
            | F::EventSid
            | F::EventServerId => Namespace::Event,
        }
    }
}

impl ListField {
    fn get<'a>(&'a self, env: &Env<'a>) -> Option<&'a [String]> {
        match self {
            ListField::UserRoles => Some(&env.user.roles),
            ListField::UserTrait(name) => Some(
                env.user
                    .traits
                    .get(name)
                    .map_or(NO_VALUES, |values| values.as_slice()),
            ),
            ListField::SessionParticipants => match env.resource {
                ResourceFacts::Session(s) => Some(&s.participants),
                _ => None,
            },
        }
    }

    fn namespace(&self) -> Namespace {
        match self {
            ListField::UserRoles | ListField::UserTrait(_) => Namespace::User,
            ListField::SessionParticipants => Namespace::Session,
        }
    }
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    And,
    Or,
    Not,
    End,
}

/// A token and its 1-based character column.
#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    column: usize,
}

/// What a token looks like in an error message; names are shortened, since the text may come
/// from anyone who can create a role.
fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(name) => format!("`{}`", shorten(name)),
        Tok::Str(_) => "a string".to_owned(),
        Tok::LParen => "`(`".to_owned(),
        Tok::RParen => "`)`".to_owned(),
        Tok::LBracket => "`[`".to_owned(),
        Tok::RBracket => "`]`".to_owned(),
        Tok::Comma => "`,`".to_owned(),
        Tok::Dot => "`.`".to_owned(),
        Tok::And => "`&&`".to_owned(),
        Tok::Or => "`||`".to_owned(),
        Tok::Not => "`!`".to_owned(),
        Tok::End => "the end of the condition".to_owned(),
    }
}

const SHOWN_LEN: usize = 40;

fn shorten(text: &str) -> String {
    crate::text::shorten(text, SHOWN_LEN)
}

fn lex(source: &str) -> Result<Vec<Token>, PredicateError> {
    let mut tokens = Vec::new();
    // Columns count characters, so the iterator carries its own count.
    let mut chars = source.chars().zip(1usize..).peekable();
    let mut last_column = 1;
    while let Some((c, column)) = chars.next() {
        last_column = column + 1;
        let tok = match c {
            c if c.is_whitespace() => continue,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '!' => Tok::Not,
            '&' | '|' => {
                if chars.next_if(|(next, _)| *next == c).is_none() {
                    let expected = if c == '&' { "`&&`" } else { "`||`" };
                    return Err(PredicateError::Unexpected {
                        column,
                        expected,
                        found: format!("`{c}`"),
                    });
                }
                last_column = column + 2;
                if c == '&' { Tok::And } else { Tok::Or }
            }
            '"' | '`' => {
                let mut text = String::new();
                let mut closed = false;
                while let Some((s, at)) = chars.next() {
                    last_column = at + 1;
                    if s == c {
                        closed = true;
                        break;
                    }
                    if s == '\\' && c == '"' {
                        let Some((escaped, _)) = chars.next() else {
                            break;
                        };
                        text.push(match escaped {
                            '"' => '"',
                            '\\' => '\\',
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => {
                                return Err(PredicateError::BadEscape {
                                    column: at,
                                    found: other,
                                });
                            }
                        });
                    } else {
                        text.push(s);
                    }
                }
                if !closed {
                    return Err(PredicateError::UnclosedString { column, quote: c });
                }
                Tok::Str(text)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::from(c);
                while let Some((n, at)) =
                    chars.next_if(|(n, _)| n.is_ascii_alphanumeric() || *n == '_')
                {
                    name.push(n);
                    last_column = at + 1;
                }
                Tok::Ident(name)
            }
            other => {
                return Err(PredicateError::BadCharacter {
                    column,
                    found: other,
                });
            }
        };
        tokens.push(Token { tok, column });
    }
    tokens.push(Token {
        tok: Tok::End,
        column: last_column,
    });
    Ok(tokens)
}

// ---- parsing ----

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    depth: usize,
}

/// A value as parsed, before its type is checked against the function it is passed to.
enum Arg {
    Literal(String),
    Field { field: Field, path: Path },
}

/// A field as written: `user.spec.roles`, or `user.spec.traits["key"]`.
struct Path {
    dotted: String,
    key: Option<String>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shorten(&self.dotted))?;
        match &self.key {
            Some(key) => write!(f, "[{:?}]", shorten(key)),
            None => Ok(()),
        }
    }
}

const CONDITION: &str = "a condition: contains(..), equals(..), true, false, `!` or `(`";

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with `End`, and `bump` never moves past it.
        static END: Token = Token {
            tok: Tok::End,
            column: 0,
        };
        self.tokens.get(self.next).unwrap_or(&END)
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::End {
            self.next += 1;
        }
        token
    }

    fn unexpected(&self, expected: &'static str) -> PredicateError {
        let token = self.peek();
        PredicateError::Unexpected {
            column: token.column,
            expected,
            found: describe(&token.tok),
        }
    }

    fn expect(&mut self, tok: Tok, expected: &'static str) -> Result<Token, PredicateError> {
        if self.peek().tok == tok {
            Ok(self.bump())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expect_end(&mut self) -> Result<(), PredicateError> {
        if self.peek().tok == Tok::End {
            Ok(())
        } else {
            Err(self.unexpected("`&&`, `||` or the end of the condition"))
        }
    }

    fn enter(&mut self, column: usize) -> Result<(), PredicateError> {
        self.depth += 1;
        if self.depth > MAX_PREDICATE_DEPTH {
            return Err(PredicateError::TooDeep {
                column,
                max: MAX_PREDICATE_DEPTH,
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn or(&mut self) -> Result<Expr, PredicateError> {
        let first = self.and()?;
        if self.peek().tok != Tok::Or {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek().tok == Tok::Or {
            self.bump();
            items.push(self.and()?);
        }
        Ok(Expr::Or(items))
    }

    fn and(&mut self) -> Result<Expr, PredicateError> {
        let first = self.unary()?;
        if self.peek().tok != Tok::And {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek().tok == Tok::And {
            self.bump();
            items.push(self.unary()?);
        }
        Ok(Expr::And(items))
    }

    fn unary(&mut self) -> Result<Expr, PredicateError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Not => {
                self.enter(token.column)?;
                self.bump();
                let inner = self.unary()?;
                self.leave();
                Ok(Expr::Not(Box::new(inner)))
            }
            Tok::LParen => {
                self.enter(token.column)?;
                self.bump();
                let inner = self.or()?;
                self.expect(Tok::RParen, "`)`, `&&` or `||`")?;
                self.leave();
                Ok(inner)
            }
            Tok::Ident(name) => {
                self.bump();
                if self.peek().tok == Tok::LParen {
                    return self.call(&name, token.column);
                }
                match name.as_str() {
                    "true" if self.peek().tok != Tok::Dot => Ok(Expr::Const(true)),
                    "false" if self.peek().tok != Tok::Dot => Ok(Expr::Const(false)),
                    _ => {
                        let path = self.field_path(name, token.column)?;
                        Err(PredicateError::NotACondition {
                            column: token.column,
                            found: format!("`{path}`"),
                        })
                    }
                }
            }
            Tok::Str(_) => Err(PredicateError::NotACondition {
                column: token.column,
                found: "a string".to_owned(),
            }),
            _ => Err(self.unexpected(CONDITION)),
        }
    }

    fn call(&mut self, name: &str, column: usize) -> Result<Expr, PredicateError> {
        let function = match name {
            "contains" => "contains",
            "equals" => "equals",
            _ => {
                let hint = match suggest(name, FUNCTIONS) {
                    Some(known) => format!("; did you mean `{known}`?"),
                    None => format!(
                        "; the functions are {}",
                        FUNCTIONS
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                };
                return Err(PredicateError::UnknownFunction {
                    column,
                    name: shorten(name),
                    hint,
                });
            }
        };
        self.expect(Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        if self.peek().tok != Tok::RParen {
            loop {
                let at = self.peek().column;
                args.push((self.arg()?, at));
                if self.peek().tok == Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        let got = args.len();
        let mut args = args.into_iter();
        let (Some(first), Some(second), None) = (args.next(), args.next(), args.next()) else {
            return Err(PredicateError::Arity {
                column,
                function,
                got,
            });
        };
        match function {
            "contains" => Ok(Expr::Contains(
                list_arg(function, first)?,
                scalar_arg(function, second)?,
            )),
            _ => Ok(Expr::Equals(
                scalar_arg(function, first)?,
                scalar_arg(function, second)?,
            )),
        }
    }

    fn arg(&mut self) -> Result<Arg, PredicateError> {
        let token = self.bump();
        match token.tok {
            Tok::Str(text) => Ok(Arg::Literal(text)),
            Tok::Ident(name) => {
                let path = self.field_path(name, token.column)?;
                if self.peek().tok == Tok::LParen {
                    return Err(PredicateError::Type {
                        column: token.column,
                        problem: format!(
                            "`{path}(..)` cannot be an argument: arguments are fields and \"strings\""
                        ),
                    });
                }
                let field = resolve(&path, token.column)?;
                Ok(Arg::Field { field, path })
            }
            _ => Err(PredicateError::Unexpected {
                column: token.column,
                expected: "a field such as user.metadata.name, or a \"string\"",
                found: describe(&token.tok),
            }),
        }
    }

    /// `a.b.c`, `a.b["key"]`.
    fn field_path(&mut self, first: String, column: usize) -> Result<Path, PredicateError> {
        let mut dotted = first;
        loop {
            match self.peek().tok {
                Tok::Dot => {
                    self.bump();
                    let Tok::Ident(part) = self.peek().tok.clone() else {
                        return Err(self.unexpected("a field name after `.`"));
                    };
                    self.bump();
                    dotted.push('.');
                    dotted.push_str(&part);
                }
                Tok::LBracket => {
                    self.bump();
                    let Tok::Str(key) = self.peek().tok.clone() else {
                        return Err(self.unexpected("a \"string\" key after `[`"));
                    };
                    self.bump();
                    self.expect(Tok::RBracket, "`]`")?;
                    if dotted != "user.spec.traits" {
                        return Err(PredicateError::UnknownField {
                            column,
                            path: format!("{}[..]", shorten(&dotted)),
                            hint: "; only user.spec.traits takes a [\"key\"]".to_owned(),
                        });
                    }
                    return Ok(Path {
                        dotted,
                        key: Some(key),
                    });
                }
                _ => return Ok(Path { dotted, key: None }),
            }
        }
    }
}

/// The field a path names.
fn resolve(path: &Path, column: usize) -> Result<Field, PredicateError> {
    use ScalarField as S;
    if let Some(key) = &path.key {
        return Ok(Field::List(ListField::UserTrait(key.clone())));
    }
    let path = path.dotted.as_str();
    if let Some(name) = path.strip_prefix("user.spec.traits.")
        && !name.contains('.')
    {
        return Ok(Field::List(ListField::UserTrait(name.to_owned())));
    }
    let field = match path {
        "user.metadata.name" => Field::Scalar(S::UserName),
        "user.spec.roles" => Field::List(ListField::UserRoles),
        "session.participants" => Field::List(ListField::SessionParticipants),
        "session.user" => Field::Scalar(S::SessionUser),
        "session.login" => Field::Scalar(S::SessionLogin),
        "session.sid" => Field::Scalar(S::SessionSid),
        "session.server_id" => Field::Scalar(S::SessionServerId),
        "session.server_hostname" => Field::Scalar(S::SessionServerHostname),
        "session.cluster_name" => Field::Scalar(S::SessionClusterName),
        "event.type" => Field::Scalar(S::EventType),
        "event.code" => Field::Scalar(S::EventCode),
        "event.user" => Field::Scalar(S::EventUser),
        "event.login" => Field::Scalar(S::EventLogin),
        "event.sid" => Field::Scalar(S::EventSid),
        "event.server_id" => Field::Scalar(S::EventServerId),
        _ => {
            let namespace = path.split('.').next().unwrap_or_default();
            let known: Vec<&str> = FIELDS
                .iter()
                .map(|(name, _)| *name)
                .filter(|name| name.split('.').next() == Some(namespace))
                .collect();
            let hint = if known.is_empty() {
                "; fields start with `user.`, `session.` or `event.`".to_owned()
            } else {
                // Compare what follows the namespace, so that the budget for typos is the
                // field's, not the whole path's.
                let rest = |p: &'static str| p.split_once('.').map_or(p, |(_, rest)| rest);
                let tails: Vec<&str> = known.iter().map(|k| rest(k)).collect();
                let tail = path.split_once('.').map_or("", |(_, rest)| rest);
                match suggest(tail, &tails) {
                    Some("spec.traits") => "; did you mean user.spec.traits.NAME?".to_owned(),
                    Some(near) => format!("; did you mean `{namespace}.{near}`?"),
                    None => format!(
                        "; the {namespace} fields are {}",
                        known
                            .iter()
                            .map(|k| match *k {
                                "user.spec.traits" => "user.spec.traits.NAME",
                                k => k,
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            };
            return Err(PredicateError::UnknownField {
                column,
                path: shorten(path),
                hint,
            });
        }
    };
    Ok(field)
}

fn list_arg(function: &str, (arg, column): (Arg, usize)) -> Result<ListField, PredicateError> {
    match arg {
        Arg::Field {
            field: Field::List(list),
            ..
        } => Ok(list),
        Arg::Field { path, .. } => Err(PredicateError::Type {
            column,
            problem: format!(
                "`{function}` takes a list first, such as session.participants; `{path}` is a \
                 single value: compare it with equals(..)"
            ),
        }),
        Arg::Literal(_) => Err(PredicateError::Type {
            column,
            problem: format!(
                "`{function}` takes a list first, such as session.participants, not a string"
            ),
        }),
    }
}

fn scalar_arg(function: &str, (arg, column): (Arg, usize)) -> Result<Scalar, PredicateError> {
    match arg {
        Arg::Literal(text) => Ok(Scalar::Literal(text)),
        Arg::Field {
            field: Field::Scalar(field),
            ..
        } => Ok(Scalar::Field(field)),
        Arg::Field { path, .. } => Err(PredicateError::Type {
            column,
            problem: format!(
                "`{path}` is a list, and `{function}` needs a single value here; test \
                 membership with contains({path}, ..)"
            ),
        }),
    }
}
