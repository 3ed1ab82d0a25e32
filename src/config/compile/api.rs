//! `api:`: the WeChat base URL, a region, or the built-in simulator.

use serde::Deserialize;

use super::Compiler;
use crate::config::node::{Kind, Node, NodeDe};
use crate::pipeline::{Api, Region, SimConfig};

const API_KEYS: &[&str] = &["base_url", "allow_plain_http", "region", "simulator"];

impl Compiler<'_> {
    pub(super) fn api(&mut self, n: Option<&Node>, anchor: Option<&Node>) -> Option<Api> {
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
    pub(super) fn base_url(&mut self, n: &Node, plain: bool) -> Option<String> {
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

    pub(super) fn simulator(&mut self, n: &Node) -> Option<SimConfig> {
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
