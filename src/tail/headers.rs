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
}
