//! Logging: JSON lines in containers, human text on a terminal, filtered by `RUST_LOG`.
//!
//! Nothing here decides what is logged: the handler never puts credentials or bodies in a field,
//! and phone numbers only when `--log-phone-numbers` is set.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
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
    result.map_err(|e| e.to_string())
}

/// Installs the global subscriber writing to stderr.
pub fn init(format: LogFormat) -> Result<(), String> {
    init_with(format, std::io::stderr)
}
