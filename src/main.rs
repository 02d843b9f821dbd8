//! The binary: parse settings, start logging, bind, run until SIGTERM/SIGINT/SIGHUP, exit code (the
//! subcommands and `--check-config` live in the library; this maps their outcome to one).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use qikchat_bridge::config::{self, Cli, Command, Config};
use qikchat_bridge::signals::shutdown_signals;
use qikchat_bridge::{check_config, dev_kafka, run_with_cut, tail, telemetry, Listeners};

// jemalloc, unprefixed so that librdkafka's C allocations use it too: records are allocated on
// the runtime's threads and freed on librdkafka's, which glibc's arenas serve with a lock.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for settings that cannot work (as sysexits' EX_USAGE family does).
const EXIT_CONFIG: u8 = 2;

/// A line on stderr. Not `eprintln!`, which panics when stderr is a closed pipe: the exit code
/// (2 for a setting that cannot work) is what a caller acts on, and a panic would turn it into 101.
fn complain(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Says why `command` failed; exits 2 for a setting that cannot work, 1 for anything else.
fn failed(command: &str, error: &dyn std::fmt::Display, usage: bool) -> ExitCode {
    complain(format_args!("{command}: {error}"));
    if usage {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

/// Why the bridge exits with a failure: in the log when its filter shows this line, and on
/// stderr when it does not (`RUST_LOG=off`, or a filter naming only other targets), since an
/// exit code with no word of why leaves an operator guessing.
fn exit_reason(what: &str, error: &dyn std::fmt::Display) {
    if tracing::enabled!(tracing::Level::ERROR) {
        tracing::error!(error = %error, "{what}");
    } else {
        complain(format_args!("qikchat-bridge: {what}: {error}"));
    }
}

/// Says the configuration was refused, naming the variable `setting` came from (see [`via`]).
fn invalid_configuration(
    e: &dyn std::fmt::Display,
    setting: Option<&str>,
    argv: &[std::ffi::OsString],
) -> ExitCode {
    let via = via(setting, argv);
    complain(format_args!(
        "qikchat-bridge: invalid configuration: {e}{via}"
    ));
    ExitCode::from(EXIT_CONFIG)
}

/// " (the value of VARIABLE)" when the refused `setting` came from its variable: the flag alone
/// says nothing to whoever set the variable (a pod's environment).
fn via(setting: Option<&str>, argv: &[std::ffi::OsString]) -> String {
    setting
        .and_then(|flag| config::variable_of(flag, argv))
        // A check of two settings may refuse one left at its default.
        .filter(|variable| std::env::var_os(variable).is_some())
        .map(|variable| format!(" (the value of {variable})"))
        .unwrap_or_default()
}

/// Non-UTF-8 variables cannot be Kafka properties: skipped, rather than a panic. A `KAFKA_*`
/// variable read for a property (see [`qikchat_bridge::kafka_props::reads_variable`]) is
/// refused instead: skipped, its property kept the bridge's default (a Latin-1
/// `KAFKA_CLIENT_ID`, a password) while `--check-config` called the settings valid. A service
/// link, or one whose property a `-X` flag sets, is skipped as before.
fn environment(flags: &[String]) -> Result<Vec<(String, String)>, config::ConfigError> {
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Ok(k) = k.into_string() else { continue };
        match v.into_string() {
            Ok(v) => env.push((k, v)),
            Err(_) if qikchat_bridge::kafka_props::reads_variable(&k, flags) => {
                return Err(config::ConfigError::Invalid {
                    setting: "KAFKA_* environment",
                    reason: format!(
                        "{k} is not UTF-8 (its value is not shown: it may hold a secret); \
                         librdkafka takes only UTF-8 text"
                    ),
                });
            }
            Err(_) => {}
        }
    }
    Ok(env)
}

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => match config::refusal(&e, &argv) {
            // --help and --version: clap prints them to stdout and exits 0.
            None => e.exit(),
            Some(text) => {
                complain(format_args!("{}", text.trim_end()));
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match cli.command {
        Some(Command::DevKafka {
            partitions,
            topic_prefix,
        }) => match dev_kafka::run(partitions, &topic_prefix, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Its only setting that can be refused.
                let via = via(e.is_usage().then_some("--topic-prefix"), &argv);
                failed(
                    "qikchat-bridge dev-kafka",
                    &format!("{e}{via}"),
                    e.is_usage(),
                )
            }
        },
        Some(Command::Tail(args)) => {
            let env = match environment(&args.kafka_properties) {
                Ok(env) => env,
                Err(e) => return failed("qikchat-bridge tail", &e, true),
            };
            match tail::run(&args, env, &mut std::io::stdout().lock()) {
                Ok(_) => ExitCode::SUCCESS,
                // `tail ... | head -1`: the reader has what it wanted.
                Err(tail::TailError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    ExitCode::SUCCESS
                }
                Err(e) => failed("qikchat-bridge tail", &e, e.is_usage()),
            }
        }
        None => serve(cli.serve, &argv),
    }
}

fn serve(args: config::Args, argv: &[std::ffi::OsString]) -> ExitCode {
    let check_only = args.check_config;
    let read_file = qikchat_bridge::operator_file::read_to_string;
    let env = match environment(&args.kafka_properties) {
        Ok(env) => env,
        Err(e) => return invalid_configuration(&e, e.setting(), argv),
    };
    let config = match Config::from_args(args, env, read_file) {
        Ok(config) => config,
        Err(e) => return invalid_configuration(&e, e.setting(), argv),
    };
    if check_only {
        return match check_config::check(&config) {
            Ok(()) => {
                // A reader that went away (`| head`) has what it wanted; the check itself passed.
                let _ = writeln!(std::io::stdout(), "configuration is valid:\n{config:#?}");
                // What start-up would warn of, so that a check in CI shows it too.
                for caveat in check_config::warnings(&config) {
                    complain(format_args!("qikchat-bridge: warning: {caveat}"));
                }
                ExitCode::SUCCESS
            }
            Err(e) => invalid_configuration(&e, e.setting(), argv),
        };
    }
    if let Err(e) = check_config::spool_dir(&config) {
        return invalid_configuration(&e, e.setting(), argv);
    }
    // Dropped last, after the runtime: it writes the lines still buffered.
    let _log = match telemetry::init(config.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            complain(format_args!("qikchat-bridge: cannot start logging: {e}"));
            return ExitCode::FAILURE;
        }
    };
    qikchat_bridge::open_files::raise_limit(config.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            exit_reason("cannot start the async runtime", &e);
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        // Before anything slow (the producer, the spool's recovery): see `shutdown_signals`.
        let (shutdown, cut) = match shutdown_signals() {
            Ok(s) => s,
            Err(e) => {
                exit_reason("cannot listen for SIGTERM, SIGINT and SIGHUP", &e);
                return ExitCode::FAILURE;
            }
        };
        let listeners = match Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                exit_reason("cannot bind", &e);
                return ExitCode::FAILURE;
            }
        };
        match run_with_cut(config, listeners, shutdown, cut).await {
            Ok(()) => ExitCode::SUCCESS,
            // librdkafka refused a property, or the producer they make (a TLS file missing):
            // a setting that cannot work, as with --check-config.
            Err(e) if matches!(&e, qikchat_bridge::StartError::Producer(p) if p.is_settings()) => {
                exit_reason("cannot start", &e);
                ExitCode::from(EXIT_CONFIG)
            }
            Err(
                e @ (qikchat_bridge::StartError::SpoolFailed(_)
                | qikchat_bridge::StartError::TaskFailed(_)),
            ) => {
                exit_reason("stopped", &e);
                ExitCode::FAILURE
            }
            Err(e) => {
                exit_reason("cannot start", &e);
                ExitCode::FAILURE
            }
        }
    });
    // `run` has flushed the webhook producer and closed the spool. Dropping the runtime would wait for
    // every blocking task, such as a producer replaced by a credential rotation that is still
    // delivering its records (up to its message timeout): those were never answered 200.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if qikchat_bridge::producer::clients_alive() > 0 {
        // Such a client's threads still run (a destroy waiting on a token request, a blocking
        // metadata request, a replaced producer delivering): exit's handlers would free the C
        // libraries' state under them (OpenSSL's, mid-handshake: a crash at SIGTERM, 139 for 0).
        drop(_log);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        signal_hook::low_level::exit(status(code));
    }
    code
}

/// The number an exit code stands for, for an exit that bypasses `main`'s return.
fn status(code: ExitCode) -> i32 {
    if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(EXIT_CONFIG) {
        i32::from(EXIT_CONFIG)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_past_main_keeps_the_status_main_would_have_returned() {
        assert_eq!(status(ExitCode::SUCCESS), 0);
        assert_eq!(status(ExitCode::FAILURE), 1);
        assert_eq!(status(ExitCode::from(EXIT_CONFIG)), 2);
    }
}
