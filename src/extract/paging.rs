//! Publisher paging (`page`/`page_size`, offset = (page-1) × page_size) with guards against
//! a server that does not page as documented.
//!
//! `total_num` is not trusted to end the paging: since 2024 it may disagree with the rows
//! (reference §2.6), and stopping when it says "enough" would drop rows if it is low. The
//! end is a short page (fewer rows than asked for, or none); a window whose rows are a
//! multiple of the page size costs one more call, for the empty page. `total_num` only
//! widens the page limit, and confirms a page the server repeated.
//!
//! A page identical to the one before means the server ignored `page`: it is not stored
//! again. If it held more rows than a page (the server sent everything at once), or
//! `total_num` equals the rows seen, the window is complete; otherwise it fails rather
//! than store what may be part of it. So does paging that has not ended within the limit.

use serde_json::Value;

/// Rows per page: WeChat's maximum.
pub const PAGE_SIZE: u32 = 90;
/// Page limits: at least this many (a low `total_num` must not cut a window short; a
/// 90-day ad window is 270 rows today), at most that many (a high one must not page on
/// forever).
const MIN_PAGES: u64 = 16;
const MAX_PAGES: u64 = 1000;

#[derive(Default)]
pub struct Pager {
    pub rows: Vec<Value>,
    prev: Option<Vec<Value>>,
    pages: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Next,
    Done,
}

impl Pager {
    /// Takes the next page's rows and its `total_num`; says whether to fetch another.
    pub fn take(&mut self, items: Vec<Value>, total: Option<u64>) -> Result<Step, String> {
        self.pages += 1;
        let n = items.len();
        let seen = self.rows.len() as u64;
        let shown = |t: Option<u64>| t.map_or("absent".to_string(), |t| t.to_string());
        if n > 0 && self.prev.as_ref() == Some(&items) {
            if n > PAGE_SIZE as usize || total == Some(seen) {
                return Ok(Step::Done);
            }
            return Err(format!(
                "page {} repeats page {} ({n} rows; total_num {}): the server ignores `page`, so the rest of the window cannot be fetched; nothing of it is stored",
                self.pages,
                self.pages - 1,
                shown(total)
            ));
        }
        if n < PAGE_SIZE as usize {
            self.rows.extend(items);
            let got = self.rows.len() as u64;
            if total.is_some_and(|t| t != got) {
                tracing::debug!(
                    total_num = total,
                    rows = got,
                    "publisher total_num disagrees with the rows"
                );
            }
            return Ok(Step::Done);
        }
        self.rows.extend(items.iter().cloned());
        self.prev = Some(items);
        let limit = total
            .map_or(0, |t| t.div_ceil(u64::from(PAGE_SIZE)) + 1)
            .clamp(MIN_PAGES, MAX_PAGES);
        if self.pages >= limit {
            return Err(format!(
                "{} full pages and no end (total_num {}): refusing a window that may be partial",
                self.pages,
                shown(total)
            ));
        }
        Ok(Step::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(from: usize, n: usize) -> Vec<Value> {
        (from..from + n).map(|i| json!({ "i": i })).collect()
    }

    /// Pages the way a server would: `serve(page)` gives (rows, total_num).
    fn drive(
        serve: impl Fn(usize) -> (Vec<Value>, Option<u64>),
    ) -> Result<(Vec<Value>, usize), String> {
        let mut p = Pager::default();
        for n in 1.. {
            let (items, total) = serve(n);
            if p.take(items, total)? == Step::Done {
                return Ok((p.rows, n));
            }
        }
        unreachable!()
    }

    const P: usize = PAGE_SIZE as usize;

    fn honest(all: usize, total: Option<u64>) -> impl Fn(usize) -> (Vec<Value>, Option<u64>) {
        move |n| {
            let from = (n - 1) * P;
            (page(from, all.saturating_sub(from).min(P)), total)
        }
    }

    #[test]
    fn a_short_page_ends_whatever_total_num_says() {
        for total in [None, Some(0), Some(5), Some(270), Some(1_000_000)] {
            let (rows, calls) = drive(honest(270, total)).expect("paged");
            assert_eq!(rows, page(0, 270), "{total:?}");
            // 270 = 3 full pages: the 4th, empty, ends it.
            assert_eq!(calls, 4, "{total:?}");
        }
        let (rows, calls) = drive(honest(100, Some(100))).expect("paged");
        assert_eq!((rows.len(), calls), (100, 2));
    }

    #[test]
    fn a_server_that_ignores_page_is_not_stored_twice() {
        // Exactly one page of rows, repeated: complete when total_num agrees.
        let (rows, calls) = drive(|_| (page(0, P), Some(P as u64))).expect("complete");
        assert_eq!((rows, calls), (page(0, P), 2));
        // Everything at once (page_size ignored too): complete whatever total_num says.
        let (rows, _) = drive(|_| (page(0, 200), Some(0))).expect("complete");
        assert_eq!(rows, page(0, 200));
        // More rows than the repeated page, or no way to tell: the window fails.
        let e = drive(|_| (page(0, P), Some(270))).expect_err("partial");
        assert!(e.contains("ignores `page`") && e.contains("270"), "{e}");
        assert!(drive(|_| (page(0, P), None)).is_err());
    }

    #[test]
    fn pages_without_end_are_bounded() {
        // A server that always has another full page.
        let endless = |total| move |n: usize| (page((n - 1) * P, P), total);
        let e = drive(endless(Some(10_000_000))).expect_err("bounded");
        assert!(e.contains("1000 full pages"), "{e}");
        let e = drive(endless(None)).expect_err("bounded");
        assert!(e.contains("16 full pages"), "{e}");
        // total_num widens the limit: 30 pages of rows are all fetched.
        let (rows, _) = drive(honest(30 * P, Some(30 * P as u64))).expect("paged");
        assert_eq!(rows.len(), 30 * P);
    }
}
