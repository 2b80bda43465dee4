//! Shell completions and man pages, generated from the programs' clap definitions so
//! they can never disagree with the binaries.

use crate::programs::{self, Program};
use anyhow::{Context, Result};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};
use std::path::{Path, PathBuf};

/// The shells completions are made for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// What a generated file is, which decides where it is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Completion(Shell),
    /// A man page of section 1.
    Man,
}

/// One generated file.
#[derive(Debug)]
pub struct Asset {
    pub kind: Kind,
    /// The file's name where it is installed: `jsh` (bash), `_jsh` (zsh), `jsh.fish`,
    /// `jctl-users-add.1`.
    pub file_name: String,
    pub contents: Vec<u8>,
}

/// Every completion script and man page of every program.
pub fn generate() -> Result<Vec<Asset>> {
    let mut assets = Vec::new();
    for program in programs::all() {
        for shell in SHELLS {
            assets.push(completion(&program, shell));
        }
        man_pages(&program, &mut assets)?;
    }
    Ok(assets)
}

/// Writes [`generate`]'s files under `dir` (completions/SHELL/, man/man1/) and returns
/// their paths.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for asset in generate()? {
        let sub = match asset.kind {
            Kind::Completion(shell) => format!("completions/{shell}"),
            Kind::Man => "man/man1".to_string(),
        };
        let folder = dir.join(sub);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let path = folder.join(&asset.file_name);
        std::fs::write(&path, &asset.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn completion(program: &Program, shell: Shell) -> Asset {
    let mut command = (program.command)();
    let mut contents = Vec::new();
    clap_complete::generate(shell, &mut command, program.name, &mut contents);
    // The names each shell's completion directory expects (bash-completion loads
    // completions/NAME when NAME is first completed).
    let file_name = match shell {
        Shell::Zsh => format!("_{}", program.name),
        Shell::Fish => format!("{}.fish", program.name),
        _ => program.name.to_string(),
    };
    Asset {
        kind: Kind::Completion(shell),
        file_name,
        contents,
    }
}

/// `NAME.1` and one page per visible subcommand, at every depth (`jctl-users-add.1`),
/// as `git` has them: the top page lists the subcommands, each names its parent.
fn man_pages(program: &Program, assets: &mut Vec<Asset>) -> Result<()> {
    // No `help` pseudo-subcommand: it would get pages of its own.
    let mut command = (program.command)().disable_help_subcommand(true);
    command.build();
    let version = command.get_version().unwrap_or_default().to_string();
    let mut pending = vec![(command, None::<String>)];
    while let Some((command, parent)) = pending.pop() {
        let page_name = command
            .get_display_name()
            .unwrap_or_else(|| command.get_name())
            .to_string();
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            pending.push((sub.clone(), Some(page_name.clone())));
        }
        let contents = render_page(program, command, parent.as_deref(), &version)
            .with_context(|| format!("rendering the man page {page_name}.1"))?;
        assets.push(Asset {
            kind: Kind::Man,
            file_name: format!("{page_name}.1"),
            contents,
        });
    }
    Ok(())
}

/// clap_mangen's sections, with the program's examples under EXAMPLES (clap_mangen
/// would title them EXTRA), then FILES, ENVIRONMENT (top page) and SEE ALSO.
fn render_page(
    program: &Program,
    command: clap::Command,
    parent: Option<&str>,
    version: &str,
) -> std::io::Result<Vec<u8>> {
    let has_options = command.get_arguments().any(|arg| !arg.is_hide_set());
    let has_subcommands = command.get_subcommands().any(|sub| !sub.is_hide_set());
    let examples = command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
        .map(|text| text.to_string());
    let man = Man::new(command)
        .source(format!("Jumpgate {version}"))
        .manual("Jumpgate Manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if has_options {
        man.render_options_section(&mut out)?;
    }
    if has_subcommands {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::new();
    if let Some(examples) = examples {
        examples_section(&mut roff, &examples);
    }
    if parent.is_none() {
        definition_list(&mut roff, "FILES", program.files, |path| italic(path));
        definition_list(&mut roff, "ENVIRONMENT", program.environment, |name| {
            bold(name)
        });
    }
    see_also(&mut roff, program.name, parent);
    roff.to_writer(&mut out)?;
    Ok(out)
}

/// The examples of an `after_help` text, kept as typed (commands line by line); a
/// heading line such as "Examples:" is dropped, the section says it.
fn examples_section(roff: &mut Roff, text: &str) {
    let mut lines = text.lines().peekable();
    if lines
        .peek()
        .is_some_and(|first| first.trim_start().starts_with("Example"))
    {
        if let Some(heading) = lines.next() {
            // "Example (seed 000's SQLite pair moving to PostgreSQL):" keeps its note.
            let note = heading
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map(|(note, _)| note.trim());
            roff.control("SH", ["EXAMPLES"]);
            if let Some(note) = note {
                roff.text([roman(format!("{note}:"))]);
            }
        }
    } else {
        roff.control("SH", ["NOTES"]);
    }
    roff.control("PP", [])
        .control("nf", [])
        .control("RS", ["4"]);
    for line in lines {
        roff.text([roman(line.trim_start())]);
    }
    roff.control("RE", []).control("fi", []);
}

fn definition_list(
    roff: &mut Roff,
    heading: &str,
    entries: &[(&str, &str)],
    term: impl Fn(&str) -> clap_mangen::roff::Inline,
) {
    if entries.is_empty() {
        return;
    }
    roff.control("SH", [heading]);
    for (name, text) in entries {
        roff.control("TP", []);
        roff.text([term(name)]);
        roff.text([roman(*text)]);
    }
}

/// The parent page for a subcommand; the other programs for a top page.
fn see_also(roff: &mut Roff, program: &str, parent: Option<&str>) {
    let mut pages: Vec<String> = match parent {
        Some(parent) => vec![parent.to_string()],
        None => programs::all()
            .iter()
            .map(|other| other.name.to_string())
            .filter(|other| other != program)
            .collect(),
    };
    if parent.is_none() && program == "jsh" {
        pages.push("ssh".to_string());
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (index, page) in pages.iter().enumerate() {
        if index > 0 {
            line.push(roman(", "));
        }
        line.push(bold(page.as_str()));
        line.push(roman("(1)"));
    }
    roff.text(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_has_its_completions_and_a_page_per_subcommand() {
        let assets = generate().unwrap();
        let names: Vec<&str> = assets.iter().map(|a| a.file_name.as_str()).collect();
        for name in [
            "jumpgate",
            "_jumpgate",
            "jumpgate.fish",
            "jumpgate.1",
            "jumpgate-start.1",
            "jumpgate-backup-create.1",
            "jctl.1",
            "jctl-users-add.1",
            "_jctl",
            "jsh",
            "jsh.1",
            "jsh-ssh.1",
            "jsh-proxy-ssh.1",
            "jsh.fish",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        // The help pseudo-subcommand gets no page.
        assert!(
            !names.iter().any(|name| name.contains("-help")),
            "{names:?}"
        );
    }

    #[test]
    fn a_subcommand_page_shows_its_full_command_line_and_names_its_parent() {
        let assets = generate().unwrap();
        let page = assets
            .iter()
            .find(|a| a.file_name == "jctl-users-add.1")
            .map(|a| String::from_utf8(a.contents.clone()).unwrap())
            .unwrap();
        assert!(page.contains(".TH jctl-users-add 1 "), "{page}");
        assert!(page.contains("\\fBjctl users add\\fR"), "{page}");
        assert!(page.contains("\\fBjctl\\-users\\fR(1)"), "{page}");
    }

    #[test]
    fn examples_keep_their_lines_and_lose_the_heading() {
        let mut roff = Roff::new();
        examples_section(&mut roff, "Examples:\n  jsh ls\n  jsh ssh root@web-1");
        let text = roff.to_roff();
        assert!(text.starts_with(".SH EXAMPLES\n"), "{text}");
        assert!(text.contains("\njsh ls\njsh ssh root@web\\-1\n"), "{text}");
        assert!(!text.contains("Examples:"), "{text}");
    }
}
