//! Reading config files: the I/O around `jumpgate_types::Config`.

use anyhow::{Context, Result};
use jumpgate_types::Config;
use std::io::Read;
use std::path::Path;

/// Reads and validates a config file (`-` for standard input). The error already names
/// the file, the field and the reason.
pub fn load(path: &Path) -> Result<Config> {
    let (name, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the config from standard input")?;
        ("<stdin>".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read config file {} (create one with `jumpgate configure > {}`)",
                path.display(),
                path.display()
            )
        })?;
        (path.display().to_string(), text)
    };
    Ok(Config::from_yaml(&name, &text)?)
}
