//! The located YAML tree → `Pipeline`, with every problem collected.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;

use super::interp::interpolate;
use super::node::{child_path, Kind, Node, NodeDe, NodeError};
use super::suggest;
use super::{lowercase_first, ConfigError, Diagnostic};
use crate::catalog::{self, Report};
use crate::dates;
use crate::pipeline::{
    Account, Api, Auth, Compression, DateRef, DateSpec, Limits, Output, Partition, Pipeline, Region,
};
use crate::secret::Secret;
use crate::sim::SimConfig;

const ROOT_KEYS: &[&str] = &[
    "version", "name", "api", "auth", "accounts", "reports", "dates", "output", "limits",
];
const API_KEYS: &[&str] = &["base_url", "allow_plain_http", "region", "simulator"];
const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "app_id",
    "app_secret",
    "auth",
    "region",
    "access_token",
    "authorizer_refresh_token",
];
const ACCOUNTS_FILE_KEYS: &[&str] = &["file"];
const AUTH_KEYS: &[&str] = &[
    "type",
    "command",
    "timeout_seconds",
    "access_token",
    "component_appid",
    "component_appsecret",
    "component_verify_ticket",
    "authorizer_refresh_token",
];
const AUTH_TYPES: &[&str] = &["stable_token", "classic", "static", "command", "component"];
const DATES_KEYS: &[&str] = &["days_back", "start", "end"];
const DATE_REF_KEYS: &[&str] = &["days_back"];
const OUTPUT_KEYS: &[&str] = &["uri", "partition", "compression"];
/// Each limit and its cap: beyond these a value is a typo, not a wish (WeChat's own
/// limits are far lower).
const LIMIT_KEYS: &[(&str, u32)] = &[
    ("requests_per_second", 1_000),
    ("max_in_flight", 256),
    ("global_requests_per_second", 10_000),
    ("daily_calls_per_report", 100_000),
];

const SUPPORTED_VERSION: i128 = 1;
/// A token command's time to answer, and the most a pipeline may give it.
const COMMAND_TIMEOUT_SECONDS: u32 = 60;
const COMMAND_TIMEOUT_MAX_SECONDS: u32 = 3600;
const NAME_MAX_CHARS: usize = 128;
const ACCOUNT_NAME_MAX_CHARS: usize = 64;
const MAX_DAYS_BACK: u32 = 3650;
const DATE_FORMS: &str = "a date as YYYY-MM-DD or { days_back: N }";

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

    fn api(&mut self, n: Option<&Node>, anchor: Option<&Node>) -> Option<Api> {
        let n = match n {
            None => return Some(Api::Region(Region::Default)),
            Some(n) if n.kind == Kind::Null => return Some(Api::Region(Region::Default)),
            Some(n) => n,
        };
        let f = self.fields(n, "api", anchor, API_KEYS)?;
        let base = f.get("base_url");
        let sim = f.get("simulator");
        let region = f.get("region");
        let set = [base, sim, region].iter().filter(|x| x.is_some()).count();
        if set > 1 {
            self.error(
                anchor.or(Some(n)),
                "api",
                "set one of base_url, region or simulator, not several",
            );
        }
        let plain = match f.get("allow_plain_http") {
            Some(v) => match self.boolean(v, "api.allow_plain_http") {
                Some(true) if base.is_none() => {
                    self.error(
                        Some(v),
                        "api.allow_plain_http",
                        "is only used with an http:// base_url",
                    );
                    false
                }
                Some(b) => b,
                None => false,
            },
            None => false,
        };
        let base = base.map(|b| self.base_url(b, plain));
        let sim = sim.map(|s| self.simulator(s));
        let region = region.map(|r| self.region(r, "api.region"));
        match (base, sim, region) {
            (Some(b), None, None) => b.map(Api::BaseUrl),
            (None, Some(s), None) => s.map(|c| Api::Simulator(Box::new(c))),
            (None, None, Some(r)) => r.map(Api::Region),
            (None, None, None) => Some(Api::Region(Region::Default)),
            _ => None,
        }
    }

    /// `plain`: the pipeline allows http:// to a host other than loopback.
    fn base_url(&mut self, n: &Node, plain: bool) -> Option<String> {
        let key = "api.base_url";
        let s = self.string(n, key)?;
        let http = s.strip_prefix("http://");
        let problem = match s.strip_prefix("https://").or(http) {
            None => Some("expected an http:// or https:// URL"),
            Some(rest) if rest.split('/').next().unwrap_or("").is_empty() => {
                Some("the URL has no host")
            }
            // The app secret and the access tokens travel in these requests.
            Some(rest) if http.is_some() && !plain && !loopback(rest) => Some(
                "plain http:// would send the app secret and access tokens unencrypted; use https://, or set api.allow_plain_http: true for a trusted network (loopback hosts need neither)",
            ),
            Some(_) if s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                Some("the URL must not contain spaces")
            }
            Some(_) if s.contains(['?', '#']) => Some(
                "the URL must not have a query or fragment; wxcube adds the paths and parameters",
            ),
            Some(_) => None,
        };
        match problem {
            Some(p) => {
                self.error(Some(n), key, p);
                None
            }
            None => Some(s.trim_end_matches('/').to_owned()),
        }
    }

    fn simulator(&mut self, n: &Node) -> Option<SimConfig> {
        let key = "api.simulator";
        if n.has_invalid() {
            return None;
        }
        let empty;
        let node = match n.kind {
            Kind::Null => {
                empty = Node {
                    kind: Kind::Map(Vec::new()),
                    ..n.clone()
                };
                &empty
            }
            Kind::Map(_) => n,
            _ => {
                self.type_error(n, key, "a mapping of simulator settings");
                return None;
            }
        };
        match SimConfig::deserialize(NodeDe {
            node,
            path: key.to_owned(),
        }) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                self.serde_error(e);
                None
            }
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

    fn accounts(&mut self, n: &Node, auth_default: Option<&Node>) -> Option<Vec<Account>> {
        let Kind::Seq(items) = &n.kind else {
            self.type_error(
                n,
                "accounts",
                "a list of accounts (or { file: accounts.csv })",
            );
            return None;
        };
        if items.is_empty() {
            self.error(Some(n), "accounts", "must list at least one account");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            match self.account(item, &format!("accounts[{i}]"), &mut seen, auth_default) {
                Some(a) => out.push(a),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn account(
        &mut self,
        item: &Node,
        path: &str,
        seen: &mut HashMap<String, usize>,
        auth_default: Option<&Node>,
    ) -> Option<Account> {
        let f = self.fields(item, path, Some(item), ACCOUNT_KEYS)?;
        let name = self.require(&f, "name").and_then(|n| {
            let key = f.child("name");
            let name = self.account_name(n, &key)?;
            if let Some(first) = seen.get(&name) {
                let message = format!(
                    "duplicate account name {} (first used at line {first})",
                    shown(n, &name)
                );
                self.error(Some(n), &key, message);
                return None;
            }
            seen.insert(name.clone(), n.line);
            Some(name)
        });
        let app_id = self.require(&f, "app_id").and_then(|n| {
            let key = f.child("app_id");
            let s = self.string(n, &key)?;
            if s.trim().is_empty() {
                self.error(Some(n), &key, "must not be empty");
                None
            } else {
                Some(s.into_owned())
            }
        });
        let region = f.get("region").map(|n| self.region(n, &f.child("region")));
        let auth_node = f.get("auth").or(auth_default);
        let auth_path = if f.get("auth").is_some() {
            f.child("auth")
        } else {
            "auth".to_owned()
        };
        let auth = self.auth(auth_node, &auth_path, &f, item);
        let app_secret = match (&auth, f.get("app_secret")) {
            (Some(Auth::StableToken | Auth::Classic), None) => {
                self.require(&f, "app_secret");
                None
            }
            (_, Some(n)) => self.secret(n, &f.child("app_secret")),
            (_, None) => Some(Secret::new(String::new())),
        };
        Some(Account {
            name: name?,
            app_id: app_id?,
            app_secret: app_secret?,
            auth: auth?,
            region: match region {
                Some(r) => Some(r?),
                None => None,
            },
        })
    }

    /// A non-empty secret value, remembered so no message can echo it.
    fn secret(&mut self, n: &Node, key: &str) -> Option<Secret> {
        let s = self.string(n, key)?;
        if s.trim().is_empty() {
            self.error(Some(n), key, "must not be empty");
            None
        } else {
            self.secrets.push(s.clone().into_owned());
            Some(Secret::new(s.into_owned()))
        }
    }

    fn region(&mut self, n: &Node, key: &str) -> Option<Region> {
        let s = self.string(n, key)?;
        match Region::parse(&s) {
            Some(r) => Some(r),
            None => {
                let hint = suggest::hint(&s, Region::NAMES.iter().copied());
                let shown = shown(n, &s);
                self.error(
                    Some(n),
                    key,
                    format!(
                        "unknown region {shown}{hint}; valid regions are {}",
                        Region::NAMES.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// The account's token source: its own `auth`, else the pipeline's, else stable_token.
    /// `access_token` and `authorizer_refresh_token` may sit on the account itself, so one
    /// pipeline-level `auth` serves many accounts.
    fn auth(&mut self, n: Option<&Node>, path: &str, acct: &Fields, item: &Node) -> Option<Auth> {
        let Some(n) = n else {
            for k in ["access_token", "authorizer_refresh_token"] {
                if let Some(v) = acct.get(k) {
                    self.error(
                        Some(v),
                        &acct.child(k),
                        format!("{k} is only used with auth type static or component"),
                    );
                }
            }
            return Some(Auth::StableToken);
        };
        let f = self.fields(n, path, Some(n), AUTH_KEYS)?;
        let type_node = self.require(&f, "type")?;
        let kind = self.string(type_node, &f.child("type"))?.into_owned();
        // A value from the account wins over the shared auth block.
        let pick = |name: &str| {
            acct.get(name)
                .map(|v| (v, acct.child(name)))
                .or_else(|| f.get(name).map(|v| (v, f.child(name))))
        };
        let needs = |this: &mut Self, name: &str| -> Option<Secret> {
            match pick(name) {
                Some((v, key)) => this.secret(v, &key),
                None => {
                    this.error(
                        Some(item),
                        &acct.child(name),
                        format!("auth type {kind} needs {name} (on the account or in auth)"),
                    );
                    None
                }
            }
        };
        let unused = |this: &mut Self, names: &[&str]| {
            for name in names {
                if let Some((v, key)) = pick(name) {
                    this.error(
                        Some(v),
                        &key,
                        format!("{name} is not used by auth type {kind}"),
                    );
                }
            }
        };
        match kind.as_str() {
            "stable_token" | "classic" => {
                unused(self, &AUTH_KEYS[1..]);
                Some(if kind == "classic" {
                    Auth::Classic
                } else {
                    Auth::StableToken
                })
            }
            "static" => {
                unused(
                    self,
                    &[
                        "command",
                        "timeout_seconds",
                        "component_appid",
                        "component_appsecret",
                        "component_verify_ticket",
                        "authorizer_refresh_token",
                    ],
                );
                Some(Auth::Static {
                    access_token: needs(self, "access_token")?,
                })
            }
            "command" => {
                unused(
                    self,
                    &[
                        "access_token",
                        "component_appid",
                        "component_appsecret",
                        "component_verify_ticket",
                        "authorizer_refresh_token",
                    ],
                );
                let timeout = match pick("timeout_seconds") {
                    Some((v, key)) => self.bounded(v, &key, 1, COMMAND_TIMEOUT_MAX_SECONDS)?,
                    None => COMMAND_TIMEOUT_SECONDS,
                };
                let c = needs(self, "command")?;
                Some(Auth::Command {
                    command: c,
                    timeout: std::time::Duration::from_secs(u64::from(timeout)),
                })
            }
            "component" => {
                unused(self, &["command", "timeout_seconds", "access_token"]);
                let appid = match pick("component_appid") {
                    Some((v, key)) => self.string(v, &key).map(|s| s.into_owned()),
                    None => {
                        self.error(
                            Some(item),
                            &acct.child("component_appid"),
                            "auth type component needs component_appid (on the account or in auth)",
                        );
                        None
                    }
                };
                let secret = needs(self, "component_appsecret");
                let ticket = needs(self, "component_verify_ticket");
                let refresh = needs(self, "authorizer_refresh_token");
                Some(Auth::Component {
                    component_appid: appid?,
                    component_appsecret: secret?,
                    component_verify_ticket: ticket?,
                    authorizer_refresh_token: refresh?,
                })
            }
            other => {
                let hint = suggest::hint(other, AUTH_TYPES.iter().copied());
                let shown = shown(type_node, other);
                self.error(
                    Some(type_node),
                    &f.child("type"),
                    format!(
                        "unknown auth type {shown}{hint}; valid types are {}",
                        AUTH_TYPES.join(", ")
                    ),
                );
                None
            }
        }
    }

    /// `accounts:` inline, or `accounts: { file: accounts.csv | accounts.yaml }` (a path
    /// relative to the pipeline file), for platforms with hundreds of accounts.
    fn accounts_any(&mut self, n: &Node, auth_default: Option<&Node>) -> Option<Vec<Account>> {
        let has_file = matches!(&n.kind, Kind::Map(e) if e.iter().any(|(k, _)| k.kind == Kind::Str("file".into())));
        if !has_file {
            return self.accounts(n, auth_default);
        }
        let f = self.fields(n, "accounts", Some(n), ACCOUNTS_FILE_KEYS)?;
        let file_node = self.require(&f, "file")?;
        let rel = self.string(file_node, "accounts.file")?.into_owned();
        let path = match self.file.parent() {
            Some(dir) if Path::new(&rel).is_relative() => dir.join(&rel),
            _ => PathBuf::from(&rel),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "no such file".to_owned()
                } else {
                    e.to_string()
                };
                self.error(
                    Some(file_node),
                    "accounts.file",
                    format!("cannot read accounts file {}: {why}", path.display()),
                );
                return None;
            }
        };
        let saved = std::mem::replace(&mut self.file, path.clone());
        let is_csv = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("csv"));
        let tree = if is_csv {
            self.csv_accounts(&text)
        } else {
            let options = serde_saphyr::options! { strict_booleans: true, with_snippet: false };
            match serde_saphyr::from_str_with_options::<Node>(&text, options) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.yaml_error(&e);
                    None
                }
            }
        };
        let out = tree.and_then(|mut t| {
            self.interpolate_tree(&mut t, "accounts");
            self.accounts(&t, auth_default)
        });
        self.file = saved;
        out
    }

    /// A CSV accounts file as the same tree an inline list would be: a header row naming
    /// account keys, then one account per line.
    fn csv_accounts(&mut self, text: &str) -> Option<Node> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let Some((hline, header)) = lines.next() else {
            self.error(
                None,
                "accounts",
                "the accounts file is empty; it needs a header row such as name,app_id,app_secret",
            );
            return None;
        };
        let cols: Vec<String> = header.split(',').map(|c| c.trim().to_owned()).collect();
        let node = |line: usize, column: usize, kind: Kind| Node {
            line,
            column,
            kind,
            from_env: false,
        };
        let mut items = Vec::new();
        for (i, l) in lines {
            let mut entries = Vec::new();
            let mut col = 1;
            let cells: Vec<&str> = l.split(',').collect();
            if cells.len() != cols.len() {
                self.error(
                    Some(&node(i + 1, 1, Kind::Null)),
                    &format!("accounts[{}]", items.len()),
                    format!(
                        "has {} fields; the header (line {}) names {}",
                        cells.len(),
                        hline + 1,
                        cols.len()
                    ),
                );
            }
            for (c, v) in cols.iter().zip(cells) {
                let v = v.trim();
                if !v.is_empty() {
                    entries.push((
                        node(i + 1, col, Kind::Str(c.clone())),
                        node(i + 1, col, Kind::Str(v.to_owned())),
                    ));
                }
                col += v.len() + 1;
            }
            items.push(node(i + 1, 1, Kind::Map(entries)));
        }
        Some(node(hline + 1, 1, Kind::Seq(items)))
    }

    fn account_name(&mut self, n: &Node, key: &str) -> Option<String> {
        let s = self.string(n, key)?;
        let chars = s.chars().count();
        let valid = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        };
        let problem = if s.is_empty() {
            "must not be empty".to_owned()
        } else if chars > ACCOUNT_NAME_MAX_CHARS {
            format!("is {chars} characters long; at most {ACCOUNT_NAME_MAX_CHARS} are allowed")
        } else if !valid(&s) {
            let lower = s.to_ascii_lowercase();
            let hint = if valid(&lower) && !n.from_env {
                format!("; try \"{lower}\"")
            } else {
                String::new()
            };
            format!(
                "account name {} may only contain lowercase letters, digits, _ and - (it names the account= partition){hint}",
                shown(n, &s)
            )
        } else {
            return Some(s.into_owned());
        };
        self.error(Some(n), key, problem);
        None
    }

    fn reports(&mut self, n: &Node) -> Option<Vec<&'static Report>> {
        let names = || std::iter::once("all").chain(catalog::all_names());
        match &n.kind {
            Kind::Str(s) if s == "all" => Some(catalog::active().collect()),
            Kind::Str(s) => {
                let message = if catalog::find(s).is_some() {
                    format!("expected \"all\" or a list of reports; for one report write [{s}]")
                } else {
                    let hint = if n.from_env {
                        String::new()
                    } else {
                        suggest::hint(s, names())
                    };
                    format!(
                        "expected \"all\" or a list of reports, found {}{hint}",
                        shown(n, s)
                    )
                };
                self.error(Some(n), "reports", message);
                None
            }
            Kind::Seq(items) if items.is_empty() => {
                self.error(
                    Some(n),
                    "reports",
                    "must list at least one report, or be \"all\"",
                );
                None
            }
            Kind::Seq(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                let mut seen: HashMap<&'static str, usize> = HashMap::new();
                for (i, item) in items.iter().enumerate() {
                    let key = format!("reports[{i}]");
                    let Some(s) = self.string(item, &key) else {
                        ok = false;
                        continue;
                    };
                    ok &= match catalog::find(&s) {
                        Some(r) => match seen.get(r.id) {
                            Some(first) => {
                                let alias = if *s == *r.id {
                                    String::new()
                                } else {
                                    format!(" (\"{s}\" is {})", r.id)
                                };
                                self.error(
                                    Some(item),
                                    &key,
                                    format!(
                                        "duplicate report {}{alias}, already listed at line {first}",
                                        r.id
                                    ),
                                );
                                false
                            }
                            None => {
                                seen.insert(r.id, item.line);
                                out.push(r);
                                true
                            }
                        },
                        None if s == "all" => {
                            self.error(
                                Some(item),
                                &key,
                                "\"all\" cannot be mixed with report names; write reports: all",
                            );
                            false
                        }
                        None => {
                            let hint = if item.from_env {
                                String::new()
                            } else {
                                suggest::hint(&s, catalog::all_names())
                            };
                            let hint = if hint.is_empty() {
                                "; `wxcube reports` lists them".to_owned()
                            } else {
                                hint
                            };
                            self.error(
                                Some(item),
                                &key,
                                format!("unknown report {}{hint}", shown(item, &s)),
                            );
                            false
                        }
                    };
                }
                ok.then_some(out)
            }
            _ => {
                self.type_error(n, "reports", "\"all\" or a list of reports");
                None
            }
        }
    }

    fn dates(&mut self, n: &Node, anchor: Option<&Node>) -> Option<DateSpec> {
        let f = self.fields(n, "dates", anchor, DATES_KEYS)?;
        let days_back = f.get("days_back");
        let start = f.get("start");
        let end = f.get("end");
        let days_back = days_back.map(|d| self.bounded(d, "dates.days_back", 1, MAX_DAYS_BACK));
        let start_ref = start.map(|s| (s, self.date_ref(s, "dates.start")));
        let end_ref = end.map(|e| (e, self.date_ref(e, "dates.end")));
        match (days_back, start_ref, end_ref) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                self.error(
                    anchor.or(Some(n)),
                    "dates",
                    "use either days_back or start (with an optional end), not both",
                );
                None
            }
            (Some(d), None, None) => d.map(DateSpec::DaysBack),
            (None, Some((_, s)), e) => {
                let (end_node, end) = match e {
                    Some((node, r)) => (Some(node), Some(r?)),
                    None => (None, None),
                };
                let start = s?;
                if let (Some(end), Some(node)) = (end, end_node) {
                    self.check_order(start, end, node)?;
                }
                Some(DateSpec::Range { start, end })
            }
            (None, None, Some((node, _))) => {
                self.error(
                    Some(node),
                    "dates.end",
                    "end needs a start; or use days_back",
                );
                None
            }
            (None, None, None) => {
                self.error(
                    anchor.or(Some(n)),
                    "dates",
                    "expected days_back, or start with an optional end",
                );
                None
            }
        }
    }

    fn check_order(&mut self, start: DateRef, end: DateRef, end_node: &Node) -> Option<()> {
        let message = match (start, end) {
            (DateRef::Abs(s), DateRef::Abs(e)) if e < s => {
                format!("end {} is before start {}", dates::fmt(e), dates::fmt(s))
            }
            (DateRef::DaysBack(s), DateRef::DaysBack(e)) if e > s => {
                format!("end {{ days_back: {e} }} is before start {{ days_back: {s} }}")
            }
            _ => return Some(()),
        };
        self.error(Some(end_node), "dates.end", message);
        None
    }

    fn date_ref(&mut self, n: &Node, key: &str) -> Option<DateRef> {
        match &n.kind {
            Kind::Str(s) => {
                let Some(d) = dates::parse(s.trim()) else {
                    let looks_like_date = s.len() == 10
                        && s.char_indices().all(|(i, c)| {
                            if i == 4 || i == 7 {
                                c == '-'
                            } else {
                                c.is_ascii_digit()
                            }
                        });
                    let message = if looks_like_date {
                        format!("{} is not a calendar date", shown(n, s))
                    } else {
                        format!("expected {DATE_FORMS}, found {}", shown(n, s))
                    };
                    self.error(Some(n), key, message);
                    return None;
                };
                let first = first_data_day();
                if d < first {
                    self.error(
                        Some(n),
                        key,
                        format!(
                            "{} is before {}, the first day WeChat has data for",
                            dates::fmt(d),
                            dates::fmt(first)
                        ),
                    );
                    return None;
                }
                Some(DateRef::Abs(d))
            }
            Kind::Map(_) => {
                let f = self.fields(n, key, Some(n), DATE_REF_KEYS)?;
                let d = self.require(&f, "days_back")?;
                self.bounded(d, &f.child("days_back"), 1, MAX_DAYS_BACK)
                    .map(DateRef::DaysBack)
            }
            _ => {
                self.type_error(n, key, DATE_FORMS);
                None
            }
        }
    }

    fn output(&mut self, n: &Node, anchor: Option<&Node>) -> Option<Output> {
        let f = self.fields(n, "output", anchor, OUTPUT_KEYS)?;
        let uri = self.require(&f, "uri").and_then(|u| {
            let s = self.string(u, "output.uri")?;
            match check_uri(&s, u.from_env) {
                Ok(uri) => Some(uri),
                Err(problem) => {
                    self.error(Some(u), "output.uri", problem);
                    None
                }
            }
        });
        let partition = match f.get("partition") {
            None => Some(Partition::Month),
            Some(p) => self
                .choice(
                    p,
                    "output.partition",
                    "partition",
                    &["day", "month", "year"],
                )
                .map(|c| match c {
                    "day" => Partition::Day,
                    "year" => Partition::Year,
                    _ => Partition::Month,
                }),
        };
        let compression = match f.get("compression") {
            None => Some(Compression::Zstd),
            Some(c) => self
                .choice(
                    c,
                    "output.compression",
                    "compression",
                    &["zstd", "snappy", "none"],
                )
                .map(|c| match c {
                    "snappy" => Compression::Snappy,
                    "none" => Compression::None,
                    _ => Compression::Zstd,
                }),
        };
        Some(Output {
            uri: uri?,
            partition: partition?,
            compression: compression?,
        })
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

    fn limits(&mut self, n: Option<&Node>, anchor: Option<&Node>) -> Option<Limits> {
        let mut limits = Limits::default();
        let n = match n {
            None => return Some(limits),
            Some(n) if n.kind == Kind::Null => return Some(limits),
            Some(n) => n,
        };
        let names: Vec<&str> = LIMIT_KEYS.iter().map(|(k, _)| *k).collect();
        let f = self.fields(n, "limits", anchor, &names)?;
        let mut ok = true;
        for &(name, cap) in LIMIT_KEYS {
            let Some(v) = f.get(name) else { continue };
            match self.bounded(v, &f.child(name), 1, cap) {
                Some(x) => match name {
                    "requests_per_second" => limits.requests_per_second = x,
                    "max_in_flight" => limits.max_in_flight = x,
                    "global_requests_per_second" => limits.global_requests_per_second = x,
                    _ => limits.daily_calls_per_report = x,
                },
                None => ok = false,
            }
        }
        ok.then_some(limits)
    }
}

/// Whether the host of a URL without its scheme is loopback (127.0.0.0/8, ::1, localhost).
fn loopback(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

/// The earliest first data day in the catalogue (2014-12-01): nothing exists before it.
fn first_data_day() -> NaiveDate {
    catalog::REPORTS
        .iter()
        .map(Report::first_day)
        .min()
        .unwrap_or(NaiveDate::MIN)
}

/// A local directory (which need not exist yet) or `s3://bucket/prefix`, normalized
/// without a trailing slash.
fn check_uri(s: &str, from_env: bool) -> Result<String, String> {
    if let Some(rest) = s.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket, from_env)?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err("the S3 prefix has an empty, \".\" or \"..\" segment".to_owned());
        }
        return Ok(if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        });
    }
    if let Some((scheme, _)) = s.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            let scheme = if from_env { "this" } else { scheme };
            return Err(format!(
                "{scheme} URIs are not supported; use a local path or s3://bucket/prefix"
            ));
        }
    }
    if s.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    check_local_dir(Path::new(s), from_env)?;
    Ok(s.to_owned())
}

fn check_bucket(bucket: &str, from_env: bool) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("the S3 URI has no bucket; expected s3://bucket/prefix".to_owned());
    }
    let chars_ok = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    let looks_like_ip = bucket.split('.').count() == 4
        && bucket
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if (3..=63).contains(&bucket.len())
        && chars_ok
        && ends_ok
        && !bucket.contains("..")
        && !looks_like_ip
    {
        return Ok(());
    }
    let name = if from_env {
        "the bucket".to_owned()
    } else {
        format!("\"{bucket}\"")
    };
    Err(format!(
        "{name} is not a valid S3 bucket name: use 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    ))
}

/// The output directory must be creatable later: if it exists it is a writable directory,
/// otherwise its nearest existing ancestor is. Nothing is created here.
fn check_local_dir(path: &Path, from_env: bool) -> Result<(), String> {
    let show = |p: &Path| {
        if from_env {
            "the output path".to_owned()
        } else {
            p.display().to_string()
        }
    };
    let mut candidate = path;
    loop {
        let probe_at = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        match fs::metadata(probe_at) {
            Ok(m) if m.is_dir() => return check_writable(probe_at, from_env),
            Ok(_) if candidate == path => {
                return Err(format!("{} exists and is not a directory", show(path)))
            }
            Ok(_) => {
                let what = if from_env {
                    "a parent of the output path is a file, not a directory".to_owned()
                } else {
                    format!(
                        "{} is a file, so {} cannot be created",
                        probe_at.display(),
                        path.display()
                    )
                };
                return Err(what);
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                match candidate.parent() {
                    Some(parent) => candidate = parent,
                    None => return Ok(()),
                }
            }
            Err(e) => {
                return Err(format!(
                    "cannot access {}: {}",
                    show(probe_at),
                    lowercase_first(&e.to_string())
                ))
            }
        }
    }
}

/// Permission bits do not tell the whole story (root, ACLs, read-only mounts), so this
/// creates and removes an empty file.
fn check_writable(dir: &Path, from_env: bool) -> Result<(), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let probe = dir.join(format!(
        ".wxcube-write-check-{}-{nanos}",
        std::process::id()
    ));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            // The check has answered; a leftover empty file is harmless.
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => {
            let dir = if from_env {
                "a directory of the output path".to_owned()
            } else {
                dir.display().to_string()
            };
            Err(match e.kind() {
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                    format!("{dir} is not writable")
                }
                _ => format!("cannot write to {dir}: {}", lowercase_first(&e.to_string())),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{load, load_str};

    const SECRET: &str = "sk-live-9f8e7d6c5b4a";

    fn minimal(out: &Path) -> String {
        format!(
            "version: 1\nname: t\naccounts:\n  - name: a\n    app_id: wx1\n    app_secret: {SECRET}\nreports: all\ndates:\n  days_back: 3\noutput:\n  uri: {}\n",
            out.display()
        )
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn errors(text: &str, env: &dyn Fn(&str) -> Option<String>) -> ConfigError {
        match load_str(Path::new("p.yaml"), text, env) {
            Ok(p) => panic!("expected errors, loaded {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = load_str(Path::new("p.yaml"), &minimal(dir.path()), &no_env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&p.api, Api::Region(Region::Default)));
        assert_eq!(p.output.partition, Partition::Month);
        assert_eq!(p.output.compression, Compression::Zstd);
        assert_eq!(p.limits, Limits::default());
        assert_eq!(p.dates, DateSpec::DaysBack(3));
        let active: Vec<_> = catalog::active().map(|r| r.id).collect();
        let got: Vec<_> = p.reports.iter().map(|r| r.id).collect();
        assert_eq!(got, active);
        assert_eq!(got.len(), 15);
        assert_eq!(p.accounts[0].app_secret.expose(), SECRET);
    }

    #[test]
    fn null_sections_mean_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!("{}api:\nlimits:\n", minimal(dir.path()));
        let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&p.api, Api::Region(Region::Default)));
        assert_eq!(p.limits, Limits::default());

        let text = format!("{}api:\n  simulator:\n", minimal(dir.path()));
        let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&p.api, Api::Simulator(s) if s.seed == 0));
    }

    #[test]
    fn values_are_normalized() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = minimal(dir.path());
        let with = |extra: &str, uri: &str| {
            let text = base.replace(&dir.path().display().to_string(), uri) + extra;
            load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"))
        };
        let p = with(
            "api:\n  base_url: http://127.0.0.1:9000/\n",
            "s3://my-bucket/wechat/raw/",
        );
        assert!(matches!(&p.api, Api::BaseUrl(u) if u == "http://127.0.0.1:9000"));
        assert_eq!(p.output.uri, "s3://my-bucket/wechat/raw");
        let p = with("", "s3://my.bucket-1");
        assert_eq!(p.output.uri, "s3://my.bucket-1");
        let p = with("api: { simulator: { seed: 7 } }\n", "s3://abc/x");
        assert!(matches!(&p.api, Api::Simulator(s) if s.seed == 7));
    }

    /// Plain http:// only to loopback, unless the pipeline says so; and the command
    /// timeout reaches the `Auth`.
    #[test]
    fn plain_http_needs_loopback_or_an_explicit_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let load = |api: &str| {
            let text = format!("{}{api}", minimal(dir.path()));
            load_str(Path::new("p.yaml"), &text, &no_env)
        };
        for host in [
            "127.0.0.1:9",
            "127.8.9.10",
            "[::1]:80",
            "localhost:8080",
            "LOCALHOST",
        ] {
            let r = load(&format!("api:\n  base_url: http://{host}/x\n"));
            assert!(r.is_ok(), "{host}: {:?}", r.err().map(|e| e.to_string()));
        }
        for host in [
            "10.0.0.1",
            "wx-proxy.internal",
            "[::2]",
            "127.0.0.1.example.com",
            "localhost.evil",
        ] {
            let e = load(&format!("api:\n  base_url: http://{host}\n")).expect_err(host);
            assert!(
                e.to_string().contains("allow_plain_http: true"),
                "{host}: {e}"
            );
        }
        let p = load("api:\n  base_url: http://10.0.0.1:8080\n  allow_plain_http: true\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&p.api, Api::BaseUrl(u) if u == "http://10.0.0.1:8080"));
        let e = load("api:\n  simulator: {}\n  allow_plain_http: true\n").expect_err("misused");
        assert!(
            e.to_string().contains("only used with an http:// base_url"),
            "{e}"
        );

        let text = minimal(dir.path()).replace(
            "    app_secret: {SECRET}\n"
                .replace("{SECRET}", SECRET)
                .as_str(),
            "    auth: { type: command, command: get-token, timeout_seconds: 5 }\n",
        );
        let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            &p.accounts[0].auth,
            Auth::Command { timeout, .. } if timeout.as_secs() == 5
        ));
    }

    #[test]
    fn reports_accept_api_names_and_explicit_legacy_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = minimal(dir.path()).replace(
            "reports: all",
            "reports: [getuserread, user_summary, getarticlesummary]",
        );
        let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<_> = p.reports.iter().map(|r| r.id).collect();
        assert_eq!(ids, ["user_read", "user_summary", "article_summary"]);
    }

    #[test]
    fn interpolation_reaches_every_string_and_numbers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = "version: 1\nname: ${NAME}-$${literal}\naccounts:\n  - name: ${ACCOUNT:-brand}\n    app_id: ${APP_ID}\n    app_secret: ${SECRET}\nreports:\n  - ${REPORT}\ndates:\n  start: ${START}\noutput:\n  uri: ${OUT}/x\n  partition: ${PART:-year}\nlimits:\n  max_in_flight: ${INFLIGHT}\n";
        let out = dir.path().display().to_string();
        let env = |k: &str| {
            Some(match k {
                "NAME" => "n".to_owned(),
                "APP_ID" => "wx9".to_owned(),
                "SECRET" => SECRET.to_owned(),
                "REPORT" => "user_cumulate".to_owned(),
                "START" => "2025-01-31".to_owned(),
                "OUT" => out.clone(),
                "INFLIGHT" => "3".to_owned(),
                _ => return None,
            })
        };
        let p = load_str(Path::new("p.yaml"), text, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name, "n-${literal}");
        assert_eq!(p.accounts[0].name, "brand");
        assert_eq!(p.accounts[0].app_id, "wx9");
        assert_eq!(p.accounts[0].app_secret.expose(), SECRET);
        assert_eq!(p.reports[0].id, "user_cumulate");
        assert_eq!(
            p.dates,
            DateSpec::Range {
                start: DateRef::Abs(NaiveDate::from_ymd_opt(2025, 1, 31).expect("date")),
                end: None
            }
        );
        assert_eq!(p.output.uri, format!("{out}/x"));
        assert_eq!(p.output.partition, Partition::Year);
        assert_eq!(p.limits.max_in_flight, 3);
    }

    #[test]
    fn secrets_never_show_in_debug_display_or_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = load_str(Path::new("p.yaml"), &minimal(dir.path()), &no_env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{p:?}").contains(SECRET));

        // A secret from the environment reused where values are echoed.
        let env = |k: &str| (k == "S").then(|| SECRET.to_owned());
        let text = format!(
            "version: 1\nname: ${{S}}${{S}}${{S}}${{S}}${{S}}${{S}}${{S}}\naccounts:\n  - name: ${{S}}\n    app_id: x\n    app_secret: ${{S}}\n  - name: b\n    app_id: x\n    app_secret: {SECRET}\n    extra: 1\nreports:\n  - ${{S}}\ndates:\n  start: ${{S}}\noutput:\n  uri: s3://${{S}}/x\n  partition: ${{S}}\n  compression: {SECRET}\n"
        );
        let e = errors(&text, &env);
        assert_eq!(e.diagnostics.len(), 6, "{e}");
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(!shown.contains("sk-live"), "{shown}");
        }
        // The literal secret in compression is echoed as a value, then scrubbed.
        assert!(
            e.to_string()
                .contains("output.compression: \"***\" is not a compression"),
            "{e}"
        );
    }

    #[test]
    fn diagnostics_display_file_line_column_key_message() {
        let d = Diagnostic {
            file: PathBuf::from("p.yaml"),
            line: Some(3),
            column: Some(7),
            key: "accounts[1].app_secret".into(),
            message: "must not be empty".into(),
        };
        assert_eq!(
            d.to_string(),
            "p.yaml:3:7: accounts[1].app_secret: must not be empty"
        );
        let d = Diagnostic {
            line: None,
            column: None,
            key: String::new(),
            message: "the file is empty".into(),
            ..d
        };
        assert_eq!(d.to_string(), "p.yaml: the file is empty");
        let e = ConfigError {
            diagnostics: vec![d.clone(), d],
        };
        assert_eq!(
            e.to_string(),
            "p.yaml: the file is empty\np.yaml: the file is empty"
        );
    }

    #[test]
    fn every_error_is_collected_in_file_order() {
        let text = "limits: {max_in_flight: 0}\nversion: 3\nname: ''\noutput: {uri: s3://A}\n";
        let e = errors(text, &no_env);
        let got: Vec<_> = e
            .diagnostics
            .iter()
            .map(|d| (d.line, d.key.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (None, "accounts"),
                (None, "reports"),
                (None, "dates"),
                (Some(1), "limits.max_in_flight"),
                (Some(2), "version"),
                (Some(3), "name"),
                (Some(4), "output.uri"),
            ]
        );
    }

    #[test]
    fn relative_dates_are_ordered_and_mixed_forms_pass() {
        let dir = tempfile::tempdir().expect("temp dir");
        let with = |dates: &str| {
            let text = minimal(dir.path()).replace("dates:\n  days_back: 3\n", dates);
            load_str(Path::new("p.yaml"), &text, &no_env)
        };
        let p = with("dates:\n  start: { days_back: 30 }\n  end: { days_back: 2 }\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.dates,
            DateSpec::Range {
                start: DateRef::DaysBack(30),
                end: Some(DateRef::DaysBack(2))
            }
        );
        assert!(with("dates:\n  start: 2015-01-01\n  end: { days_back: 2 }\n").is_ok());
        assert!(with("dates:\n  start: 2014-12-01\n  end: 2014-12-01\n").is_ok());
        let e = with("dates:\n  start: 2014-12-02\n  end: 2014-12-01\n").unwrap_err();
        assert_eq!(e.diagnostics.len(), 1, "{e}");
        assert_eq!(e.diagnostics[0].key, "dates.end");
    }

    #[test]
    fn output_checks_touch_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("file");
        fs::write(&file, "x").expect("write");
        assert_eq!(
            check_uri(&file.join("a/b").display().to_string(), false),
            Err(format!(
                "{} is a file, so {} cannot be created",
                file.display(),
                file.join("a/b").display()
            ))
        );
        let deep = dir.path().join("a/b/c");
        assert_eq!(
            check_uri(&deep.display().to_string(), false),
            Ok(deep.display().to_string())
        );
        assert!(!dir.path().join("a").exists());
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("file")]);
        assert!(check_uri("relative/dir", false).is_ok());
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket", "my.bucket.1", &"a".repeat(63)] {
            assert_eq!(check_bucket(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "My",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.1",
            &"a".repeat(64),
        ] {
            assert!(check_bucket(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_reads_files_and_names_missing_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p.yaml");
        fs::write(&path, minimal(&dir.path().join("out"))).expect("write");
        let p = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.source, path);
        let missing = dir.path().join("nope.yaml");
        let e = load(&missing).expect_err("missing file");
        assert_eq!(
            e.to_string(),
            format!(
                "{0}: cannot read pipeline file {0}: no such file",
                missing.display()
            )
        );
    }
}
