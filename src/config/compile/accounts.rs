//! `accounts:` inline or from a CSV/YAML file: names, app ids, secrets, regions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{shown, Compiler};
use crate::config::node::{Kind, Node};
use crate::pipeline::{Account, Auth, Region};
use crate::secret::Secret;
use crate::suggest;

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
const ACCOUNT_NAME_MAX_CHARS: usize = 64;

impl Compiler<'_> {
    pub(super) fn accounts(
        &mut self,
        n: &Node,
        auth_default: Option<&Node>,
    ) -> Option<Vec<Account>> {
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

    pub(super) fn account(
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
    pub(super) fn secret(&mut self, n: &Node, key: &str) -> Option<Secret> {
        let s = self.string(n, key)?;
        if s.trim().is_empty() {
            self.error(Some(n), key, "must not be empty");
            None
        } else {
            self.secrets.push(s.clone().into_owned());
            Some(Secret::new(s.into_owned()))
        }
    }

    pub(super) fn region(&mut self, n: &Node, key: &str) -> Option<Region> {
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

    /// `accounts:` inline, or `accounts: { file: accounts.csv | accounts.yaml }` (a path
    /// relative to the pipeline file), for platforms with hundreds of accounts.
    pub(super) fn accounts_any(
        &mut self,
        n: &Node,
        auth_default: Option<&Node>,
    ) -> Option<Vec<Account>> {
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
    pub(super) fn csv_accounts(&mut self, text: &str) -> Option<Node> {
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

    pub(super) fn account_name(&mut self, n: &Node, key: &str) -> Option<String> {
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
}
