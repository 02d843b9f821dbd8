//! The consumer contract, docs/asyncapi.yaml, holds: its JSON Schemas accept every payload the
//! tests, the docs and shared/ post (and refuse broken ones), and the records the real bridge
//! writes carry exactly the topic, key and headers the document declares.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{TestApp, PASS, USER};
use jsonschema::Validator;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// The document's channel ids.
const MESSAGE_IN: &str = "messageIn";
const MESSAGE_STATUS: &str = "messageStatus";
const UNROUTED: &str = "unrouted";
const DEADLETTER: &str = "deadletter";
const CHANNELS: [&str; 4] = [MESSAGE_IN, MESSAGE_STATUS, UNROUTED, DEADLETTER];

/// Conditions a header's `x-present-when` may name (anything else fails the tests).
const WHEN_PAYLOAD_ID: &str =
    "payload.id is a number, or a string without control characters or unpaired surrogate escapes";
/// Always, for the records these tests make: the host's clock is set.
const WHEN_CLOCK: &str =
    "the bridge's clock reads a time from 1970 to 9999 (always, on a host whose clock is set)";
const WHEN_CLOUDEVENTS: &str = "--cloudevents is on";
/// Never for the records these tests make: they are posted, not spooled and refused on replay
/// (`src/delivery/replay/tests.rs` checks that header).
const WHEN_DIVERTED: &str = "a spooled record was refused by its own topic";

// ----------------------------------------------------------------------------------------------
// The document

struct Contract {
    doc: Value,
}

impl Contract {
    fn load() -> Contract {
        let path = manifest_dir().join("docs/asyncapi.yaml");
        let text = std::fs::read_to_string(&path).expect("docs/asyncapi.yaml is readable");
        let doc: Value = serde_norway::from_str(&text).expect("docs/asyncapi.yaml is YAML");
        assert_eq!(doc["asyncapi"], "3.0.0", "an AsyncAPI 3.0.0 document");
        Contract { doc }
    }

    /// Follows local `$ref`s (`#/...`) until a value that is not a reference.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                return v;
            };
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references are used, not {r}"));
            v = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{r} points at nothing"));
        }
        panic!("reference loop")
    }

    fn channel(&self, id: &str) -> &Value {
        let channel = &self.doc["channels"][id];
        assert!(channel.is_object(), "channel {id} is declared");
        channel
    }

    fn address(&self, id: &str) -> &str {
        self.channel(id)["address"]
            .as_str()
            .expect("a channel address")
    }

    /// The channel's one message.
    fn message(&self, id: &str) -> &Value {
        let messages = self.channel(id)["messages"].as_object().expect("messages");
        assert_eq!(
            messages.len(),
            1,
            "channel {id} carries one kind of message"
        );
        self.resolve(messages.values().next().expect("one message"))
    }

    fn payload_schema(&self, id: &str) -> &Value {
        &self.message(id)["payload"]
    }

    fn headers_schema(&self, id: &str) -> &Value {
        self.resolve(&self.message(id)["headers"])
    }

    fn key_schema(&self, id: &str) -> &Value {
        self.resolve(&self.message(id)["bindings"]["kafka"]["key"])
    }

    /// `components.schemas`, with references rewritten for a standalone draft-07 schema.
    fn definitions(&self) -> Value {
        let schemas = serde_json::to_string(&self.doc["components"]["schemas"]).expect("json");
        serde_json::from_str(&schemas.replace("\"#/components/schemas/", "\"#/definitions/"))
            .expect("json")
    }

    /// A validator for `schema` (a document schema or a reference to one).
    fn validator(&self, schema: &Value) -> Validator {
        let schema = serde_json::to_string(schema)
            .expect("json")
            .replace("\"#/components/schemas/", "\"#/definitions/");
        let root = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": self.definitions(),
            "allOf": [serde_json::from_str::<Value>(&schema).expect("json")],
        });
        jsonschema::draft7::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the document's schema compiles: {e}"))
    }

    /// The channel a body belongs in, by the document: the one whose payload's `event` is that
    /// constant, else the fallback for any other string `event`, else the dead-letter channel.
    fn channel_for(&self, body: Option<&Value>) -> &'static str {
        let Some(event) = body.and_then(|b| b.get("event")).and_then(Value::as_str) else {
            return DEADLETTER;
        };
        CHANNELS
            .into_iter()
            .find(|id| {
                let payload = self.resolve(self.payload_schema(id));
                payload["properties"]["event"]["const"].as_str() == Some(event)
            })
            .unwrap_or(UNROUTED)
    }

    /// The header names a record of `channel` must carry, exactly.
    fn expected_headers(
        &self,
        channel: &str,
        body: Option<&Value>,
        cloudevents: bool,
    ) -> BTreeSet<String> {
        let schema = self.headers_schema(channel);
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .expect("headers list the required ones")
            .iter()
            .map(|n| n.as_str().expect("name").to_string())
            .collect();
        let mut names = required.clone();
        for (name, property) in schema["properties"].as_object().expect("header properties") {
            let property = self.resolve(property);
            match property.get("x-present-when").and_then(Value::as_str) {
                None => assert!(
                    required.contains(name),
                    "header {name} of {channel} is neither required nor conditional"
                ),
                Some(WHEN_PAYLOAD_ID) => {
                    if body
                        .and_then(|b| b.pointer("/payload/id"))
                        .is_some_and(|id| {
                            id.is_number()
                                || id
                                    .as_str()
                                    .is_some_and(|s| !s.chars().any(char::is_control))
                        })
                    {
                        names.insert(name.clone());
                    }
                }
                Some(WHEN_CLOCK) => {
                    names.insert(name.clone());
                }
                Some(WHEN_CLOUDEVENTS) => {
                    if cloudevents {
                        names.insert(name.clone());
                    }
                }
                Some(WHEN_DIVERTED) => {}
                Some(other) => panic!(
                    "header {name}: x-present-when {other:?} is new; teach tests/contract.rs it"
                ),
            }
        }
        names
    }

    /// The key a record of `channel` must carry, by the key's declared rule.
    fn expected_key(&self, channel: &str, body: Option<&Value>) -> Option<String> {
        let schema = self.key_schema(channel);
        if schema["type"] == "null" {
            return None;
        }
        let pointers = schema["x-key-from"].as_array().expect("x-key-from");
        let body = body?;
        let first = pointers.iter().find_map(|p| {
            match body.pointer(p.as_str().expect("a JSON pointer"))? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        })?;
        // The documented rule: leading `+` signs and white space, in any order, and trailing
        // white space removed; white space as Unicode's property has it, and U+FEFF.
        let space = |c: char| c.is_whitespace() || c == '\u{feff}';
        let key = first
            .trim_start_matches(|c: char| c == '+' || space(c))
            .trim_end_matches(space);
        (!key.is_empty()).then(|| key.to_string())
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The JSON files of a directory, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Every payload the project posts: tests/fixtures, docs/examples and, when it is there,
/// ../shared/payloads. Returns (file name for messages, bytes).
fn all_payloads() -> Vec<(String, Vec<u8>)> {
    let root = manifest_dir();
    let mut dirs = vec![root.join("tests/fixtures"), root.join("docs/examples")];
    let shared = root.join("../shared/payloads");
    if shared.is_dir() {
        dirs.push(shared);
    }
    let mut out = Vec::new();
    for dir in dirs {
        let files = json_files(&dir);
        assert!(!files.is_empty(), "{} holds payloads", dir.display());
        for f in files {
            let bytes = std::fs::read(&f).expect("payload readable");
            out.push((f.display().to_string(), bytes));
        }
    }
    out
}

fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

// ----------------------------------------------------------------------------------------------
// The document alone

#[test]
fn the_document_declares_one_channel_per_topic_and_well_formed_json_schemas() {
    let c = Contract::load();
    let ids: BTreeSet<&str> = c.doc["channels"]
        .as_object()
        .expect("channels")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ids, CHANNELS.into_iter().collect::<BTreeSet<_>>());
    let addresses: BTreeSet<&str> = CHANNELS.iter().map(|id| c.address(id)).collect();
    assert_eq!(
        addresses,
        BTreeSet::from([
            "whatsapp.deadletter",
            "whatsapp.message.in",
            "whatsapp.message.status",
            "whatsapp.unrouted"
        ])
    );
    for (name, schema) in c.definitions().as_object().expect("schemas") {
        if let Err(e) = jsonschema::draft7::meta::validate(schema) {
            panic!("components.schemas.{name} is not a draft-07 JSON Schema: {e}");
        }
    }
    for id in CHANNELS {
        c.validator(c.payload_schema(id));
        c.validator(c.headers_schema(id));
        c.validator(c.key_schema(id));
    }
}

#[test]
fn every_payload_the_tests_the_docs_and_shared_post_matches_its_channel_schema() {
    let c = Contract::load();
    let validators: BTreeMap<&str, Validator> = CHANNELS
        .into_iter()
        .map(|id| (id, c.validator(c.payload_schema(id))))
        .collect();
    let mut failures = Vec::new();
    let payloads = all_payloads();
    for (name, bytes) in &payloads {
        let body: Value =
            serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let channel = c.channel_for(Some(&body));
        assert!(
            channel == MESSAGE_IN || channel == MESSAGE_STATUS,
            "{name} is a message or a status, not {channel}"
        );
        for e in errors(&validators[channel], &body) {
            failures.push(format!("{name} ({channel}): {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(payloads.len() >= 20, "{} payloads", payloads.len());
}

#[test]
fn the_examples_cover_every_message_type_and_status_the_document_lists() {
    let c = Contract::load();
    let schemas = &c.doc["components"]["schemas"];
    let listed = |pointer: &str| -> BTreeSet<String> {
        schemas
            .pointer(pointer)
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{pointer} lists examples"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    let mut types = BTreeSet::new();
    let mut replies = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    for f in json_files(&manifest_dir().join("docs/examples")) {
        let body: Value = serde_json::from_slice(&std::fs::read(&f).expect("read")).expect("json");
        let message = &body["payload"]["message"];
        if let Some(t) = message["type"].as_str() {
            types.insert(t.to_string());
        }
        if let Some(t) = message["interactive"]["type"].as_str() {
            replies.insert(t.to_string());
        }
        if let Some(s) = body["payload"]["status"].as_str() {
            statuses.insert(s.to_string());
        }
    }
    assert_eq!(
        types,
        listed("/IncomingMessage/properties/type/examples"),
        "one docs/examples file per message type"
    );
    assert_eq!(
        replies,
        listed("/InteractiveReply/properties/type/examples")
    );
    assert_eq!(
        statuses,
        listed("/MessageStatusPayload/properties/status/examples"),
        "one docs/examples file per status"
    );
}

#[test]
fn broken_bodies_fail_the_schema_of_the_channel_they_would_land_in() {
    let c = Contract::load();
    let text = |message: Value| json!({"event": "whatsapp:message:in", "payload": {"id": "a", "message": message}});
    let status = |payload: Value| json!({"event": "whatsapp:message:status", "payload": payload});
    let cases: Vec<(&str, Value)> = vec![
        ("no payload", json!({"event": "whatsapp:message:in"})),
        (
            "payload not an object",
            json!({"event": "whatsapp:message:status", "payload": "read"}),
        ),
        (
            "no message",
            json!({"event": "whatsapp:message:in", "payload": {"id": "a"}}),
        ),
        (
            "no message id",
            json!({"event": "whatsapp:message:in", "payload": {"message": {"from": "91", "type": "text", "text": {"body": "hi"}}}}),
        ),
        (
            "no sender",
            text(json!({"type": "text", "text": {"body": "hi"}})),
        ),
        (
            "no type",
            text(json!({"from": "91", "text": {"body": "hi"}})),
        ),
        (
            "text without its text",
            text(json!({"from": "91", "type": "text"})),
        ),
        (
            "text body not a string",
            text(json!({"from": "91", "type": "text", "text": {"body": 7}})),
        ),
        (
            "image without a media id",
            text(json!({"from": "91", "type": "image", "image": {"url": "u"}})),
        ),
        (
            "document without its document",
            text(json!({"from": "91", "type": "document"})),
        ),
        (
            "location as strings",
            text(
                json!({"from": "91", "type": "location", "location": {"latitude": "18.5", "longitude": "73.8"}}),
            ),
        ),
        (
            "contacts not a list",
            text(
                json!({"from": "91", "type": "contacts", "contacts": {"name": {"formatted_name": "R"}}}),
            ),
        ),
        (
            "button reply without its reply",
            text(
                json!({"from": "91", "type": "interactive", "interactive": {"type": "button_reply"}}),
            ),
        ),
        (
            "list reply without a title",
            text(
                json!({"from": "91", "type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "x"}}}),
            ),
        ),
        (
            "reaction without the message",
            text(json!({"from": "91", "type": "reaction", "reaction": {"emoji": "x"}})),
        ),
        (
            "status without status",
            status(json!({"id": "a", "to": "+91"})),
        ),
        (
            "status as a number",
            status(json!({"id": "a", "to": "+91", "status": 3})),
        ),
        (
            "error code as text",
            status(json!({"id": "a", "status": "failed", "errors": [{"code": "131047"}]})),
        ),
        ("event as a number", json!({"event": 7, "payload": {}})),
        (
            "event missing",
            json!({"payload": {"id": "a", "to": "+91"}}),
        ),
    ];
    let event_channels = [MESSAGE_IN, MESSAGE_STATUS, UNROUTED];
    let validators: BTreeMap<&str, Validator> = event_channels
        .into_iter()
        .map(|id| (id, c.validator(c.payload_schema(id))))
        .collect();
    for (what, body) in &cases {
        match c.channel_for(Some(body)) {
            DEADLETTER => {
                // Not an event at all: no event schema may accept it.
                for id in event_channels {
                    assert!(
                        !validators[id].is_valid(body),
                        "{id} accepts {what}: {body}"
                    );
                }
            }
            id => assert!(
                !validators[id].is_valid(body),
                "{id} accepts {what}: {body}"
            ),
        }
    }
    // And the valid shapes next to them pass, so the cases fail for the reason they name.
    for body in [
        text(json!({"from": "91", "type": "text", "text": {"body": "hi"}})),
        text(json!({"from": "91", "type": "order", "order": {"anything": true}})),
        status(json!({"id": "a", "to": "+91", "status": "deleted", "extra": [1]})),
    ] {
        let id = c.channel_for(Some(&body));
        assert_eq!(
            errors(&validators[id], &body),
            Vec::<String>::new(),
            "{body}"
        );
    }
}

#[test]
fn the_documents_own_examples_match_their_headers_and_payload_schemas() {
    let c = Contract::load();
    let mut checked = 0;
    for id in CHANNELS {
        let message = c.message(id);
        let (payload, headers) = (
            c.validator(c.payload_schema(id)),
            c.validator(c.headers_schema(id)),
        );
        for example in message["examples"].as_array().into_iter().flatten() {
            assert_eq!(errors(&payload, &example["payload"]), Vec::<String>::new());
            assert_eq!(errors(&headers, &example["headers"]), Vec::<String>::new());
            let names: BTreeSet<String> = example["headers"]
                .as_object()
                .expect("example headers")
                .keys()
                .cloned()
                .collect();
            let body = Some(&example["payload"]).filter(|p| p.is_object());
            assert_eq!(names, c.expected_headers(id, body, false), "{id} example");
            checked += 1;
        }
    }
    assert!(checked >= 3);
}

// ----------------------------------------------------------------------------------------------
// The records the bridge writes

async fn post(app: &TestApp, body: &[u8]) -> u16 {
    app.http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Posts every body, reads every record back, and checks each against the document; returns
/// the records by the body they came from.
async fn post_and_check(app: &TestApp, bodies: &[Vec<u8>], cloudevents: bool) -> Vec<common::Got> {
    let c = Contract::load();
    let mut by_channel: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, bytes) in bodies.iter().enumerate() {
        let json: Option<Value> = serde_json::from_slice(bytes).ok();
        let channel = c.channel_for(json.as_ref());
        let status = post(app, bytes).await;
        let want = if channel == DEADLETTER { 400 } else { 200 };
        assert_eq!(status, want, "{}", String::from_utf8_lossy(bytes));
        by_channel.entry(channel).or_default().push(i);
    }
    let mut got: Vec<Option<common::Got>> = vec![None; bodies.len()];
    for (channel, indexes) in &by_channel {
        let topic = c.address(channel);
        // The document's routing agrees with the bridge's.
        for &i in indexes {
            let routed = match serde_json::from_slice::<Value>(&bodies[i])
                .ok()
                .filter(|_| *channel != DEADLETTER)
            {
                Some(body) => app
                    .config
                    .topics
                    .route(body["event"].as_str().expect("event"))
                    .topic
                    .clone(),
                None => app.config.topics.deadletter().topic.clone(),
            };
            assert_eq!(routed, topic, "{}", String::from_utf8_lossy(&bodies[i]));
        }
        let records = app.records(topic, indexes.len(), WAIT).await;
        assert_eq!(records.len(), indexes.len(), "records in {topic}");
        let headers_schema = c.validator(c.headers_schema(channel));
        let key_schema = c.validator(c.key_schema(channel));
        for r in records {
            let i = *indexes
                .iter()
                .find(|&&i| got[i].is_none() && bodies[i] == r.value)
                .unwrap_or_else(|| panic!("a record in {topic} no body was posted as: {r:?}"));
            let body: Option<Value> = serde_json::from_slice(&r.value).ok();
            let body = body.as_ref().filter(|_| *channel != DEADLETTER);
            let what = String::from_utf8_lossy(&r.value).into_owned();

            assert_eq!(r.topic, topic);
            assert_eq!(r.key, c.expected_key(channel, body), "key of {what}");
            let key = r.key.as_ref().map_or(Value::Null, |k| json!(k));
            assert_eq!(
                errors(&key_schema, &key),
                Vec::<String>::new(),
                "key of {what}"
            );

            let names: BTreeSet<String> = r.headers.keys().cloned().collect();
            assert_eq!(
                names,
                c.expected_headers(channel, body, cloudevents),
                "header names of {what}"
            );
            let headers = serde_json::to_value(&r.headers).expect("json");
            assert_eq!(
                errors(&headers_schema, &headers),
                Vec::<String>::new(),
                "{what}"
            );

            // Values the descriptions promise.
            if let Some(body) = body {
                assert_eq!(Some(r.headers["event"].as_str()), body["event"].as_str());
                if let Some(id) = body["payload"]["id"].as_str() {
                    assert_eq!(r.headers["message-id"], id);
                }
            }
            assert_eq!(r.headers["content-type"], "application/json");
            let received =
                humantime::parse_rfc3339(&r.headers["received-at"]).expect("RFC 3339 time");
            let received_ms = received
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis() as i64;
            assert_eq!(r.timestamp, Some(received_ms), "timestamp is received-at");
            got[i] = Some(r);
        }
    }
    got.into_iter()
        .map(|g| g.expect("every body became a record"))
        .collect()
}

fn example_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for (_, bytes) in all_payloads() {
        if !bodies.contains(&bytes) {
            bodies.push(bytes);
        }
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_becomes_a_record_with_exactly_the_declared_key_and_headers() {
    let app = TestApp::start(&["--ack-timeout", "10s"]).await;
    let mut bodies = example_bodies();
    // An event kind with no route, with and without an id; and bodies that are no event at all.
    bodies.extend(
        [
            r#"{"event":"whatsapp:account:update","payload":{"id":"Ev1","to":"+919812345670"}}"#,
            // Numbers where Qikchat writes strings: taken as written, for the key and message-id.
            r#"{"event":"whatsapp:message:status","payload":{"id":42,"status":"read","to":919812345670}}"#,
            r#"{"event":"ping"}"#,
            // White space the key drops: a byte-order mark and an ideographic space.
            r#"{"event":"whatsapp:message:in","payload":{"message":{"from":"\ufeff+919812345670\u3000","type":"text","text":{"body":"hi"}}}}"#,
            r#"{not json"#,
            r#"{"payload":{"id":"x","to":"+919812345670"}}"#,
            r#"{"event":7,"payload":{"id":"x"}}"#,
            r#"["whatsapp:message:in"]"#,
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    let records = post_and_check(&app, &bodies, false).await;
    assert_eq!(records.len(), bodies.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cloudevents_on_event_records_add_exactly_the_ce_headers_and_dead_letters_do_not() {
    let app = TestApp::start(&["--cloudevents", "--ack-timeout", "10s"]).await;
    let bodies: Vec<Vec<u8>> = [
        common::TEXT,
        common::STATUS,
        br#"{"event":"ping"}"#.as_slice(),
        br#"{not json"#.as_slice(),
    ]
    .map(<[u8]>::to_vec)
    .to_vec();
    let records = post_and_check(&app, &bodies, true).await;
    for r in &records[..3] {
        assert_eq!(r.headers["ce_specversion"], "1.0");
        assert_eq!(r.headers["ce_id"], r.headers["body-sha256"]);
        assert_eq!(r.headers["ce_source"], "qikchat-bridge");
        assert_eq!(r.headers["ce_type"], r.headers["event"]);
        assert_eq!(r.headers["ce_time"], r.headers["received-at"]);
    }
    assert!(!records[3].headers.keys().any(|k| k.starts_with("ce_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_schemas_refuse_is_still_forwarded_byte_for_byte() {
    let c = Contract::load();
    let body = br#"{"event":"whatsapp:message:in","payload":{"id":"odd","message":{"from":"+919812345670","type":"text","text":{"body":42}},"new":[1,2]}}"#;
    let parsed: Value = serde_json::from_slice(body).expect("json");
    assert!(!c.validator(c.payload_schema(MESSAGE_IN)).is_valid(&parsed));

    let app = TestApp::start(&[]).await;
    let records = post_and_check(&app, &[body.to_vec()], false).await;
    assert_eq!(records[0].value, body);
    assert_eq!(records[0].key.as_deref(), Some("919812345670"));
}
