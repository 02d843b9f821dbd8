//! Logging: JSON lines in containers, human text on a terminal, filtered by `RUST_LOG`.
//!
//! Nothing here decides what is logged: the handler never puts credentials or bodies in a field,
//! and phone numbers only when `--log-phone-numbers` is set.
//!
//! Lines go to stderr through threads of their own (`writer`): a log reader that falls behind (a
//! container runtime's full pipe) costs log lines, counted in `log_lines_dropped_total`, never the
//! answer of a request whose worker would otherwise block in `write`.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The level when `RUST_LOG` does not say.
const DEFAULT_FILTER: &str = "info";

mod writer;

pub use writer::{lines_dropped, Guard};

/// The filter to use for `rust_log` (the variable's value, `Err` if it was not UTF-8), and why
/// it was not taken as given. Unset or empty is `info`: an empty filter enables nothing, which
/// would hide even the reason the bridge exits. An invalid one is `info` too, said once logging
/// works.
///
/// A level above `info` for every target is kept from hyper, and any but `error` from h2, unless
/// the filter names them: at `debug` h2 logs what a client sent in a malformed request (a
/// `:authority` with its user-info, a `:path` with its query), which can be a credential, from
/// anyone who can connect, and at `warn` a line per connection an attacker opens.
fn filter_spec(rust_log: Result<&str, ()>) -> (String, Option<String>) {
    let (spec, not_taken) = match rust_log {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::builder().parse(spec.trim()) {
            Ok(_) => (spec.trim(), None),
            Err(e) => (
                DEFAULT_FILTER,
                Some(format!(
                    "RUST_LOG is not a valid filter ({e}); logging at {DEFAULT_FILTER}"
                )),
            ),
        },
        Ok(_) => (DEFAULT_FILTER, None),
        Err(()) => (
            DEFAULT_FILTER,
            Some(format!(
                "RUST_LOG is not UTF-8; logging at {DEFAULT_FILTER}"
            )),
        ),
    };
    (capped(spec), not_taken)
}

/// [`filter_spec`] of this process's `RUST_LOG`.
fn env_filter_spec() -> (String, Option<String>) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV);
    filter_spec(match &rust_log {
        Ok(spec) => Ok(spec),
        Err(std::env::VarError::NotPresent) => Ok(""),
        Err(std::env::VarError::NotUnicode(_)) => Err(()),
    })
}

/// Why this process's `RUST_LOG` would not be taken as given, for `--check-config`.
pub fn filter_warning() -> Option<String> {
    env_filter_spec().1
}

/// `spec` with h2 and hyper kept quieter than it asks, as [`filter_spec`] says.
fn capped(spec: &str) -> String {
    if spec == "off" {
        return spec.to_string();
    }
    let everything_verbose = spec.split(',').any(|d| {
        d.trim()
            .parse::<LevelFilter>()
            .is_ok_and(|level| level > LevelFilter::INFO)
    });
    // Each crate its own: `hyper=warn` asks for less of hyper, not for h2's debug lines. A
    // directive for one of a crate's modules (`h2::codec=trace`) still wins for that module.
    let named = |krate: &str| {
        spec.split(',')
            .any(|d| d.trim().split(['=', '[']).next() == Some(krate))
    };
    let mut capped = spec.to_string();
    // h2 warns once for each connection that resets too many streams (HTTP/2 rapid reset) before
    // it closes it: a client that reconnects repeats that without end, 2,200 lines a second
    // measured, at every level. Its errors are what is left (it logs none today).
    if !named("h2") {
        capped.push_str(",h2=error");
    }
    if everything_verbose && !named("hyper") {
        capped.push_str(",hyper=info");
    }
    capped
}

/// Installs the global subscriber writing to `writer`; `Err` if one is installed already.
pub fn init_with<W>(format: LogFormat, writer: W) -> Result<(), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    // Colours only for a terminal that wants them: text chosen for a file or a pipe would
    // otherwise carry escape codes into it (https://no-color.org for NO_COLOR).
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (spec, not_taken) = env_filter_spec();
    let filter = EnvFilter::builder()
        .parse(&spec)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // On a failed write tracing-subscriber would report it with `eprintln!`, which panics
        // when stderr itself is gone (a closed pipe): every log call would panic, and the one
        // that notes a SIGTERM would leave the bridge deaf to it. A lost log line is all it is.
        .log_internal_errors(false)
        .with_ansi(colour)
        .with_target(true);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| e.to_string())?;
    if let Some(why) = not_taken {
        tracing::warn!("{why}");
    }
    Ok(())
}

/// Longest record key put in a log line with `--log-phone-numbers`, in bytes. A phone number or
/// a message id is far shorter; the key is the sender's text, up to a whole body, repeated on
/// every line of its request, and 2,048 queued lines of a slow log reader would hold it each.
const MAX_LOGGED_KEY: usize = 128;

/// A record key as it may be logged: whole up to `MAX_LOGGED_KEY` bytes, else cut at a
/// character's boundary and followed by `…` and how long it was.
pub(crate) fn key_for_log(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_LOGGED_KEY {
        return key.into();
    }
    let mut end = MAX_LOGGED_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &key[..end], key.len()).into()
}

/// Installs the global subscriber writing to stderr from threads of their own (see `writer`). The
/// lines still queued are written when the guard is dropped, for up to about a second for each
/// queue: keep it to the end of `main`.
pub fn init(format: LogFormat) -> Result<Guard, String> {
    let (writer, guard) = writer::ByLevel::stderr();
    init_with(format, writer)?;
    Ok(guard)
}

/// Log output kept in memory, for unit tests that read what was logged.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Kept(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Kept {
    /// Keeps this thread's log lines at `info` and above while the guard lives (the tasks of a
    /// current-thread runtime on it too).
    pub(crate) fn on_this_thread() -> (Kept, tracing::subscriber::DefaultGuard) {
        interest_of_every_thread();
        let kept = Kept::default();
        let writer = kept.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (kept, tracing::subscriber::set_default(subscriber))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("kept")).into_owned()
    }
}

/// Makes tracing work out whether a call site is wanted from every live subscriber, not from the
/// default of the thread that reaches it first; call before setting a test's subscriber.
///
/// tracing caches a call site's interest process-wide when it is first reached. While one
/// subscriber at most is registered, it asks only the reaching thread's default: a call site first
/// reached by a test thread without a subscriber, while another test's [`Kept`] was the only one,
/// was cached as wanted by nobody, and that test's line was never logged (run beside one sibling
/// that reaches the same line, `spool::tests::logs` tests failed 29, 16, 7 and 3 runs in 20-30).
/// A second subscriber kept for the life of the process, that wants nothing, makes tracing ask
/// all of them (a call site a test's subscriber wants is then checked at each event).
#[cfg(test)]
pub(crate) fn interest_of_every_thread() {
    struct WantsNothing;
    impl tracing::Subscriber for WantsNothing {
        fn register_callsite(
            &self,
            _: &'static tracing::Metadata<'static>,
        ) -> tracing::subscriber::Interest {
            tracing::subscriber::Interest::never()
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::OFF)
        }
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    static KEPT_FOR_GOOD: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    KEPT_FOR_GOOD.get_or_init(|| tracing::Dispatch::new(WantsNothing));
}

#[cfg(test)]
impl std::io::Write for Kept {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("kept").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line first reached by a thread without a subscriber while a test's [`Kept`] is the only
    /// one is still kept when the test's thread reaches it (without
    /// [`interest_of_every_thread`], tracing cached it as wanted by nobody: a test reading its
    /// log lines failed whenever a sibling test reached the same line first).
    #[test]
    fn a_line_first_reached_by_a_thread_without_a_subscriber_is_still_kept() {
        fn line() {
            tracing::info!("reached by two threads");
        }
        let (kept, _default) = Kept::on_this_thread();
        std::thread::spawn(line).join().expect("thread");
        line();
        let text = kept.text();
        assert_eq!(text.matches("reached by two threads").count(), 1, "{text}");
    }

    #[test]
    fn a_key_is_logged_whole_up_to_128_bytes_and_cut_at_a_character_beyond() {
        assert_eq!(key_for_log("919876543210"), "919876543210");
        let longest = "7".repeat(128);
        assert_eq!(key_for_log(&longest), longest.as_str());
        let long = "7".repeat(400_000);
        assert_eq!(
            key_for_log(&long),
            format!("{}… (400000 bytes)", "7".repeat(128))
        );
        // 'é' is two bytes: the 64th ends at byte 128, so a 65th is left out whole.
        let accented = "é".repeat(65);
        assert_eq!(
            key_for_log(&accented),
            format!("{}… (130 bytes)", "é".repeat(64))
        );
        let offset = format!("7{}", "é".repeat(64));
        assert_eq!(
            key_for_log(&offset),
            format!("7{}… (129 bytes)", "é".repeat(63))
        );
    }

    fn spec(rust_log: &str) -> (String, Option<String>) {
        filter_spec(Ok(rust_log))
    }

    #[test]
    fn an_unset_or_empty_rust_log_is_info_not_a_filter_that_hides_everything() {
        assert_eq!(spec(""), ("info,h2=error".to_string(), None));
        assert_eq!(spec("  "), ("info,h2=error".to_string(), None));
        // Taken as trimmed: " off" is off, no reason for h2's errors (found by mutation testing).
        assert_eq!(spec(" off\n"), ("off".to_string(), None));
    }

    #[test]
    fn an_invalid_rust_log_is_info_with_the_reason_said() {
        let (filter, why) = spec("[{");
        assert_eq!(filter, "info,h2=error");
        assert!(
            why.is_some_and(|w| w.starts_with("RUST_LOG is not a valid filter")),
            "said"
        );
        let (filter, why) = filter_spec(Err(()));
        assert_eq!(filter, "info,h2=error");
        assert!(why.is_some_and(|w| w.contains("not UTF-8")));
    }

    #[test]
    fn debug_for_everything_keeps_hyper_at_info_and_h2_at_error_unless_they_are_named() {
        assert_eq!(spec("debug").0, "debug,h2=error,hyper=info");
        assert_eq!(spec("info,trace").0, "info,trace,h2=error,hyper=info");
        assert_eq!(
            spec("debug,h2=trace").0,
            "debug,h2=trace,hyper=info",
            "named"
        );
        // Quieter hyper is no reason for h2's debug lines (it was, found by a re-test).
        assert_eq!(spec("debug,hyper=warn").0, "debug,hyper=warn,h2=error");
        assert_eq!(
            spec("trace,h2::codec=trace").0,
            "trace,h2::codec=trace,h2=error,hyper=info",
            "a module named wins for that module only"
        );
    }

    /// h2's warning for a connection that resets too many streams, which an attacker repeats
    /// with every connection, is left out at any level unless h2 is named.
    #[test]
    fn h2_logs_only_errors_unless_it_is_named() {
        for (given, taken) in [
            ("info", "info,h2=error"),
            ("warn", "warn,h2=error"),
            (
                "info,qikchat_bridge=debug",
                "info,qikchat_bridge=debug,h2=error",
            ),
        ] {
            assert_eq!(spec(given), (taken.to_string(), None), "{given}");
        }
        for kept in ["h2=debug", "info,h2=warn", "off"] {
            assert_eq!(spec(kept), (kept.to_string(), None), "{kept}");
        }
    }
}
