//! Log output: tracing to stderr, text by default, JSON on request; `RUST_LOG` filters (default `info`).
//!
//! Lines are handed to a logging thread that writes them in batches: an access-log line per request must not
//! cost the request a write system call. The thread flushes whenever it has no more lines waiting, so a quiet
//! server's log is as prompt as an unbuffered one; under load, many lines go out in one write.
//!
//! Access-log events (target `palisade::access`) are written in the combined log format in text mode, with
//! palisade's own fields after it, and as JSON objects like every other event in JSON mode.

use std::fmt::Write as _;
use std::io::IsTerminal;

use palisade_server::ACCESS_TARGET;
use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, filter};

/// How much the logging thread gathers before it must write.
const LOG_BUFFER: usize = 64 << 10;

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines; access-log lines in the combined log format.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Keep the guard until exit: dropping it flushes what is still buffered.
pub(crate) fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Not lossy: under overload, requests wait for the log rather than the log losing lines.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("palisade-log")
        .finish(std::io::BufWriter::with_capacity(LOG_BUFFER, std::io::stderr()));
    let ansi = std::io::stderr().is_terminal();
    let is_access = |m: &tracing::Metadata<'_>| m.target() == ACCESS_TARGET;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer.clone())
                    .with_ansi(ansi)
                    .with_filter(filter::filter_fn(move |m| !is_access(m))),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .event_format(Combined)
                    .with_filter(filter::filter_fn(is_access)),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer().with_writer(writer).json().flatten_event(true).with_current_span(true),
            )
            .init(),
    }
    guard
}

/// The combined log format (as nginx and Apache write it), then `tenant=`, `route=`, `micros=` (the whole
/// exchange), `instance_micros=` (the guest instance's life, for guest routes) and `id=`.
struct Combined;

impl<S, N> FormatEvent<S, N> for Combined
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut f = AccessFields::default();
        event.record(&mut f);
        let field = |name: &str| f.get(name).unwrap_or("-");
        writeln!(
            out,
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" tenant={} route={} micros={} instance_micros={} id={}",
            field("remote"),
            clf_time(std::time::SystemTime::now()),
            field("method"),
            field("uri"),
            field("version"),
            field("status"),
            field("bytes"),
            field("referer").replace('"', "\\\""),
            field("user_agent").replace('"', "\\\""),
            field("tenant"),
            field("route"),
            field("micros"),
            field("instance_micros"),
            field("id"),
        )
    }
}

/// An access event's fields by name, as text.
#[derive(Default)]
struct AccessFields(Vec<(&'static str, String)>);

impl AccessFields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

impl Visit for AccessFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_string()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0.push((field.name(), text));
    }
}

/// `25/Nov/2026:10:00:00 +0000`: the combined log format's time, in UTC.
fn clf_time(now: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm), for dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let month = MONTHS.get(usize::try_from(month - 1).unwrap_or(0)).unwrap_or(&"Jan");
    format!("{day:02}/{month}/{year}:{:02}:{:02}:{:02} +0000", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn combined_log_time() {
        assert_eq!(super::clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        // 2026-11-25T10:11:12Z
        assert_eq!(super::clf_time(UNIX_EPOCH + Duration::from_secs(1_795_601_472)), "25/Nov/2026:10:11:12 +0000");
        // 2024-02-29T23:59:59Z (a leap day)
        assert_eq!(super::clf_time(UNIX_EPOCH + Duration::from_secs(1_709_251_199)), "29/Feb/2024:23:59:59 +0000");
    }
}
