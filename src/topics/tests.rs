//! Unit tests of routing: the event → topic map, the fallback and dead-letter topics, keys.

use super::*;

fn map(prefix: &str, pairs: &[&str]) -> Result<TopicMap, ConfigError> {
    let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
    TopicMap::new(prefix, &pairs, DEFAULT_FALLBACK, DEFAULT_DEADLETTER)
}

#[test]
fn default_routes_follow_the_issue() {
    let m = map("", &[]).expect("valid");
    assert_eq!(m.route(EVENT_MESSAGE_IN).topic, "whatsapp.message.in");
    assert_eq!(
        m.route(EVENT_MESSAGE_STATUS).topic,
        "whatsapp.message.status"
    );
    assert_eq!(
        m.route("whatsapp:template:status").topic,
        "whatsapp.unrouted"
    );
    assert_eq!(m.deadletter().topic, "whatsapp.deadletter");
}

/// Each route's event type is the `event_type` label of `qikchat_bridge_events_total`: a status
/// counted as an incoming message, or a dead-lettered body as unrouted, would mislead whoever
/// watches the traffic by kind.
#[test]
fn each_default_route_counts_its_events_under_its_own_label() {
    let m = map("", &[]).expect("valid");
    let label = |r: &Route| r.event_type.as_str();
    assert_eq!(label(m.route(EVENT_MESSAGE_IN)), "message_in");
    assert_eq!(label(m.route(EVENT_MESSAGE_STATUS)), "message_status");
    assert_eq!(label(m.route("whatsapp:template:status")), "unrouted");
    assert_eq!(label(m.deadletter()), "invalid");
    let m = map("", &["x:y=custom"]).expect("valid");
    assert_eq!(label(m.route("x:y")), "other");
}

#[test]
fn the_prefix_applies_to_every_topic() {
    let m = map("prod.", &["x:y=custom"]).expect("valid");
    assert_eq!(
        m.all_topics(),
        vec![
            "prod.custom",
            "prod.whatsapp.deadletter",
            "prod.whatsapp.message.in",
            "prod.whatsapp.message.status",
            "prod.whatsapp.unrouted"
        ]
    );
    assert_eq!(m.route("x:y").event_type, EventType::Other);
}

#[test]
fn a_mapping_replaces_a_default_route() {
    let m = map("", &["whatsapp:message:in=inbox"]).expect("valid");
    assert_eq!(m.route(EVENT_MESSAGE_IN).topic, "inbox");
    assert_eq!(m.route(EVENT_MESSAGE_IN).event_type, EventType::MessageIn);
}

#[test]
fn an_event_routed_twice_is_refused_with_its_name_rather_than_the_last_route_kept() {
    for pairs in [&["a=x", "a=y"][..], &["a=x", "b=z", "a=x"][..]] {
        let err = map("", pairs).expect_err("a second route").to_string();
        assert!(err.starts_with("--topic:"), "{err}");
        assert!(err.contains("the event \"a\" is routed twice"), "{err}");
    }
    // A default route is replaced once, as documented.
    let m = map("", &["whatsapp:message:in=inbox", "b=y"]).expect("valid");
    assert_eq!(m.route(EVENT_MESSAGE_IN).topic, "inbox");
}

#[test]
fn the_deadletter_topic_may_be_no_events_topic_nor_the_fallback() {
    let with = |pairs: &[&str], fallback: &str, deadletter: &str| {
        let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
        TopicMap::new("p.", &pairs, fallback, deadletter).map_err(|e| e.to_string())
    };
    let err = with(&[], DEFAULT_FALLBACK, "whatsapp.message.in").expect_err("shared");
    assert!(err.starts_with("--deadletter-topic:"), "{err}");
    assert!(
        err.contains(
            "p.whatsapp.message.in is also the topic of the event \"whatsapp:message:in\""
        ),
        "{err}"
    );
    let err = with(
        &["x:y=whatsapp.deadletter"],
        DEFAULT_FALLBACK,
        DEFAULT_DEADLETTER,
    )
    .expect_err("routed there");
    assert!(err.contains("the event \"x:y\""), "{err}");
    let err = with(&[], "dead", "dead").expect_err("fallback");
    assert!(err.contains("p.dead is also the fallback topic"), "{err}");
    // Events and the fallback may share a topic.
    let one = with(&["whatsapp:message:status=all"], "all", DEFAULT_DEADLETTER);
    assert!(one.is_ok(), "{one:?}");
}

#[test]
fn invalid_topic_names_and_pairs_are_rejected_with_the_setting_named() {
    let refused = |prefix: &str, pairs: &[&str]| match map(prefix, pairs) {
        Ok(_) => panic!("{prefix:?} {pairs:?} accepted"),
        Err(e) => e.to_string(),
    };
    for pair in [
        "a=b c", "noequals", "=topic", "event=", "e=.", "e=..", "e=ü", " e=t", "e =t",
    ] {
        let err = refused("", &[pair]);
        assert!(err.starts_with("--topic:"), "{pair}: {err}");
    }
    assert!(refused("bad/", &[]).starts_with("--topic-prefix:"));
    // A body with such an event is refused as empty: the route could never be taken.
    let err = refused("", &["\u{feff}=t"]);
    assert!(err.contains("nothing but white space"), "{err}");
    assert!(
        map("", &["e\u{feff}=t"]).is_ok(),
        "an event a body may have"
    );
    // Kafka's limit is 249 characters, prefix included.
    let longest = "t".repeat(249);
    assert!(map("", &[&format!("e={longest}")]).is_ok());
    let err = refused("", &[&format!("e={longest}t")]);
    assert!(err.starts_with("--topic:"), "{err}");
    assert!(map("p.", &[&format!("e={}", &longest[2..])]).is_ok());
    let err = refused("p.", &[&format!("e={}", &longest[1..])]);
    assert!(err.starts_with("--topic:"), "{err}");
    let prefix = "p".repeat(240);
    assert!(refused(&prefix, &[]).starts_with("--topic-prefix:"));
}

#[test]
fn a_refused_topic_name_says_why() {
    let why = |name: &str| validate_topic(name).expect_err(name);
    assert_eq!(why(""), "a topic name cannot be empty");
    assert!(
        why("..").contains("does not allow \".\" or \"..\""),
        "{}",
        why("..")
    );
    assert!(why("a/b").contains("holds '/'"), "{}", why("a/b"));
    assert!(why("é").contains("holds 'é'"), "{}", why("é"));
    let long = "a".repeat(253);
    assert!(
        why(&long).ends_with("is 253 characters long: a Kafka topic name may have at most 249"),
        "{}",
        why(&long)
    );
    // The name a --topic-prefix makes too long is the one shown, with its length.
    let err = map(&"a".repeat(230), &[])
        .expect_err("too long")
        .to_string();
    assert!(
        err.starts_with("--topic-prefix:") && err.contains("characters long"),
        "{err}"
    );
}

/// With a prefix, `EVENT=` would name the prefix alone (`prod.`), a valid topic: the pair is
/// still refused for its missing topic, not routed to it.
#[test]
fn a_pair_without_a_topic_is_refused_even_behind_a_prefix() {
    let err = map("prod.", &["x:y="]).expect_err("no topic").to_string();
    assert!(err.contains("is not EVENT=TOPIC"), "{err}");
}

/// Events may share a topic: it is listed once, as it is created, checked and counted once.
#[test]
fn a_topic_shared_by_events_is_listed_once() {
    let m = map("", &["a=shared", "b=shared", "whatsapp:message:in=shared"]).expect("valid");
    assert_eq!(
        m.all_topics(),
        vec![
            "shared",
            "whatsapp.deadletter",
            "whatsapp.message.status",
            "whatsapp.unrouted"
        ]
    );
}
