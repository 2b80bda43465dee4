//! Untrusted text quoted back in errors and audit events, kept short.

/// At most `max_chars` characters of `text`, with `…` appended when anything was cut.
/// Counts characters, not bytes, so a cut never lands inside one (a byte count would
/// panic on "Développeurs").
pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn cuts_at_characters_and_marks_the_cut() {
        assert_eq!(shorten("short", 5), "short");
        assert_eq!(shorten("shorter", 5), "short…");
        assert_eq!(shorten("Développeurs", 2), "Dé…");
        assert_eq!(shorten("日本語", 1), "日…");
        assert_eq!(shorten("", 0), "");
        assert_eq!(shorten("a", 0), "…");
    }
}
