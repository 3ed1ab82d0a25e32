//! `output:` (the destination): a local directory or `s3://bucket/prefix`, partitioning, compression.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::Compiler;
use crate::config::lowercase_first;
use crate::config::node::Node;
use crate::pipeline::{Compression, Output, Partition};

const OUTPUT_KEYS: &[&str] = &["uri", "partition", "compression"];

impl Compiler<'_> {
    pub(super) fn output(&mut self, n: &Node, anchor: Option<&Node>) -> Option<Output> {
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
        use Compression as C;
        let partition = self.named(
            f.get("partition"),
            "partition",
            &[
                ("day", Partition::Day),
                ("month", Partition::Month),
                ("year", Partition::Year),
            ],
            Partition::Month,
        );
        let compression = self.named(
            f.get("compression"),
            "compression",
            &[("zstd", C::Zstd), ("snappy", C::Snappy), ("none", C::None)],
            C::Zstd,
        );
        Some(Output {
            uri: uri?,
            partition: partition?,
            compression: compression?,
        })
    }
}

impl Compiler<'_> {
    /// `output.<key>` as one of `table`'s names (in the order errors list them), or
    /// `default` when absent.
    fn named<T: Copy>(
        &mut self,
        n: Option<&Node>,
        key: &str,
        table: &[(&'static str, T)],
        default: T,
    ) -> Option<T> {
        let Some(n) = n else {
            return Some(default);
        };
        let names: Vec<&'static str> = table.iter().map(|(name, _)| *name).collect();
        let c = self.choice(n, &format!("output.{key}"), key, &names)?;
        table.iter().find(|(name, _)| *name == c).map(|(_, v)| *v)
    }
}

/// A local directory (which need not exist yet) or `s3://bucket/prefix`, normalized
/// without a trailing slash.
pub(super) fn check_uri(s: &str, from_env: bool) -> Result<String, String> {
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

pub(super) fn check_bucket(bucket: &str, from_env: bool) -> Result<(), String> {
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
    let nanos = crate::clock::utc().timestamp_subsec_nanos();
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
