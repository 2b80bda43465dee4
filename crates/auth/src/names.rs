//! One rule for the names the auth service puts into backend keys, certificate
//! principals and identities, so they need no escaping and cannot smuggle a `/`.

/// 1-253 characters of ASCII letters, digits, `-`, `_`, `.`, and the `extra` characters
/// a kind of name also allows (`@` in user names, `:` in host addresses).
pub(crate) fn is_plain_name(name: &str, extra: &[char]) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || extra.contains(&c)
        })
}

#[cfg(test)]
mod tests {
    use super::is_plain_name;

    #[test]
    fn only_plain_characters_and_the_extras_pass() {
        assert!(is_plain_name("alice.b-c_d", &[]));
        assert!(is_plain_name("alice@example.com", &['@']));
        assert!(!is_plain_name("alice@example.com", &[]));
        assert!(!is_plain_name("", &['@']));
        assert!(!is_plain_name("a/b", &['@', ':']));
        assert!(!is_plain_name(&"a".repeat(254), &[]));
        assert!(is_plain_name(&"a".repeat(253), &[]));
    }
}
