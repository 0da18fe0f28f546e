//! The trials table's URL parameters: which column to sort by, the filters and the page, read
//! into a [`TrialQuery`] whose columns come from the store's fixed list, and written back into
//! links (so sorting keeps the filters, paging keeps the sort).
//!
//! `sort=COLUMN`, `order=asc|desc`, `state=STATE`, `failure=KIND`, `min_COLUMN=X`,
//! `max_COLUMN=X` (numeric columns), `page=N` (from 1), `per_page=N`. Anything else is ignored;
//! a bad value is refused with a message that names the parameter.

use effnas_store::{ColumnRange, FailureKind, TrialColumn, TrialQuery, TrialState};

/// The most rows one page of the table shows.
pub const MAX_PER_PAGE: u64 = 500;
pub const DEFAULT_PER_PAGE: u64 = 50;

/// The table's parameters as read from a URL.
#[derive(Debug, Clone, PartialEq)]
pub struct TableParams {
    pub query: TrialQuery,
    /// 1-based.
    pub page: u64,
}

/// Reads the table's parameters; the error names the parameter and what it accepts.
pub fn parse(pairs: &[(String, String)]) -> Result<TableParams, String> {
    let mut query = TrialQuery { limit: DEFAULT_PER_PAGE, ..TrialQuery::default() };
    let mut page = 1;
    let mut order_given = None;
    for (key, value) in pairs {
        let value = value.trim();
        if value.is_empty() {
            continue; // An empty form field means "no filter".
        }
        match key.as_str() {
            "sort" => query.sort = column(key, value)?,
            "order" => {
                order_given = Some(match value {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(format!("{key}={value:?}: give asc or desc")),
                })
            }
            "state" => query.state = Some(value.parse::<TrialState>().map_err(|e| format!("{key}: {e}"))?),
            "failure" => {
                query.failure = Some(value.parse::<FailureKind>().map_err(|e| format!("{key}: {e}"))?)
            }
            "page" => page = number(key, value, 1, u64::MAX / MAX_PER_PAGE)?,
            "per_page" => query.limit = number(key, value, 1, MAX_PER_PAGE)?,
            other => {
                if let Some((bound, name)) = other.split_once('_').filter(|(b, _)| *b == "min" || *b == "max")
                {
                    let column = column(key, name)?;
                    if !column.is_numeric() {
                        return Err(format!("{key}: column {name} does not hold numbers"));
                    }
                    let x: f64 = value
                        .parse()
                        .ok()
                        .filter(|x: &f64| x.is_finite())
                        .ok_or_else(|| format!("{key}={value:?} is not a number"))?;
                    let range = range_of(&mut query.ranges, column);
                    if bound == "min" {
                        range.min = Some(x);
                    } else {
                        range.max = Some(x);
                    }
                }
            }
        }
    }
    // Best first for results, in queue order otherwise, unless the URL says.
    query.descending = order_given.unwrap_or(default_descending(query.sort));
    query.offset = (page - 1) * query.limit;
    Ok(TableParams { query, page })
}

/// The order a click on a column's header asks for first: results best (highest) first,
/// everything else ascending.
pub fn default_descending(column: TrialColumn) -> bool {
    matches!(
        column,
        TrialColumn::Accuracy | TrialColumn::Reward | TrialColumn::ImagesPerSecond | TrialColumn::Finished
    )
}

fn column(key: &str, name: &str) -> Result<TrialColumn, String> {
    TrialColumn::parse(name).ok_or_else(|| {
        let known: Vec<&str> = TrialColumn::ALL.iter().map(|c| c.as_str()).collect();
        format!("{key}: unknown column {name:?} (known: {})", known.join(", "))
    })
}

fn number(key: &str, value: &str, low: u64, high: u64) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| format!("{key}={value:?}: give a whole number from {low} to {high}"))
}

fn range_of(ranges: &mut Vec<ColumnRange>, column: TrialColumn) -> &mut ColumnRange {
    let index = match ranges.iter().position(|r| r.column == column) {
        Some(index) => index,
        None => {
            ranges.push(ColumnRange { column, min: None, max: None });
            ranges.len() - 1
        }
    };
    &mut ranges[index]
}

impl TableParams {
    /// The parameters as URL pairs, with the sort and page replaced as given: for the table's
    /// links. Defaults are left out.
    pub fn pairs(&self, sort: TrialColumn, descending: bool, page: u64) -> Vec<(String, String)> {
        let q = &self.query;
        let mut pairs = Vec::new();
        if sort != TrialColumn::Id || descending {
            pairs.push(("sort".to_owned(), sort.as_str().to_owned()));
            pairs.push(("order".to_owned(), if descending { "desc" } else { "asc" }.to_owned()));
        }
        if let Some(state) = q.state {
            pairs.push(("state".to_owned(), state.as_str().to_owned()));
        }
        if let Some(failure) = q.failure {
            pairs.push(("failure".to_owned(), failure.as_str().to_owned()));
        }
        for range in &q.ranges {
            if let Some(min) = range.min {
                pairs.push((format!("min_{}", range.column.as_str()), min.to_string()));
            }
            if let Some(max) = range.max {
                pairs.push((format!("max_{}", range.column.as_str()), max.to_string()));
            }
        }
        if q.limit != DEFAULT_PER_PAGE {
            pairs.push(("per_page".to_owned(), q.limit.to_string()));
        }
        if page != 1 {
            pairs.push(("page".to_owned(), page.to_string()));
        }
        pairs
    }

    /// A query string (`?a=b&c=d`, or nothing) from [`TableParams::pairs`].
    pub fn href(&self, sort: TrialColumn, descending: bool, page: u64) -> String {
        query_string(&self.pairs(sort, descending, page))
    }

    /// The bound of a range filter, for the filter form.
    pub fn bound(&self, column: TrialColumn, max: bool) -> Option<f64> {
        let range = self.query.ranges.iter().find(|r| r.column == column)?;
        if max {
            range.max
        } else {
            range.min
        }
    }
}

/// `?k=v&…` with every key and value percent-encoded; empty for no pairs.
pub fn query_string(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let encoded: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    format!("?{}", encoded.join("&"))
}

/// Percent-encoding of everything but unreserved characters (RFC 3986).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &[(&str, &str)]) -> Vec<(String, String)> {
        text.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn parameters_read_into_a_query_and_back_into_links() {
        let params = parse(&pairs(&[
            ("sort", "accuracy"),
            ("state", "complete"),
            ("min_accuracy", "0.5"),
            ("max_flops", "4e8"),
            ("page", "3"),
            ("per_page", "20"),
            ("fragment", "1"),
            ("min_reward", ""),
        ]))
        .expect("valid");
        let q = &params.query;
        assert_eq!((q.sort, q.descending), (TrialColumn::Accuracy, true), "accuracy sorts best first");
        assert_eq!(q.state, Some(TrialState::Complete));
        assert_eq!((q.offset, q.limit), (40, 20));
        assert_eq!(q.ranges.len(), 2);
        let href = params.href(TrialColumn::Flops, false, 1);
        assert_eq!(
            href,
            "?sort=flops&order=asc&state=complete&min_accuracy=0.5&max_flops=400000000&per_page=20"
        );
        assert_eq!(
            parse(&pairs(&[])).expect("empty").query,
            TrialQuery { limit: 50, ..TrialQuery::default() }
        );
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for (key, value, needle) in [
            ("sort", "id; DROP TABLE trials", "unknown column"),
            ("order", "sideways", "asc or desc"),
            ("state", "reclaimed", "unknown value"),
            ("min_worker", "1", "does not hold numbers"),
            ("max_flops", "NaN", "not a number"),
            ("page", "0", "whole number"),
            ("per_page", "100000", "whole number"),
        ] {
            let error = parse(&pairs(&[(key, value)])).expect_err(key);
            assert!(error.contains(key) && error.contains(needle), "{error}");
        }
    }

    #[test]
    fn query_strings_are_percent_encoded() {
        assert_eq!(query_string(&pairs(&[("a b", "<&>")])), "?a%20b=%3C%26%3E");
        assert_eq!(query_string(&[]), "");
    }
}
