//! Durations: the one grammar config files write them in, and the one way
//! balancer prints them.
//!
//! A duration is a whole number followed by a unit, `ms`, `s`, `m` or `h`
//! (`"250ms"`, `"30s"`, `"5m"`, `"1h"`), or several such parts, largest
//! unit first and each unit once, with or without spaces between them
//! (`"1h 30m"`, `"1m30s"`), as nginx writes them. Spaces around it are
//! ignored. Nothing else is a duration: no fraction (`"1.5s"`: write
//! `"1500ms"`), no other unit (`d`, `us`, `ns`, `sec`), no bare number
//! (its unit would be a guess), no sign.
//!
//! [`format_duration`] writes the largest unit that divides a duration
//! evenly (`"90m"`, `"8760h"`, `"1500ms"`), so what it prints for a config
//! value reads back to that value. `balancer check` and `balancer convert`
//! print durations with it, and log lines that show one are to use it too.

use std::time::Duration;

use super::error::Problem;
use super::limits::MAX_DURATION_DAYS;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses `text` as the grammar above says. Whole milliseconds always, so
/// [`format_duration`] states any result exactly. The bound of
/// [`MAX_DURATION_DAYS`] is the caller's to check; a number too large for
/// any duration is refused here with the same problem.
pub(crate) fn parse(text: &str) -> Result<Duration, Problem> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(Problem::BadDuration(text.to_string()));
    }
    let mut millis: u64 = 0;
    // The index in UNITS of the last part's unit: the next must be smaller.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let (number, after) = split_while(rest, |c| c.is_ascii_digit());
        if after.starts_with('.') || (number.is_empty() && starts_a_fraction(after)) {
            return Err(Problem::DurationFraction(text.to_string()));
        }
        let (unit, after) = split_while(after, char::is_alphabetic);
        if number.is_empty() || unit.is_empty() {
            return Err(Problem::BadDuration(text.to_string()));
        }
        let known = UNITS
            .iter()
            .enumerate()
            .find(|(_, (name, _))| *name == unit);
        let Some((index, &(_, unit_millis))) = known else {
            return Err(Problem::DurationUnit {
                value: text.to_string(),
                unit: unit.to_string(),
            });
        };
        if last.is_some_and(|previous| index <= previous) {
            return Err(Problem::DurationOrder(text.to_string()));
        }
        last = Some(index);
        millis = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_millis))
            .and_then(|part| millis.checked_add(part))
            .ok_or_else(|| too_long(text))?;
        rest = after.trim_start();
    }
    Ok(Duration::from_millis(millis))
}

pub use crate::net::format_duration;

/// `text` split where its first character failing `keep` starts.
fn split_while(text: &str, keep: impl Fn(char) -> bool) -> (&str, &str) {
    let end = text.find(|c: char| !keep(c)).unwrap_or(text.len());
    text.split_at(end)
}

/// Whether `text` starts like `.5s`: a fraction without its whole part.
fn starts_a_fraction(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next() == Some('.') && chars.next().is_some_and(|c| c.is_ascii_digit())
}

fn too_long(text: &str) -> Problem {
    Problem::DurationTooLong {
        value: text.to_string(),
        max_days: MAX_DURATION_DAYS,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::error::assert_readable;

    #[test]
    fn whole_numbers_with_a_unit_and_their_combinations_parse() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("8760h", Duration::from_secs(365 * 24 * 3600)),
            ("0s", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("007s", Duration::from_secs(7)),
            (" 30s ", Duration::from_secs(30)),
            ("1h 30m", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            ("1m  30s 500ms", Duration::from_millis(90_500)),
            ("2h 1ms", Duration::from_millis(7_200_001)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn anything_else_is_refused_saying_what_is_expected_issue_16() {
        let cases = [
            (
                "365d",
                "\"365d\" is not a duration: unknown unit \"d\" (expected ms, s, m or h)",
            ),
            (
                "1us",
                "\"1us\" is not a duration: unknown unit \"us\" (expected ms, s, m or h)",
            ),
            (
                "1ns",
                "\"1ns\" is not a duration: unknown unit \"ns\" (expected ms, s, m or h)",
            ),
            (
                "1sec",
                "\"1sec\" is not a duration: unknown unit \"sec\" (expected ms, s, m or h)",
            ),
            (
                "1µs",
                "\"1µs\" is not a duration: unknown unit \"µs\" (expected ms, s, m or h)",
            ),
            (
                "30S",
                "\"30S\" is not a duration: unknown unit \"S\" (expected ms, s, m or h)",
            ),
            (
                "1h 30min",
                "\"1h 30min\" is not a duration: unknown unit \"min\" (expected ms, s, m or h)",
            ),
            (
                "1.5s",
                "\"1.5s\" is not a duration: the number must be whole \
                 (use a smaller unit, as in \"1500ms\" for 1.5s)",
            ),
            (
                ".5s",
                "\".5s\" is not a duration: the number must be whole \
                 (use a smaller unit, as in \"1500ms\" for 1.5s)",
            ),
            (
                "30m 1h",
                "\"30m 1h\" is not a duration: its parts must go from the largest unit \
                 to the smallest, each unit once (as in \"1h 30m\")",
            ),
            (
                "1s 1s",
                "\"1s 1s\" is not a duration: its parts must go from the largest unit \
                 to the smallest, each unit once (as in \"1h 30m\")",
            ),
            (
                "30",
                "\"30\" is not a duration (expected a number and a unit: ms, s, m or h)",
            ),
            (
                "",
                "\"\" is not a duration (expected a number and a unit: ms, s, m or h)",
            ),
            (
                "1 s",
                "\"1 s\" is not a duration (expected a number and a unit: ms, s, m or h)",
            ),
            (
                "-1s",
                "\"-1s\" is not a duration (expected a number and a unit: ms, s, m or h)",
            ),
            (
                "+1s",
                "\"+1s\" is not a duration (expected a number and a unit: ms, s, m or h)",
            ),
            (
                "1h30",
                "\"1h30\" is not a duration (expected a number and a unit: ms, s, m or h)",
            ),
            (
                "1h,30m",
                "\"1h,30m\" is not a duration (expected a number and a unit: ms, s, m or h)",
            ),
            (
                "99999999999999999999h",
                "\"99999999999999999999h\" is too long (at most 365 days)",
            ),
            (
                "18446744073709551615h",
                "\"18446744073709551615h\" is too long (at most 365 days)",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert_eq!(message, expected, "{text:?}");
            assert_readable(&message);
        }
    }

    #[test]
    fn durations_print_in_the_largest_unit_that_divides_them_issue_16() {
        let cases = [
            (Duration::from_secs(365 * 24 * 3600), "8760h"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_millis(1), "1ms"),
            (Duration::ZERO, "0s"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_nanos(1), "1ns"),
        ];
        for (d, expected) in cases {
            assert_eq!(format_duration(d), expected, "{d:?}");
        }
    }

    proptest! {
        #[test]
        fn what_is_printed_reads_back_to_the_same_duration(
            millis in 0u64..=MAX_DURATION_DAYS * 24 * 3_600_000,
        ) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(parse(&format_duration(d)), Ok(d));
        }

        #[test]
        fn parts_add_up(h in 0u64..10_000, m in 0u64..1_000, s in 0u64..1_000, ms in 0u64..1_000) {
            let text = format!("{h}h {m}m{s}s {ms}ms");
            let expected = Duration::from_millis(((h * 60 + m) * 60 + s) * 1_000 + ms);
            prop_assert_eq!(parse(&text), Ok(expected));
        }
    }
}
