//! Throws arbitrary text at the `where` condition of role rules (`Predicate::parse`, what
//! reading a role runs on each rule's `where`), then at what a condition is used for:
//! `namespaces` (which rules may carry it), its serde form, and its evaluation. Evaluation
//! is crate-private, so it is reached the way auth reaches it: an `AccessChecker` over a
//! role whose rule has the condition. An allow rule grants exactly where the condition is
//! true, and a deny rule applies where it is true or undecided, so the two together read the
//! condition's three-valued truth for a user and a resource.
//!
//! Besides "never panics", checks that:
//! - parsing is deterministic, agrees with `FromStr` and with serde, and a condition's text
//!   (`Display`, `as_str`, serde) is the input and parses back to the same condition;
//! - the limits hold: text over `MAX_PREDICATE_LEN` bytes is `TooLong` (also when padded
//!   past what libFuzzer generates), trailing blanks up to the limit change nothing, and
//!   nesting a condition `MAX_PREDICATE_DEPTH + 1` deep is `TooDeep`, not a stack overflow;
//! - errors point inside the text and their messages stay short;
//! - evaluation is consistent: the checks agree with each other, knowing more (the user's
//!   name, the resource) never changes a decided answer, what `namespaces` leaves out does
//!   not matter, and `!`, `&&`, `||` and parentheses around the condition mean what
//!   Kleene's logic says;
//! - a role whose rule carries the condition writes back to YAML and JSON that read back
//!   the same, and a rule on a kind whose fields the condition reads is accepted, others
//!   refused.

#![no_main]

use jumpgate_types::rbac::{
    EventFacts, MAX_PREDICATE_DEPTH, MAX_PREDICATE_LEN, Namespace, Predicate, PredicateError,
    ResourceFacts, SessionFacts,
};
use jumpgate_types::{
    AccessChecker, AccessDenied, Metadata, Resource, ResourceName, Role, RoleConditions,
    RoleSpec, Rule, Traits,
};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

/// Three-valued truth, as read back through the access checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
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

/// Messages quote names cut to 40 characters (a trait key, escaped, up to 10 bytes each,
/// twice in one message) and at most one namespace's field list: well under this, and far
/// under the input's 4096 bytes, which a message must not echo.
const MAX_MESSAGE_LEN: usize = 2048;

const ROLE_NAME: &str = "fuzz";

fn rule(where_clause: Option<Predicate>) -> Rule {
    Rule {
        resources: vec!["*".to_owned()],
        verbs: vec!["*".to_owned()],
        where_clause,
        actions: Vec::new(),
    }
}

fn role(allow: Vec<Rule>, deny: Vec<Rule>) -> Role {
    let mut spec = RoleSpec::default();
    let mut conditions = RoleConditions::default();
    conditions.rules = allow;
    spec.allow = conditions;
    let mut conditions = RoleConditions::default();
    conditions.rules = deny;
    spec.deny = conditions;
    let name = ResourceName::new(ROLE_NAME).expect("a valid name");
    Resource::new(Metadata::new(name), spec)
}

fn traits() -> Traits {
    Traits::from([
        (
            "logins".to_owned(),
            vec!["alice".to_owned(), "root".to_owned()],
        ),
        ("team".to_owned(), vec!["web".to_owned(), "db".to_owned()]),
        ("weird key".to_owned(), vec!["x".to_owned()]),
        ("empty".to_owned(), Vec::new()),
    ])
}

/// The resources the conditions are evaluated against: a resource kind for the check and
/// what is known about it.
struct World {
    session: SessionFacts,
    empty_session: SessionFacts,
    event: EventFacts,
    empty_event: EventFacts,
}

impl World {
    fn new() -> World {
        World {
            session: SessionFacts {
                sid: "s-1".to_owned(),
                participants: vec!["alice".to_owned(), "bob".to_owned()],
                user: "alice".to_owned(),
                login: "root".to_owned(),
                server_id: "node-uuid".to_owned(),
                server_hostname: "web-1".to_owned(),
                cluster_name: "main".to_owned(),
            },
            empty_session: SessionFacts::default(),
            event: EventFacts {
                event_type: "session.start".to_owned(),
                code: "T2000I".to_owned(),
                user: "alice".to_owned(),
                login: "ubuntu".to_owned(),
                sid: "s-1".to_owned(),
                server_id: "node-uuid".to_owned(),
            },
            empty_event: EventFacts::default(),
        }
    }

    /// `(kind, facts, namespace the facts describe)`; the first knows nothing.
    fn cases(&self) -> [(&'static str, ResourceFacts<'_>, Option<Namespace>); 5] {
        [
            ("session", ResourceFacts::Unknown, None),
            (
                "session",
                ResourceFacts::Session(&self.session),
                Some(Namespace::Session),
            ),
            (
                "session",
                ResourceFacts::Session(&self.empty_session),
                Some(Namespace::Session),
            ),
            (
                "event",
                ResourceFacts::Event(&self.event),
                Some(Namespace::Event),
            ),
            (
                "event",
                ResourceFacts::Event(&self.empty_event),
                Some(Namespace::Event),
            ),
        ]
    }
}

/// A condition's truth for every case of the world, for a user who is named or not.
#[derive(Debug, PartialEq, Eq)]
struct Table {
    named: Vec<Truth>,
    anonymous: Vec<Truth>,
}

/// Reads the truth of `predicate` through the access checks, checking that they agree.
fn truth_table(predicate: &Predicate, world: &World) -> Table {
    let allow_role = role(vec![rule(Some(predicate.clone()))], Vec::new());
    let deny_role = role(vec![rule(None)], vec![rule(Some(predicate.clone()))]);
    let traits = traits();
    let mut table = Table {
        named: Vec::new(),
        anonymous: Vec::new(),
    };
    for named in [true, false] {
        let checker = |role: &Role| {
            let checker = AccessChecker::new([role], &traits);
            if named {
                checker.with_user("alice")
            } else {
                checker
            }
        };
        let (allow, deny) = (checker(&allow_role), checker(&deny_role));
        let column = if named {
            &mut table.named
        } else {
            &mut table.anonymous
        };
        for (kind, facts, _) in world.cases() {
            let allowed = allow.check_rule_on(kind, "read", facts);
            let denied = deny.check_rule_on(kind, "read", facts);
            let truth = match (&allowed, &denied) {
                (Ok(()), Err(AccessDenied::RuleDenied { .. })) => Truth::True,
                (Err(AccessDenied::RuleConditionNotMet { .. }), Err(AccessDenied::RuleDenied { .. })) => {
                    Truth::Unknown
                }
                (Err(AccessDenied::RuleConditionNotMet { .. }), Ok(())) => Truth::False,
                _ => panic!("{predicate}: allow says {allowed:?}, deny says {denied:?}"),
            };
            column.push(truth);
        }
        // Without a resource: `check_rule` is `check_rule_on` knowing nothing, and
        // `check_rule_for_some` is refused by the allow rule only when the condition is
        // false whatever the resource, and by the deny rule only when it is true anyway.
        let unknown = column[0];
        let kind = "session";
        assert_eq!(
            allow.check_rule(kind, "read"),
            allow.check_rule_on(kind, "read", ResourceFacts::Unknown),
            "{predicate}"
        );
        assert_eq!(
            deny.check_rule(kind, "read"),
            deny.check_rule_on(kind, "read", ResourceFacts::Unknown),
            "{predicate}"
        );
        assert_eq!(
            allow.check_rule_for_some(kind, "read").is_ok(),
            unknown != Truth::False,
            "{predicate}"
        );
        assert_eq!(
            deny.check_rule_for_some(kind, "read").is_ok(),
            unknown != Truth::True,
            "{predicate}"
        );
    }
    table
}

/// What every evaluation must satisfy, whatever the condition.
fn check_evaluation(predicate: &Predicate, table: &Table, world: &World) {
    let namespaces = predicate.namespaces();
    let reads_resource =
        namespaces.contains(&Namespace::Session) || namespaces.contains(&Namespace::Event);
    for (i, (_, _, described)) in world.cases().iter().enumerate() {
        let (named, anonymous) = (table.named[i], table.anonymous[i]);
        // Knowing the user's name never changes a decided answer; not reading it, the name
        // changes nothing.
        if anonymous != Truth::Unknown || !namespaces.contains(&Namespace::User) {
            assert_eq!(named, anonymous, "{predicate}: case {i}");
        }
        // Knowing the resource never changes a decided answer.
        let blind = table.named[0];
        if blind != Truth::Unknown {
            assert_eq!(named, blind, "{predicate}: case {i}");
        }
        // A namespace the condition does not read does not matter, and one that is not
        // described is unknown.
        match described {
            Some(ns) if !namespaces.contains(ns) => {
                assert_eq!(named, blind, "{predicate}: case {i} ({ns} unread)");
            }
            _ => {}
        }
        if !reads_resource {
            assert_ne!(named, Truth::Unknown, "{predicate}: case {i}");
        }
    }
}

/// The result of parsing, comparable: `Predicate`'s `PartialEq` compares the text only,
/// its `Debug` shows the parsed tree too.
fn shape(result: &Result<Predicate, PredicateError>) -> String {
    format!("{result:?}")
}

fn column(error: &PredicateError) -> Option<usize> {
    match error {
        PredicateError::TooDeep { column, .. }
        | PredicateError::BadCharacter { column, .. }
        | PredicateError::UnclosedString { column, .. }
        | PredicateError::BadEscape { column, .. }
        | PredicateError::Unexpected { column, .. }
        | PredicateError::UnknownFunction { column, .. }
        | PredicateError::UnknownField { column, .. }
        | PredicateError::Arity { column, .. }
        | PredicateError::Type { column, .. }
        | PredicateError::NotACondition { column, .. } => Some(*column),
        _ => None,
    }
}

fn check_error(text: &str, error: &PredicateError) {
    let message = error.to_string();
    assert!(
        message.len() <= MAX_MESSAGE_LEN,
        "{} bytes: {message}",
        message.len()
    );
    if let Some(column) = column(error) {
        let chars = text.chars().count();
        assert!(
            (1..=chars + 1).contains(&column),
            "column {column} of {chars} characters: {message}"
        );
    }
}

/// `source` built around a parsed condition: it parses, or fails only on a limit.
fn parse_around(source: &str) -> Option<Predicate> {
    match Predicate::parse(source) {
        Ok(p) => Some(p),
        Err(PredicateError::TooDeep { .. } | PredicateError::TooLong { .. }) => None,
        Err(e) => panic!("{source:?}: {e}"),
    }
}

fn check_parsed(text: &str, predicate: &Predicate, world: &World) {
    assert_eq!(predicate.as_str(), text);
    assert_eq!(predicate.to_string(), text);
    let again = Predicate::parse(&predicate.to_string());
    assert_eq!(shape(&again), shape(&Ok(predicate.clone())));

    let json = serde_json::to_string(predicate).expect("a condition serializes");
    assert_eq!(json, serde_json::to_string(text).expect("a string serializes"));
    let back: Predicate = serde_json::from_str(&json).expect("a condition reads back");
    assert_eq!(shape(&Ok(back)), shape(&Ok(predicate.clone())));

    // Nested one level deeper than allowed: refused, whatever the condition.
    let depth = MAX_PREDICATE_DEPTH + 1;
    for nested in [
        format!("{}{text}{}", "(".repeat(depth), ")".repeat(depth)),
        format!("{}({text})", "!".repeat(depth)),
    ] {
        match Predicate::parse(&nested) {
            Err(PredicateError::TooDeep { max, .. }) => assert_eq!(max, MAX_PREDICATE_DEPTH),
            Err(PredicateError::TooLong { .. }) => {}
            other => panic!("{nested:?}: {other:?}"),
        }
    }

    let table = truth_table(predicate, world);
    check_evaluation(predicate, &table, world);

    // The same condition, written differently or combined: Kleene's logic.
    let same = |t: Truth| t;
    let negate = |t: Truth| t.not();
    let always = |t: Truth| move |_: Truth| t;
    type Law = Box<dyn Fn(Truth) -> Truth>;
    let variants: [(String, Law); 8] = [
        (format!("({text})"), Box::new(same)),
        (format!(" {text}\n\t"), Box::new(same)),
        (format!("!({text})"), Box::new(negate)),
        (format!("!!({text})"), Box::new(same)),
        (format!("({text}) && true"), Box::new(same)),
        (format!("false || ({text})"), Box::new(same)),
        (format!("({text}) || true"), Box::new(always(Truth::True))),
        (format!("false && ({text})"), Box::new(always(Truth::False))),
    ];
    for (source, law) in variants {
        let Some(variant) = parse_around(&source) else {
            continue;
        };
        assert_eq!(variant.namespaces(), predicate.namespaces(), "{source}");
        let got = truth_table(&variant, world);
        let want: Vec<Truth> = table.named.iter().map(|t| law(*t)).collect();
        assert_eq!(got.named, want, "{source:?}");
    }
    if let Some(twice) = parse_around(&format!("({text}) && ({text})")) {
        assert_eq!(truth_table(&twice, world), table, "{twice}");
    }

    check_role(predicate);
}

/// A role carrying the condition round-trips, and a rule on a kind is accepted exactly
/// when the condition reads no other kind's fields.
fn check_role(predicate: &Predicate) {
    let with = role(vec![rule(Some(predicate.clone()))], Vec::new());
    let yaml = with.to_yaml().expect("a role writes YAML");
    let back = Role::from_yaml("again.yaml", &yaml);
    assert_eq!(back.as_ref().ok(), Some(&with), "{yaml}\n{back:?}");
    let json = with.to_json().expect("a role writes JSON");
    let back = Role::from_json("again.json", &json);
    assert_eq!(back.as_ref().ok(), Some(&with), "{json}\n{back:?}");

    let namespaces = predicate.namespaces();
    for kind in ["node", "session", "event"] {
        let read = document(kind, predicate.as_str());
        let reads_other: BTreeSet<&str> = namespaces
            .iter()
            .filter_map(|n| n.kind())
            .filter(|k| *k != kind)
            .collect();
        match Role::from_json("kind.json", &read) {
            Ok(role) => {
                assert!(reads_other.is_empty(), "{predicate} on {kind}");
                let rule = &role.spec.allow.rules[0];
                assert_eq!(rule.where_clause.as_ref(), Some(predicate));
            }
            Err(e) => assert!(!reads_other.is_empty(), "{predicate} on {kind}: {e}"),
        }
    }
}

/// A role document with one allow rule on `kind` whose `where` is `text`.
fn document(kind: &str, text: &str) -> String {
    serde_json::json!({
        "kind": "role",
        "version": "v7",
        "metadata": {"name": ROLE_NAME},
        "spec": {"allow": {"rules": [{"resources": [kind], "verbs": ["read"], "where": text}]}},
    })
    .to_string()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let world = World::new();
    let parsed = Predicate::parse(text);
    assert_eq!(shape(&Predicate::parse(text)), shape(&parsed), "not deterministic");
    assert_eq!(shape(&text.parse::<Predicate>()), shape(&parsed));

    // serde reads the text as `parse` does; its error carries parse's message.
    let quoted = serde_json::to_string(text).expect("a string serializes");
    match (serde_json::from_str::<Predicate>(&quoted), &parsed) {
        (Ok(a), Ok(b)) => assert_eq!(shape(&Ok(a)), shape(&Ok(b.clone()))),
        (Err(a), Err(b)) => assert!(a.to_string().starts_with(&b.to_string()), "{a} / {b}"),
        (a, b) => panic!("serde: {a:?}, parse: {b:?}"),
    }

    // Over the limit is an error, however it would parse; up to the limit, trailing blanks
    // change nothing.
    if text.len() > MAX_PREDICATE_LEN {
        assert_eq!(
            parsed.as_ref().err(),
            Some(&PredicateError::TooLong {
                len: text.len(),
                max: MAX_PREDICATE_LEN
            })
        );
        return;
    }
    let padded = format!("{text}{}", " ".repeat(MAX_PREDICATE_LEN - text.len()));
    let long = format!("{padded} ");
    assert_eq!(
        Predicate::parse(&long).err(),
        Some(PredicateError::TooLong {
            len: MAX_PREDICATE_LEN + 1,
            max: MAX_PREDICATE_LEN
        })
    );
    let padded = Predicate::parse(&padded);
    match (&parsed, &padded) {
        (Ok(p), Ok(q)) => {
            assert_eq!(p.namespaces(), q.namespaces(), "{text:?}");
            assert_eq!(truth_table(p, &world), truth_table(q, &world), "{text:?}");
        }
        (Err(_), Err(e)) => assert!(
            !matches!(e, PredicateError::TooLong { .. }),
            "{text:?}: {e}"
        ),
        (a, b) => panic!("{text:?}: {a:?}, padded: {b:?}"),
    }

    match &parsed {
        Ok(predicate) => check_parsed(text, predicate, &world),
        Err(error) => {
            check_error(text, error);
            // Blank is no condition in a role; anything else refused stays refused there.
            let blank = text.trim().is_empty();
            assert!(blank || Role::from_json("bad.json", &document("*", text)).is_err());
        }
    }
});
