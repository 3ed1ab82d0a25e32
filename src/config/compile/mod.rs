//! The located YAML tree → `Pipeline`, with every problem collected: the walk and its
//! typed readers here, one module per section of the file.

mod accounts;
mod api;
mod auth;
mod date_spec;
mod limits;
mod output;
mod reports;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use self::auth::AUTH_KEYS;
use super::interp::interpolate;
use super::node::{child_path, Kind, Node, NodeError};
use super::{lowercase_first, ConfigError, Diagnostic};
use crate::pipeline::Pipeline;
use crate::suggest;

const ROOT_KEYS: &[&str] = &[
    "version", "name", "api", "auth", "accounts", "reports", "dates", "output", "limits",
];

const SUPPORTED_VERSION: i128 = 1;
const NAME_MAX_CHARS: usize = 128;

pub(super) fn compile(
    file: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigError> {
    let mut c = Compiler {
        file: file.to_path_buf(),
        env,
        diagnostics: Vec::new(),
        secrets: Vec::new(),
    };
    let pipeline = c.run(text);
    c.finish(pipeline)
}

struct Compiler<'a> {
    /// The file messages name (the pipeline, or an accounts file while it is read).
    file: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    diagnostics: Vec<Diagnostic>,
    /// App secrets seen, scrubbed from every message as a last line of defence.
    secrets: Vec<String>,
}

/// The entries of a mapping whose keys have been checked against the allowed set.
struct Fields<'n> {
    path: String,
    /// Where "missing key" errors point: the parent's key, or the list item.
    anchor: Option<&'n Node>,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
    fn child(&self, name: &str) -> String {
        join(&self.path, name)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// How a message shows a value: quoted, unless it came from the environment.
fn shown(node: &Node, text: &str) -> String {
    if node.from_env {
        "the value from the environment".to_owned()
    } else {
        format!("\"{text}\"")
    }
}

impl<'a> Compiler<'a> {
    fn error(&mut self, at: Option<&Node>, key: &str, message: impl Into<String>) {
        let (line, column) = match at {
            Some(n) if n.line > 0 => (Some(n.line), Some(n.column)),
            _ => (None, None),
        };
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn type_error(&mut self, n: &Node, key: &str, expected: &str) {
        if n.kind != Kind::Invalid {
            let found = n.kind.describe();
            self.error(Some(n), key, format!("expected {expected}, found {found}"));
        }
    }

    fn finish(mut self, pipeline: Option<Pipeline>) -> Result<Pipeline, ConfigError> {
        match pipeline {
            Some(p) if self.diagnostics.is_empty() => return Ok(p),
            None if self.diagnostics.is_empty() => {
                self.error(None, "", "the pipeline is invalid");
            }
            _ => {}
        }
        self.secrets.retain(|s| s.len() >= 4);
        for d in &mut self.diagnostics {
            for s in &self.secrets {
                if d.message.contains(s.as_str()) {
                    d.message = d.message.replace(s.as_str(), "***");
                }
            }
        }
        // File order; within a line, the order found. Unlocated ones (the file as a
        // whole, missing top-level keys) first.
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(ConfigError {
            diagnostics: self.diagnostics,
        })
    }

    fn run(&mut self, text: &str) -> Option<Pipeline> {
        let options = serde_saphyr::options! {
            // YAML 1.1's yes/no/on/off/y/n as booleans surprise more than they help.
            strict_booleans: true,
            with_snippet: false,
        };
        let mut root: Node = match serde_saphyr::from_str_with_options(text, options) {
            Ok(n) => n,
            Err(e) => {
                self.yaml_error(&e);
                return None;
            }
        };
        if root.kind == Kind::Null {
            self.error(
                None,
                "",
                "the file is empty; a pipeline needs version, name, accounts, reports, dates and output",
            );
            return None;
        }
        self.interpolate_tree(&mut root, "");
        self.root(&root)
    }

    fn yaml_error(&mut self, e: &serde_saphyr::Error) {
        use serde_saphyr::MessageFormatter;
        let plain = e.without_snippet();
        let text = serde_saphyr::UserMessageFormatter.format_message(plain);
        let mut message = format!(
            "invalid YAML: {}",
            lowercase_first(text.trim_end_matches('.'))
        );
        if message.contains("flow") {
            message.push_str("; inside [ ] and { }, quote values that contain ${...} or , [ ] { }");
        }
        if message.contains("mapping values are not allowed") {
            message.push_str("; check the indentation, or quote a value that contains \": \"");
        }
        let (line, column) = match e.location() {
            Some(l) if l.line() > 0 => (Some(l.line() as usize), Some(l.column() as usize)),
            _ => (None, None),
        };
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            key: String::new(),
            message,
        });
    }

    fn interpolate_tree(&mut self, n: &mut Node, path: &str) {
        match &mut n.kind {
            Kind::Str(s) => match interpolate(s, self.env) {
                Ok((value, true)) => {
                    *s = value;
                    n.from_env = true;
                }
                Ok((_, false)) => {}
                Err(errors) => {
                    for e in errors {
                        self.error(Some(n), path, e.message());
                    }
                    n.kind = Kind::Invalid;
                }
            },
            Kind::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_tree(item, &format!("{path}[{i}]"));
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    let p = child_path(path, k);
                    self.interpolate_tree(v, &p);
                }
            }
            _ => {}
        }
    }

    /// Checks that `n` is a mapping with only `allowed` keys; reports every unknown key.
    fn fields<'n>(
        &mut self,
        n: &'n Node,
        path: &str,
        anchor: Option<&'n Node>,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &n.kind else {
            self.type_error(
                n,
                path,
                &format!("a mapping with keys {}", allowed.join(", ")),
            );
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let Kind::Str(name) = &k.kind else {
                self.error(
                    Some(k),
                    &child_path(path, k),
                    format!("keys must be names, found {}", k.kind.describe()),
                );
                continue;
            };
            if allowed.contains(&name.as_str()) {
                out.push((name.as_str(), v));
            } else {
                let hint = suggest::hint(name, allowed.iter().copied());
                let message = if hint.is_empty() {
                    format!(
                        "unknown key \"{name}\"; valid keys are {}",
                        allowed.join(", ")
                    )
                } else {
                    format!("unknown key \"{name}\"{hint}")
                };
                self.error(Some(k), &join(path, name), message);
            }
        }
        Some(Fields {
            path: path.to_owned(),
            anchor,
            entries: out,
        })
    }

    fn require<'n>(&mut self, f: &Fields<'n>, name: &str) -> Option<&'n Node> {
        let v = f.get(name);
        if v.is_none() {
            self.error(f.anchor, &f.child(name), "required key is missing");
        }
        v
    }

    /// A string; integers are accepted as their digits (an app id or a name may be all
    /// digits, and YAML would read it as a number).
    fn string<'n>(&mut self, n: &'n Node, path: &str) -> Option<Cow<'n, str>> {
        match &n.kind {
            Kind::Str(s) => Some(Cow::Borrowed(s.as_str())),
            Kind::Int(i) => Some(Cow::Owned(i.to_string())),
            _ => {
                self.type_error(n, path, "a string");
                None
            }
        }
    }

    fn integer(&mut self, n: &Node, path: &str) -> Option<i128> {
        match &n.kind {
            Kind::Int(i) => Some(*i),
            // `${VAR}` yields text; a number from the environment is still a number.
            Kind::Str(s) if n.from_env => match s.trim().parse::<i128>() {
                Ok(i) => Some(i),
                Err(_) => {
                    self.error(
                        Some(n),
                        path,
                        "expected an integer, but the environment variable holds something else",
                    );
                    None
                }
            },
            // YAML reads integers too large for 64 bits as floats.
            Kind::Float(x) if x.is_finite() && x.abs() >= 9.0e18 => {
                Some(if *x > 0.0 { i128::MAX } else { i128::MIN })
            }
            _ => {
                self.type_error(n, path, "an integer");
                None
            }
        }
    }

    fn boolean(&mut self, n: &Node, path: &str) -> Option<bool> {
        match &n.kind {
            Kind::Bool(b) => Some(*b),
            Kind::Str(s) if n.from_env && matches!(s.trim(), "true" | "false") => {
                Some(s.trim() == "true")
            }
            _ => {
                self.type_error(n, path, "a boolean (true or false)");
                None
            }
        }
    }

    fn bounded(&mut self, n: &Node, path: &str, lo: u32, hi: u32) -> Option<u32> {
        let i = self.integer(n, path)?;
        match u32::try_from(i) {
            Ok(v) if (lo..=hi).contains(&v) => Some(v),
            _ => {
                let found = if n.from_env || !matches!(n.kind, Kind::Int(_)) {
                    String::new()
                } else {
                    format!(", found {i}")
                };
                self.error(
                    Some(n),
                    path,
                    format!("must be between {lo} and {hi}{found}"),
                );
                None
            }
        }
    }

    fn root(&mut self, root: &Node) -> Option<Pipeline> {
        let f = self.fields(root, "", None, ROOT_KEYS)?;

        if let Some(v) = self.require(&f, "version") {
            if let Some(i) = self.integer(v, "version") {
                if i != SUPPORTED_VERSION {
                    self.error(
                        Some(v),
                        "version",
                        format!("unsupported version {i}; this wxcube reads version {SUPPORTED_VERSION}"),
                    );
                }
            }
        }
        let name = self.require(&f, "name").and_then(|n| self.pipeline_name(n));
        let api = self.api(f.get("api"), key_node(root, "api"));
        let auth_default = f.get("auth");
        let accounts = self
            .require(&f, "accounts")
            .and_then(|n| self.accounts_any(n, auth_default));
        let reports = self.require(&f, "reports").and_then(|n| self.reports(n));
        let dates = self
            .require(&f, "dates")
            .and_then(|n| self.dates(n, key_node(root, "dates")));
        let output = self
            .require(&f, "output")
            .and_then(|n| self.output(n, key_node(root, "output")));
        let limits = self.limits(f.get("limits"), key_node(root, "limits"));

        if let Some(a) = auth_default {
            // Checked on its own too, so an unused default still gets its errors.
            let _ = self.fields(a, "auth", key_node(root, "auth"), AUTH_KEYS);
        }
        Some(Pipeline {
            name: name?,
            source: self.file.to_path_buf(),
            api: api?,
            accounts: accounts?,
            reports: reports?,
            dates: dates?,
            output: output?,
            limits: limits?,
        })
    }

    fn pipeline_name(&mut self, n: &Node) -> Option<String> {
        let s = self.string(n, "name")?;
        let chars = s.chars().count();
        if s.trim().is_empty() {
            self.error(Some(n), "name", "must not be empty");
            None
        } else if chars > NAME_MAX_CHARS {
            self.error(
                Some(n),
                "name",
                format!("is {chars} characters long; at most {NAME_MAX_CHARS} are allowed"),
            );
            None
        } else {
            Some(s.into_owned())
        }
    }

    /// Rephrases serde's messages in this module's terms.
    fn serde_error(&mut self, e: NodeError) {
        let path = e.path.unwrap_or_default();
        let (key, message) = if let Some(rest) = e.message.strip_prefix("unknown field `") {
            let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let hint = suggest::hint(name, expected.iter().copied());
            let message = if !hint.is_empty() {
                format!("unknown key \"{name}\"{hint}")
            } else if expected.is_empty() {
                format!("unknown key \"{name}\"")
            } else {
                format!(
                    "unknown key \"{name}\"; valid keys are {}",
                    expected.join(", ")
                )
            };
            (path, message)
        } else if let Some(rest) = e.message.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or(rest);
            (join(&path, name), "required key is missing".to_owned())
        } else {
            (
                path,
                lowercase_first(e.message.trim_end_matches('.')).replace('`', "\""),
            )
        };
        self.diagnostics.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: (e.line > 0).then_some(e.line),
            column: (e.line > 0).then_some(e.column),
            key,
            message,
        });
    }

    fn choice(
        &mut self,
        n: &Node,
        key: &str,
        what: &str,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let s = self.string(n, key)?;
        if let Some(o) = options.iter().find(|o| **o == s) {
            return Some(o);
        }
        let hint = if n.from_env {
            String::new()
        } else {
            suggest::hint(&s, options.iter().copied())
        };
        let (last, rest) = options.split_last()?;
        self.error(
            Some(n),
            key,
            format!(
                "{} is not a {what}; expected {} or {last}{hint}",
                shown(n, &s),
                rest.join(", ")
            ),
        );
        None
    }
}

/// The key node of an entry, for errors about a section as a whole.
fn key_node<'n>(map: &'n Node, name: &str) -> Option<&'n Node> {
    match &map.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.kind, Kind::Str(s) if s == name))
            .map(|(k, _)| k),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
