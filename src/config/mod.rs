//! Pipeline YAML → validated [`Pipeline`] (DESIGN §2).
//!
//! Two phases: the YAML is read into a tree whose nodes keep their line and column
//! ([`node`]), strings are interpolated from the environment, then [`compile`] walks the tree
//! and checks everything, collecting every problem instead of stopping at the first.

mod compile;
mod interp;
mod node;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::pipeline::Pipeline;

/// One problem in a pipeline file, located as precisely as the YAML allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Key path such as `accounts[1].app_secret`; empty for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a pipeline file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates a pipeline file, interpolating from the process environment.
pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::InvalidData => "the file is not valid UTF-8 text".to_owned(),
            _ => lowercase_first(&e.to_string()),
        };
        ConfigError {
            diagnostics: vec![Diagnostic {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: String::new(),
                message: format!("cannot read pipeline file {}: {why}", path.display()),
            }],
        }
    })?;
    load_str(path, &text, &|name| std::env::var(name).ok())
}

/// Validates pipeline text; `path` is only used in messages and as `Pipeline::source`.
pub fn load_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigError> {
    compile::compile(path, text, env)
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
