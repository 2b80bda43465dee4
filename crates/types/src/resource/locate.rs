//! Where a field named by a [`ResourceError::Field`](super::ResourceError) path
//! (`spec.allow.logins[0]`) is written in a block-style YAML document, so an editor can
//! show the error at its line (the web UI's role editor). The parser's values carry no
//! positions, so this reads the text: each key is looked for at a deeper indent inside
//! its parent's lines, each `[i]` as the i-th `- ` item there. Flow style (`{a: 1}`,
//! `[x, y]`) ends the search at the deepest key found, which is still the right region.

use crate::config::Location;

/// The line and column of the field `path` (dotted, `[i]` for list items) in `text`, or
/// of its deepest ancestor that could be found; `None` when not even the first key is there.
pub fn locate_field(text: &str, path: &str) -> Option<Location> {
    let lines: Vec<&str> = text.lines().collect();
    // The block being searched: its line range and the indent its children exceed.
    let (mut start, mut end, mut parent_indent) = (0usize, lines.len(), -1i64);
    let mut found: Option<Location> = None;
    for segment in segments(path) {
        let hit = match segment {
            Segment::Key(key) => find_key(&lines, start, end, parent_indent, key),
            Segment::Index(index) => find_item(&lines, start, end, parent_indent, index),
        };
        let Some((line, column)) = hit else {
            break;
        };
        found = Some(Location {
            line: line + 1,
            column: column + 1,
        });
        let indent = i64::try_from(column).unwrap_or(i64::MAX);
        start = line;
        end = block_end(&lines, line, indent);
        parent_indent = indent;
    }
    found
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(index) = index.parse() {
                out.push(Segment::Index(index));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#') && trimmed != "---"
}

/// The first line after `line` whose indent is at most `indent` (the block's end).
fn block_end(lines: &[&str], line: usize, indent: i64) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(line + 1)
        .find(|(_, text)| {
            is_content(text) && i64::try_from(indent_of(text)).unwrap_or(i64::MAX) <= indent
        })
        .map_or(lines.len(), |(at, _)| at)
}

/// `key:` at the shallowest indent deeper than `parent` within `start..end` (also after a
/// list item's `- `); its line and column.
fn find_key(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: i64,
    key: &str,
) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (at, line) in lines.iter().enumerate().take(end).skip(start) {
        if !is_content(line) {
            continue;
        }
        let mut column = indent_of(line);
        let mut rest = line.trim_start();
        // The first key of a list item: `- key: value`, at the position after the dash.
        while let Some(after) = rest.strip_prefix("- ") {
            column += 2 + (after.len() - after.trim_start().len());
            rest = after.trim_start();
        }
        if i64::try_from(column).unwrap_or(i64::MAX) <= parent {
            continue;
        }
        let unquoted = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_prefix(key))
            .and_then(|r| r.strip_prefix('"'))
            .or_else(|| rest.strip_prefix(key));
        let is_key = unquoted.is_some_and(|r| r.starts_with(':'));
        if is_key && best.is_none_or(|(_, c)| column < c) {
            best = Some((at, column));
        }
    }
    best
}

/// The `index`-th `- ` item directly inside the block (or the value's line for a flow list).
fn find_item(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: i64,
    index: usize,
) -> Option<(usize, usize)> {
    let items: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .take(end)
        .skip(start)
        .filter(|(_, line)| is_content(line) && line.trim_start().starts_with('-'))
        .map(|(at, line)| (at, indent_of(line)))
        .filter(|(_, column)| i64::try_from(*column).unwrap_or(i64::MAX) >= parent)
        .collect();
    let shallowest = items.iter().map(|(_, column)| *column).min()?;
    items
        .into_iter()
        .filter(|(_, column)| *column == shallowest)
        .nth(index)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ROLE: &str = "kind: role\nversion: v7\nmetadata:\n  name: dev\nspec:\n  allow:\n    logins:\n      - ubuntu\n      - '{{internal.logins}}'\n    node_labels:\n      env: [dev]\n    rules:\n      - resources: [session]\n        verbs: [list, reed]\n  deny: {}\n";

    fn at(path: &str) -> Option<(usize, usize)> {
        locate_field(ROLE, path).map(|l| (l.line, l.column))
    }

    #[test]
    fn fields_are_found_at_their_line_and_column() {
        assert_eq!(at("kind"), Some((1, 1)));
        assert_eq!(at("metadata.name"), Some((4, 3)));
        assert_eq!(at("spec.allow.logins"), Some((7, 5)));
        assert_eq!(at("spec.allow.logins[1]"), Some((9, 7)));
        assert_eq!(at("spec.allow.node_labels.env"), Some((11, 7)));
        assert_eq!(at("spec.allow.rules[0].verbs"), Some((14, 9)));
        // A flow list's item: the deepest key found (its line).
        assert_eq!(at("spec.allow.rules[0].verbs[1]"), Some((14, 9)));
        // A field that is not written: its parent.
        assert_eq!(at("spec.allow.max_session_ttl"), Some((6, 3)));
        // `deny.logins` is not `allow.logins`.
        assert_eq!(at("spec.deny.logins"), Some((15, 3)));
        assert_eq!(at("nothing.here"), None);
    }
}
