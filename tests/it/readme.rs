//! README.md's examples run, so the README cannot drift from the program.
//!
//! Convention for fenced blocks (README.md states it too):
//! - ```` ```sh ````: shell commands. Blocks run in document order, each as one
//!   `bash -euo pipefail` script, in one scratch directory holding a copy of `pipelines/`,
//!   with the built `wxcube` first on `PATH`. Lines starting with `make` or `cargo` are
//!   skipped: `make test` is what runs this test, and `make demo` is `wxcube run
//!   pipelines/demo.yaml` after a build.
//! - ```` ```sh s3 ````: the same, only when the test S3 server is up (`WXCUBE_TEST_S3`);
//!   the bucket is created first and named through `WXCUBE_BUCKET`.
//! - ```` ```python ````: run through `WXCUBE_TEST_PYTHON` in the same directory, in order with
//!   the shell blocks (so they read what the shell blocks wrote). ```` ```python no-test ````
//!   (Airflow, which is not installed) is not run.
//! - ```` ```yaml ```` whose first line is `# pipelines/NAME.yaml`: must be that file, less its
//!   leading comment lines, and must validate.
//! - Anything else (```` ```text ````) is not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::*;
use crate::interop::{create_bucket, python, s3_enabled};

struct Block {
    /// The info string: language and attributes.
    info: Vec<String>,
    /// Line of the opening fence (1-based), for messages.
    line: usize,
    body: String,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.split_whitespace().map(String::from).collect(),
                    line: i + 1,
                    body: String::new(),
                })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some(b), None) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The commands of a `sh` block, continuation lines joined, skipped lines removed.
fn commands(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in body.lines() {
        match line.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out.into_iter()
        .filter(|c| {
            let c = c.trim_start();
            !c.is_empty()
                && !c.starts_with('#')
                && !c.starts_with("make ")
                && !c.starts_with("cargo ")
        })
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn search_path() -> String {
    let bin_dir = bin().parent().expect("bin dir").to_path_buf();
    let old = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin_dir];
    dirs.extend(std::env::split_paths(&old));
    std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}

fn show(o: &std::process::Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", stdout(o), stderr(o))
}

#[test]
fn readme_parses_into_the_blocks_the_convention_names() {
    let text = "a\n```sh\nwxcube run p.yaml \\\n  --json\nmake demo   # x\n# note\n\n```\n```python no-test\nimport x\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].info, ["sh"]);
    assert_eq!(b[0].line, 2);
    assert_eq!(commands(&b[0].body), ["wxcube run p.yaml    --json"]);
    assert_eq!(b[1].info, ["python", "no-test"]);
    assert_eq!(b[1].body, "import x\n");
}

#[test]
fn readme_commands_run() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let all = blocks(&readme);
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    copy_dir(&root().join("pipelines"), &work.join("pipelines"));
    let path = search_path();
    let py = python();
    if py.is_none() {
        eprintln!("SKIPPED (python blocks only): WXCUBE_TEST_PYTHON is not set");
    }
    let bucket = format!("readme-{}", std::process::id());
    let s3 = s3_enabled();
    if s3 {
        create_bucket(&bucket);
    } else {
        eprintln!("SKIPPED (sh s3 blocks only): the test S3 server is not up");
    }

    let (mut sh_run, mut py_run, mut yaml_checked) = (0, 0, 0);
    let mut ran = String::new();
    for b in &all {
        let lang = b.info.first().map(String::as_str).unwrap_or("");
        let attrs = &b.info[b.info.len().min(1)..];
        match lang {
            "sh" => {
                if attrs.iter().any(|a| a == "s3") && !s3 {
                    continue;
                }
                let cmds = commands(&b.body);
                if cmds.is_empty() {
                    continue;
                }
                let script = format!("set -euo pipefail\n{}\n", cmds.join("\n"));
                let o = Command::new("bash")
                    .arg("-c")
                    .arg(&script)
                    .current_dir(work)
                    .env("PATH", &path)
                    .env("WXCUBE_BUCKET", &bucket)
                    .output()
                    .expect("bash");
                assert!(
                    o.status.success(),
                    "README.md:{}: exit {:?}\n{script}{}",
                    b.line,
                    o.status.code(),
                    show(&o)
                );
                sh_run += 1;
                ran.push_str(&script);
            }
            "python" if !attrs.iter().any(|a| a == "no-test") => {
                let Some(py) = &py else { continue };
                let o = Command::new(py)
                    .arg("-c")
                    .arg(&b.body)
                    .current_dir(work)
                    .output()
                    .expect("python");
                assert!(
                    o.status.success(),
                    "README.md:{}: python failed\n{}{}",
                    b.line,
                    b.body,
                    show(&o)
                );
                py_run += 1;
            }
            "yaml" => {
                let Some(name) = b
                    .body
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# pipelines/"))
                else {
                    continue;
                };
                let file = std::fs::read_to_string(root().join("pipelines").join(name.trim()))
                    .expect("the pipeline the README shows");
                let strip = |t: &str| -> String {
                    t.lines()
                        .skip_while(|l| l.starts_with('#'))
                        .map(|l| format!("{l}\n"))
                        .collect()
                };
                assert_eq!(
                    strip(&b.body),
                    strip(&file),
                    "README.md:{} differs from pipelines/{name}",
                    b.line
                );
                let p = write(work, "readme-block.yaml", &b.body);
                let o = wxcube(&["validate", p.to_str().expect("utf8")], work);
                assert_eq!(o.status.code(), Some(0), "{}", show(&o));
                yaml_checked += 1;
            }
            _ => {}
        }
    }

    println!("README.md: {sh_run} sh blocks (S3: {s3}), {py_run} python blocks, {yaml_checked} pipelines checked");
    // The README shows each command at least once, and they all ran.
    for needle in [
        "wxcube validate",
        "wxcube plan",
        "wxcube run",
        "wxcube reports",
        "wxcube schema",
    ] {
        assert!(ran.contains(needle), "no {needle:?} command ran");
    }
    assert!(sh_run >= 1 && yaml_checked >= 1);
    if py.is_some() {
        assert!(py_run >= 2, "the DuckDB and Polars examples ran: {py_run}");
    }

    // What the commands wrote: the plan before the re-run and the re-run's report agree.
    let read = |name: &str| -> Option<Value> {
        std::fs::read(work.join(name))
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("json"))
    };
    if let (Some(plan), Some(run)) = (read("plan.json"), read("run.json")) {
        assert_eq!(run["exit_code"], 0);
        assert_eq!(plan["calls"], run["planned_calls"]);
        assert_eq!(plan["calls"], run["data_calls"]);
    }
}
