//! "did you mean ...?" for misspelt keys and names.

/// Edit distance with adjacent transpositions (optimal string alignment).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lowered = input.to_ascii_lowercase();
    let budget = (input.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&lowered, c), c))
        .filter(|&(d, _)| d <= budget)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `; did you mean "x"?` or nothing.
pub(crate) fn hint<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(input, candidates)
        .map(|c| format!("; did you mean \"{c}\"?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("partiton", "partition"), 1);
        assert_eq!(distance("patrition", "partition"), 1);
        assert_eq!(distance("same", "same"), 0);
    }

    #[test]
    fn suggests_only_plausible_names() {
        let keys = ["uri", "partition", "compression"];
        assert_eq!(closest("partiton", keys), Some("partition"));
        assert_eq!(closest("Partition", keys), Some("partition"));
        assert_eq!(closest("compresion", keys), Some("compression"));
        assert_eq!(closest("url", keys), Some("uri"));
        assert_eq!(closest("bucket_region", keys), None);
        let names: Vec<_> = crate::catalog::all_names().collect();
        assert_eq!(
            closest("user_sumary", names.iter().copied()),
            Some("user_summary")
        );
        assert_eq!(
            closest("getusersumary", names.iter().copied()),
            Some("getusersummary")
        );
        assert_eq!(
            hint("user_sumary", names.iter().copied()),
            "; did you mean \"user_summary\"?"
        );
        assert_eq!(hint("zzzzzzzz", names.iter().copied()), "");
    }
}
