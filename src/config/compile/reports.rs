//! `reports:`: `all` or a list of catalogue names, each checked against the catalogue.

use std::collections::HashMap;

use super::{shown, Compiler};
use crate::catalog::{self, Report};
use crate::config::node::{Kind, Node};
use crate::suggest;

impl Compiler<'_> {
    pub(super) fn reports(&mut self, n: &Node) -> Option<Vec<&'static Report>> {
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
}
