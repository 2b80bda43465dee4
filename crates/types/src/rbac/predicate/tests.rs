//! The `where` language: what parses, what it means, how refusals read, and that no input
//! makes it panic or recurse without bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;

fn user(name: &str, roles: &[&str], traits: &[(&str, &[&str])]) -> UserFacts {
    UserFacts {
        name: Some(name.to_owned()),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        traits: traits
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
            .collect(),
    }
}

fn session(participants: &[&str], login: &str) -> SessionFacts {
    SessionFacts {
        sid: "s-1".to_owned(),
        participants: participants.iter().map(|p| (*p).to_owned()).collect(),
        user: participants.first().copied().unwrap_or_default().to_owned(),
        login: login.to_owned(),
        server_id: "node-uuid".to_owned(),
        server_hostname: "web-1".to_owned(),
        cluster_name: "main".to_owned(),
    }
}

fn eval(source: &str, user: &UserFacts, resource: ResourceFacts<'_>) -> Truth {
    Predicate::parse(source)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .eval(user, resource)
}

#[test]
fn conditions_mean_what_teleport_documents() {
    use Truth::{False, True, Unknown};
    let alice = user(
        "alice",
        &["access", "dev"],
        &[("team", &["web", "db"]), ("weird key", &["x"])],
    );
    let hers = session(&["alice"], "ubuntu");
    let bobs = session(&["bob"], "root");
    let event = EventFacts {
        event_type: "session.start".to_owned(),
        code: "T2000I".to_owned(),
        user: "alice".to_owned(),
        login: "ubuntu".to_owned(),
        sid: "s-1".to_owned(),
        server_id: "node-uuid".to_owned(),
    };
    let on_hers = ResourceFacts::Session(&hers);
    let on_bobs = ResourceFacts::Session(&bobs);
    let none = ResourceFacts::Unknown;
    let cases: &[(&str, ResourceFacts<'_>, Truth)] = &[
        (
            "contains(session.participants, user.metadata.name)",
            on_hers,
            True,
        ),
        (
            "contains(session.participants, user.metadata.name)",
            on_bobs,
            False,
        ),
        (
            "contains(session.participants, user.metadata.name)",
            none,
            Unknown,
        ),
        ("contains(session.participants, \"bob\")", on_bobs, True),
        ("equals(session.login, \"root\")", on_bobs, True),
        ("equals(session.login, `root`)", on_hers, False),
        ("equals(session.user, user.metadata.name)", on_hers, True),
        ("equals(session.sid, \"s-1\")", on_hers, True),
        ("equals(session.server_hostname, \"web-1\")", on_hers, True),
        ("equals(session.server_id, \"node-uuid\")", on_hers, True),
        ("equals(session.cluster_name, \"main\")", on_hers, True),
        ("!equals(session.login, \"root\")", on_hers, True),
        ("!equals(session.login, \"root\")", none, Unknown),
        ("!!true", none, True),
        ("contains(user.spec.roles, \"dev\")", none, True),
        ("contains(user.spec.roles, \"editor\")", none, False),
        ("contains(user.spec.traits.team, \"db\")", none, True),
        (
            "contains(user.spec.traits[\"weird key\"], \"x\")",
            none,
            True,
        ),
        ("contains(user.spec.traits.missing, \"x\")", none, False),
        ("equals(user.metadata.name, \"alice\")", none, True),
        // Kleene logic: what does not depend on the unknown field is decided.
        (
            "equals(user.metadata.name, \"alice\") || equals(session.login, \"x\")",
            none,
            True,
        ),
        (
            "equals(user.metadata.name, \"bob\") && equals(session.login, \"x\")",
            none,
            False,
        ),
        (
            "equals(user.metadata.name, \"alice\") && equals(session.login, \"x\")",
            none,
            Unknown,
        ),
        (
            "equals(user.metadata.name, \"bob\") || equals(session.login, \"x\")",
            none,
            Unknown,
        ),
        // Precedence: `!` then `&&` then `||`; parentheses regroup.
        ("true || false && false", none, True),
        ("(true || false) && false", none, False),
        ("!true || true", none, True),
        ("!(true || true)", none, False),
        ("false || false || true", none, True),
        ("true && true && false", none, False),
        // Whitespace and newlines anywhere between tokens.
        (
            "  contains( session.participants ,\n user.metadata.name )  ",
            on_hers,
            True,
        ),
        ("equals(\"a\\\"b\", `a\"b`)", none, True),
        ("equals(\"tab\\there\", \"tab\there\")", none, True),
        // Another resource's fields are unknown.
        ("equals(event.user, user.metadata.name)", on_hers, Unknown),
        (
            "equals(event.user, user.metadata.name)",
            ResourceFacts::Event(&event),
            True,
        ),
        (
            "equals(event.type, \"session.start\")",
            ResourceFacts::Event(&event),
            True,
        ),
        (
            "equals(event.code, \"T2000I\")",
            ResourceFacts::Event(&event),
            True,
        ),
        (
            "equals(event.login, \"root\")",
            ResourceFacts::Event(&event),
            False,
        ),
        (
            "equals(event.sid, session.sid)",
            ResourceFacts::Event(&event),
            Unknown,
        ),
        (
            "equals(event.server_id, \"node-uuid\")",
            ResourceFacts::Event(&event),
            True,
        ),
    ];
    for (source, resource, want) in cases {
        assert_eq!(eval(source, &alice, *resource), *want, "{source}");
    }
}

#[test]
fn an_unnamed_user_is_unknown() {
    let nobody = UserFacts::default();
    let hers = session(&["alice"], "ubuntu");
    assert_eq!(
        eval(
            "contains(session.participants, user.metadata.name)",
            &nobody,
            ResourceFacts::Session(&hers)
        ),
        Truth::Unknown
    );
}

#[test]
fn the_access_preset_condition_is_what_it_says() {
    let built = Predicate::own_sessions();
    let parsed = Predicate::parse(built.as_str()).unwrap();
    assert_eq!(built, parsed);
    let alice = user("alice", &[], &[]);
    for participants in [&["alice"][..], &["bob"], &[], &["bob", "alice"]] {
        let s = session(participants, "x");
        assert_eq!(
            built.eval(&alice, ResourceFacts::Session(&s)),
            parsed.eval(&alice, ResourceFacts::Session(&s)),
            "{participants:?}"
        );
    }
}

#[test]
fn namespaces_are_what_the_condition_reads() {
    let ns = |s: &str| Predicate::parse(s).unwrap().namespaces();
    assert_eq!(
        ns("contains(session.participants, user.metadata.name)"),
        BTreeSet::from([Namespace::Session, Namespace::User])
    );
    assert_eq!(
        ns("true || !equals(event.user, \"x\")"),
        BTreeSet::from([Namespace::Event])
    );
    assert!(ns("true").is_empty());
}

/// (condition, fragment of the error, including the column where one applies)
#[test]
fn malformed_conditions_say_where_and_what_was_expected() {
    let cases: &[(&str, &str)] = &[
        ("", "the condition is empty"),
        ("   ", "the condition is empty"),
        (
            "is_owner",
            "at column 1: `is_owner` is a value, not a condition",
        ),
        ("x", "at column 1: `x` is a value, not a condition"),
        (
            "user.metadata.name",
            "at column 1: `user.metadata.name` is a value, not a condition",
        ),
        (
            "\"alice\"",
            "at column 1: a string is a value, not a condition",
        ),
        (
            "contain(session.participants, user.metadata.name)",
            "at column 1: unknown function `contain`; did you mean `contains`?",
        ),
        (
            "matches(user.metadata.name, \"a\")",
            "unknown function `matches`; the functions are `contains` and `equals`",
        ),
        (
            "contains(session.participant, user.metadata.name)",
            "at column 10: unknown field `session.participant`; did you mean `session.participants`?",
        ),
        (
            "equals(user.metadata.nmae, \"a\")",
            "at column 8: unknown field `user.metadata.nmae`; did you mean `user.metadata.name`?",
        ),
        (
            "equals(resource.metadata.name, \"a\")",
            "unknown field `resource.metadata.name`; fields start with `user.`, `session.` or \
             `event.`",
        ),
        (
            "equals(session.owner_name, \"a\")",
            "unknown field `session.owner_name`; the session fields are session.participants, \
             session.user, session.login",
        ),
        (
            "contains(user.spec.traits, \"a\")",
            "unknown field `user.spec.traits`; did you mean user.spec.traits.NAME?",
        ),
        (
            "contains(user.spec.roles[\"x\"], \"a\")",
            "unknown field `user.spec.roles[..]`; only user.spec.traits takes a [\"key\"]",
        ),
        (
            "contains(session.participants)",
            "at column 1: `contains` takes 2 arguments, got 1",
        ),
        ("equals()", "`equals` takes 2 arguments, got 0"),
        (
            "equals(\"a\", \"b\", \"c\")",
            "`equals` takes 2 arguments, got 3",
        ),
        (
            "contains(session.user, user.metadata.name)",
            "at column 10: `contains` takes a list first, such as session.participants; \
             `session.user` is a single value",
        ),
        (
            "contains(\"alice\", user.metadata.name)",
            "`contains` takes a list first, such as session.participants, not a string",
        ),
        (
            "equals(session.participants, user.metadata.name)",
            "at column 8: `session.participants` is a list, and `equals` needs a single value",
        ),
        (
            "contains(user.spec.roles, user.spec.roles)",
            "at column 27: `user.spec.roles` is a list",
        ),
        (
            "contains(set(\"a\"), \"a\")",
            "at column 10: `set(..)` cannot be an argument",
        ),
        (
            "contains(session.participants, user.metadata.name",
            "at column 50: expected `,` or `)`, found the end of the condition",
        ),
        (
            "contains(session.participants user.metadata.name)",
            "at column 31: expected `,` or `)`, found `user`",
        ),
        (
            "(true",
            "at column 6: expected `)`, `&&` or `||`, found the end",
        ),
        (
            "true)",
            "at column 5: expected `&&`, `||` or the end of the condition, found `)`",
        ),
        ("true true", "at column 6: expected `&&`, `||` or the end"),
        ("true &&", "at column 8: expected a condition"),
        ("|| true", "at column 1: expected a condition"),
        ("true & false", "at column 6: expected `&&`, found `&`"),
        ("true | false", "at column 6: expected `||`, found `|`"),
        ("true == true", "at column 6: unexpected character '='"),
        (
            "equals('a', 'b')",
            "at column 8: unexpected character '\\''",
        ),
        (
            "equals(\"a, \"b\")",
            "at column 14: the string starting here has no closing \"",
        ),
        (
            "equals(`a, \"b\")",
            "at column 8: the string starting here has no closing `",
        ),
        (
            "equals(\"a\\q\", \"b\")",
            "at column 10: unknown escape \\q",
        ),
        (
            "equals(user., \"b\")",
            "at column 13: expected a field name after `.`",
        ),
        (
            "equals(user.spec.traits[x], \"b\")",
            "at column 25: expected a \"string\" key after `[`",
        ),
        (
            "equals(, \"b\")",
            "at column 8: expected a field such as user.metadata.name",
        ),
        (
            "équals(\"a\", \"a\")",
            "at column 1: unexpected character 'é'",
        ),
        (
            "equals(\"é\", \"a\") x",
            "at column 18: expected `&&`, `||` or the end",
        ),
        ("true.x", "`true.x` is a value, not a condition"),
    ];
    for (source, want) in cases {
        match Predicate::parse(source) {
            Ok(p) => panic!("{source:?} parsed: {p:?}"),
            Err(e) => assert!(e.to_string().contains(want), "{source:?}: {e}"),
        }
    }
}

#[test]
fn nesting_is_bounded() {
    let nested = |open: &str, depth: usize, close: &str| {
        format!("{}true{}", open.repeat(depth), close.repeat(depth))
    };
    assert!(Predicate::parse(&nested("(", MAX_PREDICATE_DEPTH, ")")).is_ok());
    assert!(Predicate::parse(&nested("!", MAX_PREDICATE_DEPTH, "")).is_ok());
    assert!(Predicate::parse(&nested("!(", MAX_PREDICATE_DEPTH / 2, ")")).is_ok());
    for too_deep in [
        nested("(", MAX_PREDICATE_DEPTH + 1, ")"),
        nested("!", MAX_PREDICATE_DEPTH + 1, ""),
        nested("(!", MAX_PREDICATE_DEPTH / 2 + 1, ")"),
    ] {
        let err = Predicate::parse(&too_deep).unwrap_err();
        assert!(
            matches!(
                err,
                PredicateError::TooDeep {
                    max: MAX_PREDICATE_DEPTH,
                    ..
                }
            ),
            "{err}"
        );
    }
    // As deep as the length limit allows: an error, not a stack overflow.
    let deepest = "(".repeat(MAX_PREDICATE_LEN);
    let err = Predicate::parse(&deepest).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "at column {}: parentheses and `!` nest more than {MAX_PREDICATE_DEPTH} deep; write \
             the condition more simply",
            MAX_PREDICATE_DEPTH + 1
        )
    );
    // Long `&&`/`||` chains are not nesting.
    let chain = vec!["true"; 500].join(" && ");
    assert!(Predicate::parse(&chain).is_ok());
}

#[test]
fn length_is_bounded() {
    let fits = format!("{:<width$}", "true", width = MAX_PREDICATE_LEN);
    assert_eq!(fits.len(), MAX_PREDICATE_LEN);
    assert!(Predicate::parse(&fits).is_ok());
    let long = format!("{fits} ");
    assert_eq!(
        Predicate::parse(&long).unwrap_err(),
        PredicateError::TooLong {
            len: MAX_PREDICATE_LEN + 1,
            max: MAX_PREDICATE_LEN
        }
    );
    // Error messages quote at most a bounded part of what was written.
    let name = "x".repeat(1000);
    let err = Predicate::parse(&format!("{name}(\"a\")")).unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
    let err = Predicate::parse(&format!("equals(user.{name}, \"a\")")).unwrap_err();
    assert!(err.to_string().len() < 1000, "{err}");
}

#[test]
fn conditions_write_back_as_written() {
    let source =
        "contains(session.participants, user.metadata.name) && !equals(session.login, `root`)";
    let p: Predicate = source.parse().unwrap();
    assert_eq!(p.to_string(), source);
    let json = serde_json::to_string(&p).unwrap();
    let again: Predicate = serde_json::from_str(&json).unwrap();
    assert_eq!(again, p);
    let err = serde_json::from_str::<Predicate>("\"contains(x\"").unwrap_err();
    assert!(err.to_string().contains("unknown field `x`"), "{err}");
}

/// xorshift64*: a fixed seed, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

/// Parses `source`; whatever parses must evaluate without panicking against every kind of
/// resource and write back to itself.
fn parse_and_use(source: &str) {
    let Ok(p) = Predicate::parse(source) else {
        return;
    };
    let u = user("alice", &["access"], &[("team", &["web"])]);
    let s = session(&["alice"], "root");
    let e = EventFacts::default();
    for resource in [
        ResourceFacts::Unknown,
        ResourceFacts::Session(&s),
        ResourceFacts::Event(&e),
    ] {
        let _ = p.eval(&u, resource);
        let _ = p.eval(&UserFacts::default(), resource);
    }
    assert_eq!(Predicate::parse(p.as_str()).unwrap(), p);
}

/// A bounded stand-in for the fuzz target: random bytes, and random sequences of the
/// language's own tokens (which reach much deeper into the parser), never panic.
#[test]
fn random_input_never_panics() {
    let mut rng = Rng(0x5EED_0F7E_1E90_4700);
    for _ in 0..3000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
        parse_and_use(&String::from_utf8_lossy(&bytes));
    }
    const SOUP: &[&str] = &[
        "contains",
        "equals",
        "(",
        ")",
        ",",
        ".",
        "[",
        "]",
        "!",
        "&&",
        "||",
        "&",
        "|",
        "true",
        "false",
        "\"a\"",
        "\"",
        "`b`",
        "`",
        "\\",
        "user",
        "metadata",
        "name",
        "spec",
        "roles",
        "traits",
        "session",
        "participants",
        "login",
        "event",
        "x",
        " ",
        "\n",
        "é",
        "=",
        "'",
        "user.metadata.name",
        "session.participants",
        "user.spec.traits[\"k\"]",
        "contains(session.participants, user.metadata.name)",
        "equals(session.login, \"r\")",
    ];
    let mut parsed = 0;
    for _ in 0..5000 {
        let n = rng.below(40);
        let source: String = (0..n).map(|_| SOUP[rng.below(SOUP.len())]).collect();
        if Predicate::parse(&source).is_ok() {
            parsed += 1;
        }
        parse_and_use(&source);
    }
    // Nearly all soups are malformed; a few must parse, or this explores only errors.
    assert!(parsed > 0, "no random token soup parsed");
    // Deep and long: nesting close to the limits, in random shapes.
    for _ in 0..500 {
        let depth = rng.below(2 * MAX_PREDICATE_DEPTH);
        let mut source = String::new();
        for _ in 0..depth {
            source.push_str(["(", "!", "!(", "true && ("][rng.below(4)]);
        }
        source.push_str("contains(session.participants, user.metadata.name)");
        for _ in 0..depth {
            source.push_str([")", " || false)", ""][rng.below(3)]);
        }
        parse_and_use(&source);
    }
}
