//! The one place the tracing subscriber is set up, from `jumpgate.log`.

use anyhow::{Context, Result};
use jumpgate_types::config::{LogConfig, LogFormat, LogOutput, LogSeverity};
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Installs the global subscriber. `debug` (the `-d` flag) raises the level to debug.
pub fn init(config: &LogConfig, debug: bool) -> Result<()> {
    let severity = if debug {
        LogSeverity::Debug.max(config.severity)
    } else {
        config.severity
    };
    let level = match severity {
        LogSeverity::Error => "error",
        LogSeverity::Warn => "warn",
        LogSeverity::Info => "info",
        LogSeverity::Debug => "debug",
        LogSeverity::Trace => "trace",
    };
    // Our crates at the configured level; chatty dependencies one step quieter.
    let filter = EnvFilter::try_new(format!(
        "{level},h2=warn,hyper=warn,tower=warn,tonic=warn,etcd_client=warn"
    ))
    .context("building the log filter")?;
    let writer = match &config.output {
        LogOutput::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogOutput::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogOutput::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            BoxMakeWriter::new(Mutex::new(file))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let installed = match config.format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}
