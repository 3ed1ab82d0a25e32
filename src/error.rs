//! Exit codes (DESIGN §1) and the error `main` reports: every outcome maps to its code here.
//!
//! 0 all done; 1 runtime failure; 2 invalid pipeline or usage; 3 partial (some work deferred
//! or failed for a stated reason; the rest is committed, a re-run resumes).

use std::fmt;

/// How a command ended, as the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExitCode {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    Partial = 3,
}

impl ExitCode {
    pub const ALL: [ExitCode; 4] = [
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::Partial,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code a run report recorded; anything unknown is a failure.
    pub fn from_code(code: i32) -> ExitCode {
        Self::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .unwrap_or(ExitCode::Failure)
    }

    /// A run's code: a fatal error beats work left undone.
    pub fn of_run(failed: bool, partial: bool) -> ExitCode {
        if failed {
            ExitCode::Failure
        } else if partial {
            ExitCode::Partial
        } else {
            ExitCode::Ok
        }
    }

    /// What it means, for the last line of a run summary.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "all done",
            ExitCode::Partial => {
                "partial: some work was deferred or failed (reasons above); the rest is committed, a re-run resumes"
            }
            ExitCode::Usage => "invalid pipeline or usage",
            ExitCode::Failure => {
                "runtime failure (error below); committed partitions stay, a re-run resumes"
            }
        }
    }
}

/// An error that ends a command, with its exit code. The source is kept typed so `main`
/// prints its chain ([`chain`]) once.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    pub fn new(code: ExitCode, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Failure {
            code,
            error: e.into(),
        }
    }

    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, m.into())
    }

    pub fn runtime(m: impl Into<String>) -> Self {
        Self::new(ExitCode::Failure, m.into())
    }

    /// The text `main` prints after `error: `.
    pub fn message(&self) -> String {
        chain(self.error.as_ref())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// An error and its sources, each once: a source whose text its parent already shows
/// (many messages name their cause) is not repeated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_each_has_its_own_meaning() {
        let mut meanings: Vec<&str> = ExitCode::ALL.iter().map(|c| c.meaning()).collect();
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(c.code()), c);
        }
        assert_eq!(ExitCode::ALL.map(ExitCode::code), [0, 1, 2, 3], "DESIGN §1");
        assert_eq!(ExitCode::from_code(101), ExitCode::Failure);
        meanings.sort();
        meanings.dedup();
        assert_eq!(meanings.len(), 4);
    }

    #[test]
    fn a_run_fails_before_it_is_partial() {
        assert_eq!(ExitCode::of_run(true, true), ExitCode::Failure);
        assert_eq!(ExitCode::of_run(false, true), ExitCode::Partial);
        assert_eq!(ExitCode::of_run(false, false), ExitCode::Ok);
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("committing x: {0}")]
        Repeats(#[source] std::io::Error),
        #[error("committing y")]
        Hides(#[source] std::io::Error),
    }

    #[test]
    fn the_chain_names_each_cause_once() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(chain(&Outer::Repeats(io())), "committing x: disk full");
        assert_eq!(chain(&Outer::Hides(io())), "committing y: disk full");
    }
}
