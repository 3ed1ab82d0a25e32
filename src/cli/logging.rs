//! Logging on stderr: level from -v/-q (or WXCUBE_LOG), text or JSON, through the progress bars.

use std::io::IsTerminal;

use super::args::{Common, LogFormat};
use crate::progress;

pub(super) fn init_logging(c: &Common) {
    let level = if c.quiet {
        "error"
    } else {
        match c.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WXCUBE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},hyper=warn,reqwest=warn,h2=warn,rustls=warn"
        ))
    });
    // Colour only on a terminal: logs in a file or a collector must be plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_writer(progress::LogLine::default)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_target(false);
    let _ = match c.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
