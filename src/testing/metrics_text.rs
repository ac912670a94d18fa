//! Reading samples out of Prometheus text: what the unit tests (through
//! `crate::testing`) and the integration tests (which include this file by
//! path, so it uses nothing but `std`) assert `/metrics` against.

/// The value of the sample `name{labels}` in Prometheus text: labels in
/// any order, all of them and no others; `None` when there is no such
/// sample or its value is not a number.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted = labels.to_vec();
    wanted.sort_unstable();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let mut found = labels_of(rest.strip_suffix('}')?);
            found.sort_unstable();
            (found == wanted).then(|| value.parse().ok()).flatten()
        })
}

/// The `key="value"` pairs between a sample's braces.
fn labels_of(inner: &str) -> Vec<(&str, &str)> {
    inner
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once("=\"")?;
            Some((key, value.trim_end_matches('"')))
        })
        .collect()
}
