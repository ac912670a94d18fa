//! The access log (SPEC 8): one line per finished connection (tcp mode) or
//! request (http mode, later), as text or JSON.
//!
//! This part is the record and its two formats; the queue and the writer
//! come next.
#![cfg_attr(
    not(test),
    expect(dead_code, reason = "wired in by the operations issue (10)")
)]

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How a tcp connection ended: the `outcome` of its line. The names are
/// part of the log format ([`Outcome::name`]) and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Relayed until both sides closed.
    Ok,
    /// No backend could be reached: none was up, or every connect failed.
    NoBackend,
    /// Closed because no byte moved either way for the idle timeout.
    IdleTimeout,
    /// A read or write on either side failed (a reset, a broken pipe).
    Reset,
    /// Closed by the drain: its deadline passed, or a second SIGTERM.
    DrainTimeout,
    /// A connect failed on this machine (out of file descriptors, ports
    /// or memory), not because of the backend.
    LocalResources,
}

impl Outcome {
    /// The outcome's name in both formats: `ok`, `no_backend`,
    /// `idle_timeout`, `reset`, `drain_timeout`, `local_resources`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NoBackend => "no_backend",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::Reset => "reset",
            Outcome::DrainTimeout => "drain_timeout",
            Outcome::LocalResources => "local_resources",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an http-mode line adds to a [`Record`] (SPEC 8): the seam for the
/// http data plane, which is not built yet. A tcp record has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFields {
    /// The request method as received (`GET`).
    pub method: String,
    /// The request target as received (`/api/items?id=7`).
    pub path: String,
    /// The status code sent to the client.
    pub status: u16,
    /// How many times the request was sent again to another backend.
    pub retries: u32,
}

/// One finished connection (or, in http mode, request), as the data plane
/// knows it when it ends: everything its access log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When it ended (the line's `time`), by the wall clock.
    pub ended: SystemTime,
    /// How long it lasted, from accept to close.
    pub duration: Duration,
    /// The listener's name: an `Arc` so that a worker clones a pointer per
    /// connection, not the name.
    pub listener: Arc<str>,
    /// The client's address as accepted (or as a PROXY header gave it).
    pub client: SocketAddr,
    /// The backend's address as written in the config (its name), or none
    /// when no backend was reached.
    pub backend: Option<String>,
    /// Payload bytes from the client to the backend (a PROXY header is not
    /// counted).
    pub bytes_in: u64,
    /// Payload bytes from the backend to the client.
    pub bytes_out: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Method, path, status and retries of an http-mode request; none in
    /// tcp mode.
    pub http: Option<HttpFields>,
}

/// How lines are written (the config's `access_log` format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One space-separated line: `time listener client backend bytes_in
    /// bytes_out duration_ms outcome`, then in http mode `method path
    /// status retries`. A missing backend is `-`; a value that is empty,
    /// `-`, or holds a space, a quote, a backslash or a control character
    /// is written in double quotes with those escaped, so a line can never
    /// be split or shifted by a value.
    Text,
    /// One JSON object per line with the keys `time`, `listener`,
    /// `client`, `backend` (null when none), `bytes_in`, `bytes_out`,
    /// `duration_ms`, `outcome`, and in http mode `method`, `path`,
    /// `status`, `retries`.
    Json,
}

/// Appends `record` to `out` as one line in `format`, newline included.
fn format_line(format: Format, record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    match format {
        Format::Text => text_line(record, out),
        Format::Json => json_line(record, out),
    }
}

/// The [`Format::Text`] line.
fn text_line(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    write!(out, "{} ", Rfc3339(record.ended))?;
    push_text_value(out, &record.listener);
    write!(out, " {} ", record.client)?;
    match &record.backend {
        Some(backend) => push_text_value(out, backend),
        None => out.push(b'-'),
    }
    write!(
        out,
        " {} {} {} {}",
        record.bytes_in,
        record.bytes_out,
        millis(record.duration),
        record.outcome
    )?;
    if let Some(http) = &record.http {
        out.push(b' ');
        push_text_value(out, &http.method);
        out.push(b' ');
        push_text_value(out, &http.path);
        write!(out, " {} {}", http.status, http.retries)?;
    }
    out.push(b'\n');
    Ok(())
}

/// Appends `value` as one text field: as it is when it cannot be mistaken
/// for a separator, a missing value or a quoted one; otherwise in double
/// quotes with quotes, backslashes, control characters and any whitespace
/// but the space escaped.
fn push_text_value(out: &mut Vec<u8>, value: &str) {
    let plain = !value.is_empty()
        && value != "-"
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
    if plain {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    let mut utf8 = [0; 4];
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            ' ' => out.push(b' '),
            c if c.is_whitespace() || c.is_control() => {
                out.extend_from_slice(c.escape_default().to_string().as_bytes());
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out.push(b'"');
}

/// The [`Format::Json`] line: the keys of SPEC 8, in its order.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: Rfc3339,
    listener: &'a str,
    /// serde writes a socket address as `ip:port` (`[ip]:port` for IPv6)
    /// in JSON.
    client: SocketAddr,
    backend: Option<&'a str>,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: u64,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u32>,
}

/// Appends the JSON object of `record` and a newline.
fn json_line(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let http = record.http.as_ref();
    let line = JsonLine {
        time: Rfc3339(record.ended),
        listener: &record.listener,
        client: record.client,
        backend: record.backend.as_deref(),
        bytes_in: record.bytes_in,
        bytes_out: record.bytes_out,
        duration_ms: millis(record.duration),
        outcome: record.outcome.name(),
        method: http.map(|h| h.method.as_str()),
        path: http.map(|h| h.path.as_str()),
        status: http.map(|h| h.status),
        retries: http.map(|h| h.retries),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

/// Whole milliseconds of `duration` (`duration_ms`).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An instant as RFC 3339 in UTC with milliseconds, truncated:
/// `2026-11-30T10:31:14.123Z`. Written here rather than with
/// `humantime::format_rfc3339_millis`, which panics on a time before 1970
/// (a clock set wrong must not stop the log).
struct Rfc3339(SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = unix_millis(self.0);
        let seconds = ms.div_euclid(1000);
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let of_day = seconds.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60,
            ms.rem_euclid(1000)
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Milliseconds since 1970-01-01T00:00:00Z, rounded down (negative before).
fn unix_millis(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_millis()).unwrap_or(i128::MAX),
        Err(before) => {
            let nanos = i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX);
            -((nanos + 999_999) / 1_000_000)
        }
    }
}

/// The proleptic Gregorian date (year, month 1-12, day 1-31) of `days`
/// since 1970-01-01: Howard Hinnant's `civil_from_days`, which counts in
/// 400-year eras of 146 097 days from 0000-03-01, so that the leap day is
/// the last day of its year.
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::{Format, HttpFields, Outcome, Record, Rfc3339, format_line};

    /// 2026-11-30T10:31:14.123Z, the example of the task.
    fn sample_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_034_674_123)
    }

    fn sample() -> Record {
        Record {
            ended: sample_time(),
            // 1532.9 ms: written as whole milliseconds, truncated.
            duration: Duration::from_micros(1_532_900),
            listener: Arc::from("web"),
            client: "192.0.2.7:51234".parse().unwrap(),
            backend: Some("10.0.0.1:8080".to_string()),
            bytes_in: 512,
            bytes_out: 20480,
            outcome: Outcome::Ok,
            http: None,
        }
    }

    fn unreached() -> Record {
        Record {
            duration: Duration::from_millis(3),
            backend: None,
            bytes_in: 0,
            bytes_out: 0,
            outcome: Outcome::NoBackend,
            ..sample()
        }
    }

    fn line(format: Format, record: &Record) -> String {
        let mut out = Vec::new();
        format_line(format, record, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn at(millis: i64) -> String {
        let time = if millis >= 0 {
            UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
        };
        Rfc3339(time).to_string()
    }

    #[test]
    fn a_text_line_has_the_documented_fields_in_order() {
        assert_eq!(
            line(Format::Text, &sample()),
            "2026-11-30T10:31:14.123Z web 192.0.2.7:51234 10.0.0.1:8080 512 20480 1532 ok\n"
        );
    }

    #[test]
    fn a_text_line_without_a_backend_says_dash() {
        assert_eq!(
            line(Format::Text, &unreached()),
            "2026-11-30T10:31:14.123Z web 192.0.2.7:51234 - 0 0 3 no_backend\n"
        );
    }

    #[test]
    fn a_json_line_has_exactly_the_keys_of_spec_8() {
        assert_eq!(
            line(Format::Json, &sample()),
            "{\"time\":\"2026-11-30T10:31:14.123Z\",\"listener\":\"web\",\
             \"client\":\"192.0.2.7:51234\",\"backend\":\"10.0.0.1:8080\",\
             \"bytes_in\":512,\"bytes_out\":20480,\"duration_ms\":1532,\"outcome\":\"ok\"}\n"
        );
    }

    #[test]
    fn a_json_line_without_a_backend_has_backend_null() {
        assert_eq!(
            line(Format::Json, &unreached()),
            "{\"time\":\"2026-11-30T10:31:14.123Z\",\"listener\":\"web\",\
             \"client\":\"192.0.2.7:51234\",\"backend\":null,\
             \"bytes_in\":0,\"bytes_out\":0,\"duration_ms\":3,\"outcome\":\"no_backend\"}\n"
        );
    }

    #[test]
    fn an_ipv6_client_is_written_in_brackets_with_its_port() {
        let record = Record {
            client: "[2001:db8::7]:443".parse().unwrap(),
            ..sample()
        };
        assert!(line(Format::Text, &record).contains(" [2001:db8::7]:443 "));
        assert!(line(Format::Json, &record).contains("\"client\":\"[2001:db8::7]:443\""));
    }

    #[test]
    fn an_http_record_adds_method_path_status_and_retries() {
        let record = Record {
            http: Some(HttpFields {
                method: "GET".to_string(),
                path: "/api/items?id=7".to_string(),
                status: 200,
                retries: 1,
            }),
            ..sample()
        };
        assert_eq!(
            line(Format::Text, &record),
            "2026-11-30T10:31:14.123Z web 192.0.2.7:51234 10.0.0.1:8080 512 20480 1532 ok \
             GET /api/items?id=7 200 1\n"
        );
        assert!(line(Format::Json, &record).ends_with(
            ",\"outcome\":\"ok\",\"method\":\"GET\",\"path\":\"/api/items?id=7\",\
             \"status\":200,\"retries\":1}\n"
        ));
    }

    #[test]
    fn outcomes_have_stable_names() {
        let names = [
            (Outcome::Ok, "ok"),
            (Outcome::NoBackend, "no_backend"),
            (Outcome::IdleTimeout, "idle_timeout"),
            (Outcome::Reset, "reset"),
            (Outcome::DrainTimeout, "drain_timeout"),
            (Outcome::LocalResources, "local_resources"),
        ];
        for (outcome, name) in names {
            assert_eq!(outcome.name(), name);
            assert_eq!(outcome.to_string(), name);
        }
    }

    #[test]
    fn awkward_text_values_are_quoted_and_escaped_so_a_line_stays_one_line() {
        let cases = [
            ("a b", "\"a b\""),
            ("", "\"\""),
            ("-", "\"-\""),
            ("x\"y\\z", "\"x\\\"y\\\\z\""),
            ("a\nb", "\"a\\nb\""),
            ("a\r\tb", "\"a\\r\\tb\""),
            ("\u{1b}[31m", "\"\\u{1b}[31m\""),
            ("a\u{2028}b", "\"a\\u{2028}b\""),
            ("a\u{a0}b", "\"a\\u{a0}b\""),
            ("café-1", "café-1"),
        ];
        for (value, written) in cases {
            let record = Record {
                listener: Arc::from(value),
                backend: Some(value.to_string()),
                ..sample()
            };
            let text = line(Format::Text, &record);
            assert_eq!(
                text,
                format!(
                    "2026-11-30T10:31:14.123Z {written} 192.0.2.7:51234 {written} \
                     512 20480 1532 ok\n"
                ),
                "{value:?}"
            );
            let json = line(Format::Json, &record);
            assert_eq!(json.lines().count(), 1, "{json}");
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed["listener"], value);
        }
    }

    #[test]
    fn an_awkward_http_path_is_quoted_too() {
        let record = Record {
            http: Some(HttpFields {
                method: "GET".to_string(),
                path: "/a b\n".to_string(),
                status: 400,
                retries: 0,
            }),
            ..sample()
        };
        assert!(line(Format::Text, &record).ends_with(" GET \"/a b\\n\" 400 0\n"));
    }

    #[test]
    fn times_are_rfc_3339_in_utc_with_milliseconds() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
        assert_eq!(at(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
        assert_eq!(at(1_704_067_200_000), "2024-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(1_796_034_674_123), "2026-11-30T10:31:14.123Z");
    }

    #[test]
    fn a_time_before_1970_is_written_not_a_panic() {
        assert_eq!(at(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(at(-86_400_000), "1969-12-31T00:00:00.000Z");
        let just_before = UNIX_EPOCH - Duration::from_nanos(1);
        assert_eq!(Rfc3339(just_before).to_string(), "1969-12-31T23:59:59.999Z");
    }

    proptest! {
        #[test]
        fn times_agree_with_humantime_from_1970_to_9999(
            seconds in 0u64..253_402_300_800,
            nanos in 0u32..1_000_000_000,
        ) {
            let time = UNIX_EPOCH + Duration::new(seconds, nanos);
            prop_assert_eq!(
                Rfc3339(time).to_string(),
                humantime::format_rfc3339_millis(time).to_string()
            );
        }
    }
}
