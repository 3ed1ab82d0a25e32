//! The YAML document as a tree whose every node knows its line and column, so that
//! validation can collect all errors instead of stopping at serde's first.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub column: usize,
    pub kind: Kind,
    /// The string came (partly) from `${VAR}`: never echo it, it may be a secret.
    pub from_env: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// A string whose interpolation failed; already reported, so checks skip it.
    Invalid,
}

impl Kind {
    /// How a message names what was found instead of what was expected.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Invalid => "an invalid value",
        }
    }
}

impl Node {
    pub(crate) fn has_invalid(&self) -> bool {
        match &self.kind {
            Kind::Invalid => true,
            Kind::Seq(items) => items.iter().any(Node::has_invalid),
            Kind::Map(entries) => entries
                .iter()
                .any(|(k, v)| k.has_invalid() || v.has_invalid()),
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Kind>::deserialize(d)?;
        Ok(Node {
            line: s.referenced.line() as usize,
            column: s.referenced.column() as usize,
            kind: s.value,
            from_env: false,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        i128::try_from(v)
            .map(Kind::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Kind::Map(entries))
    }
}

/// An error from deserializing a subtree, located at the innermost node that failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeError {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub path: Option<String>,
}

impl de::Error for NodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        NodeError {
            message: msg.to_string(),
            line: 0,
            column: 0,
            path: None,
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

/// Lets serde types (the simulator's config, whose fields another module owns) be read
/// from a subtree with locations and key paths in their errors.
pub(crate) struct NodeDe<'a> {
    pub node: &'a Node,
    pub path: String,
}

impl NodeDe<'_> {
    fn locate(&self, mut e: NodeError) -> NodeError {
        if e.path.is_none() {
            e.line = self.node.line;
            e.column = self.node.column;
            e.path = Some(self.path.clone());
        }
        e
    }
}

pub(crate) fn child_path(parent: &str, key: &Node) -> String {
    let name = match &key.kind {
        Kind::Str(s) => s.clone(),
        Kind::Int(i) => i.to_string(),
        other => other.describe().to_owned(),
    };
    if parent.is_empty() {
        name
    } else {
        format!("{parent}.{name}")
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = NodeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        let r = match &self.node.kind {
            Kind::Null => v.visit_unit(),
            Kind::Bool(b) => v.visit_bool(*b),
            Kind::Int(i) => {
                if let Ok(u) = u64::try_from(*i) {
                    v.visit_u64(u)
                } else if let Ok(s) = i64::try_from(*i) {
                    v.visit_i64(s)
                } else {
                    v.visit_i128(*i)
                }
            }
            Kind::Float(x) => v.visit_f64(*x),
            Kind::Str(s) => v.visit_str(s),
            Kind::Seq(items) => v.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            Kind::Map(entries) => v.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
            Kind::Invalid => Err(de::Error::custom("invalid value")),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, NodeError> {
        if self.node.kind == Kind::Null {
            v.visit_none().map_err(|e| self.locate(e))
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, NodeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        let r = match &self.node.kind {
            Kind::Str(s) => v.visit_enum(de::value::StrDeserializer::<NodeError>::new(s)),
            Kind::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                v.visit_enum(EnumDe {
                    key,
                    value,
                    path: child_path(&self.path, key),
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a name or a one-key mapping, found {}",
                other.describe()
            ))),
        };
        r.map_err(|e| self.locate(e))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'a str,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = NodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'a str,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = NodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let path = child_path(self.path, key);
        self.value = Some((value, path.clone()));
        seed.deserialize(NodeDe { node: key, path }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, NodeError> {
        match self.value.take() {
            Some((node, path)) => seed.deserialize(NodeDe { node, path }),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

struct EnumDe<'a> {
    key: &'a Node,
    value: &'a Node,
    path: String,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = NodeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), NodeError> {
        let variant = seed.deserialize(NodeDe {
            node: self.key,
            path: self.path.clone(),
        })?;
        Ok((
            variant,
            NodeDe {
                node: self.value,
                path: self.path,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = NodeError;

    fn unit_variant(self) -> Result<(), NodeError> {
        match self.node.kind {
            Kind::Null => Ok(()),
            _ => Err(self.locate(de::Error::custom("this variant takes no value"))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, NodeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, NodeError> {
        self.deserialize_any(v)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, NodeError> {
        self.deserialize_any(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn parse(y: &str) -> Node {
        serde_saphyr::from_str_with_options(y, serde_saphyr::options! { strict_booleans: true })
            .unwrap()
    }

    #[test]
    fn nodes_carry_lines_columns_and_yaml_types() {
        let n = parse("a: 1\nb:\n  - x\n  - {c: 2.5}\nd: 2025-01-01\nn: ~\ny: yes\n");
        let Kind::Map(entries) = &n.kind else {
            panic!("expected a map, got {n:?}")
        };
        let got: Vec<_> = entries
            .iter()
            .map(|(k, v)| (k.kind.clone(), v.line, v.column))
            .collect();
        assert_eq!(got[0], (Kind::Str("a".into()), 1, 4));
        assert_eq!(got[1].0, Kind::Str("b".into()));
        // YAML 1.1 booleans are off: `n` and `y` stay strings.
        assert_eq!(entries[2].1.kind, Kind::Str("2025-01-01".into()));
        assert_eq!(entries[3].0.kind, Kind::Str("n".into()));
        assert_eq!(entries[3].1.kind, Kind::Null);
        assert_eq!(entries[4].1.kind, Kind::Str("yes".into()));
        let Kind::Seq(items) = &entries[1].1.kind else {
            panic!("expected a list")
        };
        assert_eq!((items[1].line, items[1].column), (4, 5));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        seed: u64,
        #[serde(default)]
        rate: Option<f64>,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        list: Vec<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Fast,
        Slow { ms: u32 },
    }

    #[test]
    fn serde_types_deserialize_from_nodes_with_located_errors() {
        let n = parse("seed: 7\nrate: 0.5\nmode: fast\nlist: [1, 2]\n");
        let p = Probe::deserialize(NodeDe {
            node: &n,
            path: "sim".into(),
        });
        assert_eq!(
            p,
            Ok(Probe {
                seed: 7,
                rate: Some(0.5),
                mode: Some(Mode::Fast),
                list: vec![1, 2]
            })
        );
        let n = parse("seed: 1\nmode: {slow: {ms: 3}}\n");
        let p = Probe::deserialize(NodeDe {
            node: &n,
            path: "sim".into(),
        });
        assert_eq!(p.map(|p| p.mode), Ok(Some(Mode::Slow { ms: 3 })));

        let n = parse("seed: 1\nsed: 2\n");
        let e = Probe::deserialize(NodeDe {
            node: &n,
            path: "sim".into(),
        })
        .unwrap_err();
        assert_eq!(
            (e.line, e.column, e.path.as_deref()),
            (2, 1, Some("sim.sed"))
        );
        assert!(e.message.starts_with("unknown field `sed`"), "{e}");

        let n = parse("seed: 1\nlist: [1, x]\n");
        let e = Probe::deserialize(NodeDe {
            node: &n,
            path: "sim".into(),
        })
        .unwrap_err();
        assert_eq!(
            (e.line, e.column, e.path.as_deref()),
            (2, 11, Some("sim.list[1]"))
        );
    }
}
