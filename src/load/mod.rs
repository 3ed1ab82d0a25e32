//! Load: the [`Loader`] receives fetched windows, splits their rows by partition, merges
//! them with what is there, commits each partition as a whole, atomically, then records state
//! (DESIGN §4).
//!
//! - `partition`: Hive folders of dates, splitting rows by partition, sorting by natural key.
//! - `file`: Parquet encoding and decoding, a partition streamed as it fills ([`PartStream`]),
//!   the merge of kept and fresh rows into one sorted file.
//! - `commit`: one partition's read-merge-write, with quarantine of files that cannot merge.
//! - `keyed`: reports replaced by natural key (`catalog::Replace::ByKey`).
//! - `loader`: partition completion, commit and state-write scheduling, stops and quota.
//!
//! A commit reads the partition's file, drops the rows whose `ref_date` lies in the windows
//! just fetched, adds the fetched rows, sorts by the natural key, encodes one Parquet file
//! and makes it visible in one step (see `store`). It is safe to repeat: the same windows
//! give the same file. A partition that does not exist yet skips all of that: the run
//! streamed its windows, in date order, into the very file to commit ([`PartStream`]).
//!
//! Files written by other releases or rewritten by other tools merge when their columns
//! agree in name, type and nullability (see `compat`); the rewrite gives them the current
//! schema and metadata. A file that does not agree (a column missing, retyped or added; not
//! readable as Parquet, e.g. truncated) is quarantined: copied to
//! `_wxcube/quarantine/<time>-<pid>/<report>/account=<a>/<part>/data.parquet`, the dates of
//! its partition reopened in state (provisional: fetched again by the next run, wherever
//! they lie), then deleted from the table only if it is still the version read. The commit
//! then fails with [`LoadError::Quarantined`], which stops that table and account's
//! partition only (exit 3, the message names both files). Decision: the run does *not*
//! commit its fresh rows into a new file there. The partition stays empty until the next
//! run fetches all its loaded dates again and writes it whole, so state never holds a date
//! of it as final while the table lacks it, and no fetched window is recorded for a
//! partition a person may be looking into; the cost is the calls of the fresh windows, made
//! again. A store error while reading (network, permissions) is not a bad file: it fails or
//! retries as any store error and nothing is moved.

mod commit;
mod file;
mod keyed;
mod loader;
mod partition;
#[cfg(test)]
mod tests;

use chrono::NaiveDate;

use crate::store::StoreError;

pub use crate::changes::Committed;
pub use crate::hive::{file_rel, partition_dates, partition_value, partitions_of};
pub(crate) use commit::commit_with_retry;
pub use commit::{commit_fresh, commit_partition};
pub use file::{decode_file, encode, read_table, writer_props, Fresh, PartStream, ROW_GROUP_BYTES};
pub(crate) use keyed::commit_keyed;
pub use keyed::{drop_keys_committed, keys_of};
pub(crate) use loader::{FatalError, LoadContext, LoadReport, Loader, Msg, Outcome, StopKind};
pub use partition::{sort, split};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("parquet {path}: {source}")]
    Parquet {
        path: String,
        source: ::parquet::errors::ParquetError,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{path} cannot be read into table {report}: {reason}")]
    Schema {
        path: String,
        report: &'static str,
        reason: String,
    },
    /// An existing file that cannot merge, moved aside; its dates are fetched again.
    #[error("{path} cannot merge into table {report}: {reason}. Moved to {moved_to} (nothing deleted); its dates {begin}..{end} are reopened, so the next run fetches them again, whatever its range. Inspect the moved file, then delete it")]
    Quarantined {
        path: String,
        moved_to: String,
        reason: String,
        report: &'static str,
        begin: NaiveDate,
        end: NaiveDate,
    },
}

impl crate::retry::Retryable for LoadError {
    fn class(&self) -> crate::retry::Class {
        match self.is_retryable() {
            true => crate::retry::Class::Retry,
            false => crate::retry::Class::Fatal,
        }
    }
}

impl LoadError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LoadError::Store(e) if e.is_retryable())
    }
}
