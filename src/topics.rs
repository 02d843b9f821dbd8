//! The topic map: which Kafka topic each Qikchat event goes to, the fallback and dead-letter
//! topics, and how the record key is chosen.

use std::collections::HashMap;
use std::fmt;

use clap::ValueEnum;

use crate::config::{invalid, ConfigError};

pub const EVENT_MESSAGE_IN: &str = "whatsapp:message:in";
pub const EVENT_MESSAGE_STATUS: &str = "whatsapp:message:status";
pub const DEFAULT_FALLBACK: &str = "whatsapp.unrouted";
pub const DEFAULT_DEADLETTER: &str = "whatsapp.deadletter";

/// Bounded label for metrics: never the raw event name, which the sender controls.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    MessageIn,
    MessageStatus,
    /// An event routed by an operator-configured mapping.
    Other,
    Unrouted,
    Invalid,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::MessageIn,
        EventType::MessageStatus,
        EventType::Other,
        EventType::Unrouted,
        EventType::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageIn => "message_in",
            EventType::MessageStatus => "message_status",
            EventType::Other => "other",
            EventType::Unrouted => "unrouted",
            EventType::Invalid => "invalid",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which field becomes the record key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyStrategy {
    /// The customer's number (`payload.message.from`, else `payload.to`, else `payload.id`), so a
    /// conversation's messages and statuses share a partition and keep their order.
    Conversation,
    /// `payload.id`.
    MessageId,
    /// No key: records spread over partitions.
    None,
}

/// Where an event goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub topic: String,
    pub event_type: EventType,
}

#[derive(Clone, PartialEq, Eq)]
pub struct TopicMap {
    routes: HashMap<String, Route>,
    fallback: Route,
    deadletter: Route,
}

impl TopicMap {
    pub fn new(
        prefix: &str,
        pairs: &[String],
        fallback: &str,
        deadletter: &str,
    ) -> Result<TopicMap, ConfigError> {
        let topic = |name: &str, setting: &'static str| -> Result<String, ConfigError> {
            let full = format!("{prefix}{name}");
            validate_topic(&full).map_err(|r| invalid(setting, r))?;
            Ok(full)
        };
        let mut routes = HashMap::new();
        let defaults = [
            (
                EVENT_MESSAGE_IN,
                "whatsapp.message.in",
                EventType::MessageIn,
            ),
            (
                EVENT_MESSAGE_STATUS,
                "whatsapp.message.status",
                EventType::MessageStatus,
            ),
        ];
        for (event, name, event_type) in defaults {
            let topic = topic(name, "--topic-prefix")?;
            routes.insert(event.to_string(), Route { topic, event_type });
        }
        // The pair each event was routed by, to refuse a second route for it.
        let mut routed: HashMap<&str, &str> = HashMap::new();
        for pair in pairs {
            let (event, name) = pair
                .split_once('=')
                .filter(|(e, t)| !e.is_empty() && !t.is_empty())
                .ok_or_else(|| invalid("--topic", format!("{pair:?} is not EVENT=TOPIC")))?;
            // Never equal to a sender's event: the route would be dead while its events went to
            // the fallback topic (`a=x, b=y` in BRIDGE_TOPICS), as `--auth` refuses its twin.
            if event.trim() != event {
                return Err(invalid(
                    "--topic",
                    format!(
                        "{pair:?} has a space at either end of its event name (a list is \
                         written without spaces after its commas)"
                    ),
                ));
            }
            // A body with that event is refused as empty (400), so the route could never be taken.
            if event.chars().all(crate::record::is_space) {
                return Err(invalid(
                    "--topic",
                    format!(
                        "{pair:?} routes an event name of nothing but white space, which a body \
                         is refused for"
                    ),
                ));
            }
            // Which one was meant? Keeping the last silently would drop a route the operator
            // believes in force (`KAFKA_*` refuses two variables for one property alike).
            if let Some(first) = routed.insert(event, pair) {
                return Err(invalid(
                    "--topic",
                    format!(
                        "the event {event:?} is routed twice ({first:?}, then {pair:?}): give \
                         each event one route"
                    ),
                ));
            }
            let event_type = match event {
                EVENT_MESSAGE_IN => EventType::MessageIn,
                EVENT_MESSAGE_STATUS => EventType::MessageStatus,
                _ => EventType::Other,
            };
            let topic = topic(name, "--topic")?;
            routes.insert(event.to_string(), Route { topic, event_type });
        }
        let map = TopicMap {
            routes,
            fallback: Route {
                topic: topic(fallback, "--fallback-topic")?,
                event_type: EventType::Unrouted,
            },
            deadletter: Route {
                topic: topic(deadletter, "--deadletter-topic")?,
                event_type: EventType::Invalid,
            },
        };
        map.deadletter_apart()?;
        Ok(map)
    }

    /// Dead-letter records are bodies the bridge refused (often not JSON, with no `event` or
    /// key): on an event's topic, or the fallback's, its consumers would read records that are
    /// no webhook, and a record Kafka refused there for good would be moved to where it was
    /// refused. Events may share topics with each other, as an operator who wants one topic may.
    fn deadletter_apart(&self) -> Result<(), ConfigError> {
        let dead = &self.deadletter.topic;
        let mut events: Vec<&str> = self
            .routes
            .iter()
            .filter(|(_, r)| &r.topic == dead)
            .map(|(e, _)| e.as_str())
            .collect();
        events.sort_unstable();
        let shared = match (events.first(), &self.fallback.topic == dead) {
            (Some(event), _) => format!("the topic of the event {event:?}"),
            (None, true) => "the fallback topic (--fallback-topic)".to_string(),
            (None, false) => return Ok(()),
        };
        Err(invalid(
            "--deadletter-topic",
            format!(
                "{dead} is also {shared}: its consumers would read the bodies the bridge \
                 refused, which are no webhook (not JSON, no event); give invalid bodies a topic \
                 of their own"
            ),
        ))
    }

    /// The route for an event; unknown events go to the fallback topic, so a sender can never
    /// create topics by inventing event names.
    pub fn route(&self, event: &str) -> &Route {
        self.routes.get(event).unwrap_or(&self.fallback)
    }

    pub fn deadletter(&self) -> &Route {
        &self.deadletter
    }

    /// Every topic the bridge may write, sorted and without repeats.
    pub fn all_topics(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .routes
            .values()
            .chain([&self.fallback, &self.deadletter])
            .map(|r| r.topic.clone())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

impl fmt::Debug for TopicMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut routes: Vec<_> = self.routes.iter().map(|(e, r)| (e, &r.topic)).collect();
        routes.sort();
        f.debug_struct("TopicMap")
            .field("routes", &routes)
            .field("fallback", &self.fallback.topic)
            .field("deadletter", &self.deadletter.topic)
            .finish()
    }
}

/// Kafka's own rule for topic names, refused with the reason: empty, `.` or `..`, a character
/// other than `A`-`Z`, `a`-`z`, `0`-`9`, `.`, `_` and `-` (the first one named), or over 249.
pub(crate) fn validate_topic(name: &str) -> Result<(), String> {
    const MAX: usize = 249;
    if name.is_empty() {
        return Err("a topic name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a valid Kafka topic name: Kafka does not allow \".\" or \"..\""
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{name:?} holds {c:?}: a topic name may only contain letters, digits, '.', '_' and '-'"
        ));
    }
    // Only ASCII is left: its length in bytes is its length in characters.
    if name.len() > MAX {
        return Err(format!(
            "{name:?} is {} characters long: a Kafka topic name may have at most {MAX}",
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
