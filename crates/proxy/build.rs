//! Embeds the web UI's built assets (`web/dist`, committed: see docs/web.md) into the proxy.
//!
//! Writes `$OUT_DIR/web_assets.rs`: the list of every file under `web/dist` as
//! `(path relative to web/dist, include_bytes!(file))`, sorted by path. `include_bytes!`
//! makes cargo rebuild when a file changes; the `rerun-if-changed` on the directory makes
//! it rerun this script when files are added or removed (a new build's hashed names).
//! No npm here: a fresh clone builds with cargo alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let dist = manifest.join("../../web/dist");
    println!("cargo::rerun-if-changed={}", dist.display());
    if !dist.is_dir() {
        return Err(format!(
            "{} is missing: the web UI's built assets are committed; restore them with \
             `git checkout -- web/dist`, or rebuild them with `npm ci && npm run build` in web/ \
             (docs/web.md)",
            dist.display()
        )
        .into());
    }
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files)?;
    files.sort();
    let mut list = String::from("&[\n");
    for (relative, absolute) in &files {
        writeln!(list, "    ({relative:?}, include_bytes!({absolute:?})),")?;
    }
    list.push_str("]\n");
    fs::write(
        PathBuf::from(env::var("OUT_DIR")?).join("web_assets.rs"),
        list,
    )?;
    Ok(())
}

/// Every regular file under `dir`, as (path relative to `root` with `/` separators,
/// absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> Result<(), Error> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(root, &path, files)?;
        } else if kind.is_file() {
            let relative = path
                .strip_prefix(root)?
                .components()
                .map(|part| part.as_os_str().to_str().ok_or("a file name is not UTF-8"))
                .collect::<Result<Vec<_>, _>>()?
                .join("/");
            let absolute = fs::canonicalize(&path)?
                .to_str()
                .ok_or("a path is not UTF-8")?
                .to_string();
            files.push((relative, absolute));
        }
    }
    Ok(())
}
