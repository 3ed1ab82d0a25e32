//! Running a token command: `sh -c` in a process group of its own, so a timeout kills
//! everything it started (a client that forks a helper, a `curl` in a pipeline), and a cap
//! on what it may print.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The most a token command may print: a token is a few hundred bytes.
pub const OUTPUT_CAP: usize = 64 << 10;

#[derive(Debug)]
pub enum Error {
    Spawn(std::io::Error),
    /// Did not finish (or close its output) in time; its process group was killed.
    Timeout,
    /// Printed more than `OUTPUT_CAP`; its process group was killed.
    TooLarge,
    Failed(ExitStatus),
    Io(std::io::Error),
}

/// Runs `command` with `env` set and stdin, stderr closed; returns what it printed.
pub async fn run(command: &str, env: &[(&str, &str)], timeout: Duration) -> Result<Vec<u8>, Error> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Its diagnostics may hold secrets; wxcube could not show them safely anyway.
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::Spawn)?;
    // The group id is the leader's pid; it stays ours until the leader is reaped below.
    let group = child.id();
    let mut stdout = child.stdout.take();
    let work = async {
        let mut out = Vec::new();
        if let Some(s) = stdout.as_mut() {
            s.take(OUTPUT_CAP as u64 + 1)
                .read_to_end(&mut out)
                .await
                .map_err(Error::Io)?;
            if out.len() > OUTPUT_CAP {
                return Err(Error::TooLarge);
            }
        }
        let status = child.wait().await.map_err(Error::Io)?;
        Ok((status, out))
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout),
    };
    match result {
        Ok((status, _)) if !status.success() => Err(Error::Failed(status)),
        Ok((_, out)) => Ok(out),
        Err(e) => {
            if let Some(pgid) = group {
                kill_group(pgid);
            }
            // Reap the leader (already dead or being killed): no zombie per attempt.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            Err(e)
        }
    }
}

fn kill_group(pgid: u32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    if let Err(e) = killpg(Pid::from_raw(raw), Signal::SIGKILL) {
        // ESRCH: every member has already exited.
        tracing::debug!(error = %e, "killing the token command's process group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prints_and_fails_and_is_capped() {
        let ok = run(
            "printf tok-$WXCUBE_X",
            &[("WXCUBE_X", "1")],
            Duration::from_secs(10),
        )
        .await
        .expect("ran");
        assert_eq!(ok, b"tok-1");
        assert!(matches!(
            run("exit 3", &[], Duration::from_secs(10)).await,
            Err(Error::Failed(s)) if s.code() == Some(3)
        ));
        // 1 MiB of output: stopped at the cap, not read into memory.
        assert!(matches!(
            run("head -c 1048576 /dev/zero", &[], Duration::from_secs(10)).await,
            Err(Error::TooLarge)
        ));
    }

    /// A command whose child outlives it holding the output open: both are killed.
    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let cmd = format!("sleep 600 & echo $! > {}; wait", pidfile.display());
        let r = run(&cmd, &[], Duration::from_millis(500)).await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        let pid = std::fs::read_to_string(&pidfile).expect("pid written");
        assert!(gone(pid.trim()), "the background sleep {pid} was killed");
    }

    /// A process is gone once /proc has no entry for it, or only a zombie's.
    pub(crate) fn gone(pid: &str) -> bool {
        for _ in 0..100 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(s) => {
                    let state = s
                        .rsplit(')')
                        .next()
                        .and_then(|r| r.split_whitespace().next());
                    if matches!(state, Some("Z" | "X")) {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}
