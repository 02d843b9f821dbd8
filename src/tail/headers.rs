//! `tail`'s header map: repeated names kept as arrays, and names rust-rdkafka cannot read skipped
//! without the panic it raises for them.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use serde_json::{Map, Value};

/// Adds one header; a second value for a name turns its entry into an array.
pub(super) fn add(headers: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    let value = value.unwrap_or(Value::Null);
    match headers.get_mut(name) {
        None => {
            headers.insert(name.to_string(), value);
        }
        // A header value is a string, an object or null, so an array is a name seen before.
        Some(Value::Array(values)) => values.push(value),
        Some(first) => *first = Value::Array(vec![first.take(), value]),
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `None` without the panic message a user would read as a crash;
/// panics anywhere else are reported by the hook that was installed before.
pub(super) fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_name_keeps_every_value_in_order() {
        let mut headers = Map::new();
        add(&mut headers, "a", Some("1".into()));
        add(&mut headers, "b", None);
        add(&mut headers, "a", Some("2".into()));
        add(&mut headers, "a", Some("3".into()));
        assert_eq!(
            Value::Object(headers),
            serde_json::json!({"a": ["1", "2", "3"], "b": null})
        );
    }

    #[test]
    fn a_panic_becomes_none_and_the_next_call_still_works() {
        assert_eq!(
            quietly(|| -> u8 { panic!("a name that is not UTF-8") }),
            None
        );
        assert_eq!(quietly(|| 7), Some(7));
    }

    /// Only the header read is quiet: a panic after it (a bug anywhere else in tail) must still
    /// print its message, not end the process with status 101 and not a word on stderr.
    #[test]
    fn panics_after_a_quiet_one_are_reported_again() {
        assert_eq!(
            quietly(|| -> u8 { panic!("a name that is not UTF-8") }),
            None
        );
        assert!(!QUIET.with(|q| q.get()), "still quiet after a panic");
        assert_eq!(quietly(|| 7), Some(7));
        assert!(!QUIET.with(|q| q.get()), "still quiet after a value");
    }

    /// What a user reads on stderr: nothing for the header rust-rdkafka could not read (it would
    /// look like a crash of `tail`), and the message of any later panic (a bug elsewhere must not
    /// end the process without a word). The flag alone does not show which way the hook reads it
    /// (found by mutation testing: an inverted hook, and one never made quiet, both survived).
    /// The test runs itself again in a process of its own, whose first hook is then `quietly`'s.
    #[test]
    fn a_quiet_panic_says_nothing_and_a_later_one_is_printed() {
        const CHILD: &str = "QB_TAIL_HEADERS_PANIC_CHILD";
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(quietly(|| -> u8 { panic!("quiet-header-panic") }), None);
            let loud = std::thread::spawn(|| panic!("loud-later-panic")).join();
            assert!(loud.is_err());
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "tail::headers::tests::a_quiet_panic_says_nothing_and_a_later_one_is_printed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the test in a process of its own");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("loud-later-panic"), "{stderr}");
        assert!(!stderr.contains("quiet-header-panic"), "{stderr}");
    }
}
