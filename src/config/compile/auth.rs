//! `auth:` per account or shared: which token source an account uses.

use super::{shown, Compiler, Fields};
use crate::config::node::Node;
use crate::pipeline::Auth;
use crate::secret::Secret;
use crate::suggest;

pub(super) const AUTH_KEYS: &[&str] = &[
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
/// A token command's time to answer, and the most a pipeline may give it.
const COMMAND_TIMEOUT_SECONDS: u32 = 60;
const COMMAND_TIMEOUT_MAX_SECONDS: u32 = 3600;

/// One account's view of an `auth` block: a key on the account wins over the shared block.
struct Block<'f, 'n> {
    acct: &'f Fields<'n>,
    shared: Fields<'n>,
    /// The account's list item, where "needs" errors point.
    item: &'n Node,
    kind: String,
}

impl<'n> Block<'_, 'n> {
    fn pick(&self, name: &str) -> Option<(&'n Node, String)> {
        self.acct
            .get(name)
            .map(|v| (v, self.acct.child(name)))
            .or_else(|| self.shared.get(name).map(|v| (v, self.shared.child(name))))
    }

    /// A required secret of this auth type, wherever it is given.
    fn needs(&self, c: &mut Compiler, name: &str) -> Option<Secret> {
        match self.pick(name) {
            Some((v, key)) => c.secret(v, &key),
            None => {
                let kind = &self.kind;
                c.error(
                    Some(self.item),
                    &self.acct.child(name),
                    format!("auth type {kind} needs {name} (on the account or in auth)"),
                );
                None
            }
        }
    }

    /// Flags keys this auth type does not use.
    fn unused(&self, c: &mut Compiler, names: &[&str]) {
        for name in names {
            if let Some((v, key)) = self.pick(name) {
                let kind = &self.kind;
                c.error(
                    Some(v),
                    &key,
                    format!("{name} is not used by auth type {kind}"),
                );
            }
        }
    }
}

impl Compiler<'_> {
    /// The account's token source: its own `auth`, else the pipeline's, else stable_token.
    /// `access_token` and `authorizer_refresh_token` may sit on the account itself, so one
    /// pipeline-level `auth` serves many accounts.
    pub(super) fn auth(
        &mut self,
        n: Option<&Node>,
        path: &str,
        acct: &Fields,
        item: &Node,
    ) -> Option<Auth> {
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
        let type_key = f.child("type");
        let b = Block {
            acct,
            shared: f,
            item,
            kind,
        };
        match b.kind.as_str() {
            "stable_token" | "classic" => {
                b.unused(self, &AUTH_KEYS[1..]);
                Some(if b.kind == "classic" {
                    Auth::Classic
                } else {
                    Auth::StableToken
                })
            }
            "static" => {
                b.unused(
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
                    access_token: b.needs(self, "access_token")?,
                })
            }
            "command" => self.command_auth(&b),
            "component" => self.component_auth(&b),
            other => {
                let hint = suggest::hint(other, AUTH_TYPES.iter().copied());
                let shown = shown(type_node, other);
                self.error(
                    Some(type_node),
                    &type_key,
                    format!(
                        "unknown auth type {shown}{hint}; valid types are {}",
                        AUTH_TYPES.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn command_auth(&mut self, b: &Block) -> Option<Auth> {
        b.unused(
            self,
            &[
                "access_token",
                "component_appid",
                "component_appsecret",
                "component_verify_ticket",
                "authorizer_refresh_token",
            ],
        );
        let timeout = match b.pick("timeout_seconds") {
            Some((v, key)) => self.bounded(v, &key, 1, COMMAND_TIMEOUT_MAX_SECONDS)?,
            None => COMMAND_TIMEOUT_SECONDS,
        };
        let c = b.needs(self, "command")?;
        Some(Auth::Command {
            command: c,
            timeout: std::time::Duration::from_secs(u64::from(timeout)),
        })
    }

    fn component_auth(&mut self, b: &Block) -> Option<Auth> {
        b.unused(self, &["command", "timeout_seconds", "access_token"]);
        let appid = match b.pick("component_appid") {
            Some((v, key)) => self.string(v, &key).map(|s| s.into_owned()),
            None => {
                self.error(
                    Some(b.item),
                    &b.acct.child("component_appid"),
                    "auth type component needs component_appid (on the account or in auth)",
                );
                None
            }
        };
        let secret = b.needs(self, "component_appsecret");
        let ticket = b.needs(self, "component_verify_ticket");
        let refresh = b.needs(self, "authorizer_refresh_token");
        Some(Auth::Component {
            component_appid: appid?,
            component_appsecret: secret?,
            component_verify_ticket: ticket?,
            authorizer_refresh_token: refresh?,
        })
    }
}
