//! Every bad input gets a clear status and JSON message; authenticated bodies are never lost.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, PASS, STATUS, USER};

async fn json(r: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON error body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused_with_400_and_kept_in_the_dead_letter_topic() {
    let app = TestApp::start(&[]).await;
    let body: &'static [u8] = b"{\"event\": \"whatsapp:message:in\", \"payload\": {";
    let response = app.post(body).await;
    assert_eq!(response.status(), 400);
    let request_id = common::request_id(&response);
    let err = json(response).await;
    assert_eq!(err["error"], "invalid_payload");
    assert!(
        err["message"]
            .as_str()
            .expect("text")
            .ends_with("the body was kept in the dead-letter topic"),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .expect("text")
            .contains("not valid JSON"),
        "{err}"
    );

    let got = app
        .records("whatsapp.deadletter", 1, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value, body);
    assert_eq!(got[0].headers["request-id"], request_id);
    assert!(
        got[0].headers["deadletter-reason"].contains("not valid JSON"),
        "{:?}",
        got[0].headers
    );
    assert!(!got[0].headers.contains_key("event"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_a_string_event_is_refused_and_dead_lettered() {
    let app = TestApp::start(&[]).await;
    for (body, reason) in [
        (&br#"{"payload":{}}"#[..], "`event` is missing"),
        (br#"{"event":7}"#, "`event` is not a string"),
        (br#"[{"event":"x"}]"#, "not a JSON object"),
    ] {
        let response = app.post(body).await;
        assert_eq!(response.status(), 400);
        assert!(json(response).await["message"]
            .as_str()
            .expect("text")
            .contains(reason));
    }
    let got = app
        .records("whatsapp.deadletter", 3, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_mib_body_is_refused_with_413_from_its_content_length() {
    let app = TestApp::start(&[]).await;
    // Refused from its Content-Length, before the body is read: only the head is sent, since
    // a client still writing the body when the 413 closes the connection gets a broken pipe
    // instead of the answer (reqwest did, now and then).
    let mut s = common::raw_request(app.addr, 2 * 1024 * 1024, b"").await;
    let answer = common::read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""error":"too_large""#), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_cut_off_while_reading_and_produces_nothing() {
    let app = TestApp::start(&["--max-body-bytes", "1000"]).await;
    // A status the bridge would take whole, were it not over the limit.
    let mut first = br#"{"event":"whatsapp:message:status","payload":{"id":"1","pad":""#.to_vec();
    first.resize(600, b'x');
    let mut second = vec![b'x'; 600];
    second.extend_from_slice(br#""}}"#);
    let chunks = futures_chunks(vec![first, second]);
    let response = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    app.assert_nothing_stored_before_now().await;
}

fn futures_chunks(
    parts: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(parts.into_iter().map(Ok))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_body_is_refused_with_400() {
    let app = TestApp::start(&[]).await;
    let response = app.post(b"").await;
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["message"], "body is empty");
    app.assert_nothing_stored_before_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_broken_chunked_encoding_is_refused_with_400_and_produces_nothing() {
    let app = TestApp::start(&[]).await;
    // A chunk size that is not hexadecimal.
    let mut s = common::raw_framed(
        app.addr,
        "transfer-encoding: chunked",
        b"zz\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    let answer = common::read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""error":"bad_request""#), "{answer}");
    // A broken body, not a client that went away: said so, answered like any refusal, and
    // counted as one (found by mutation testing, which took every read error for a reset). What
    // was broken is named: hyper's own text said only that it could not read a body.
    assert!(
        answer.contains(r#""message":"body could not be read"#)
            && answer.to_ascii_lowercase().contains("chunk size"),
        "{answer}"
    );
    let head = answer.to_ascii_lowercase();
    assert!(
        head.contains("x-request-id: ") && head.contains("connection: close"),
        "{answer}"
    );
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"qikchat_bridge_requests_total{outcome="invalid",status="400"} 1"#),
        "{metrics}"
    );
    app.assert_nothing_stored_before_now().await;
}

/// RFC 9112, section 3.2. hyper leaves the check to the server; the body is read and dropped,
/// so the connection still takes the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_1_request_without_a_host_header_is_refused_with_400_and_produces_nothing() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::start(&[]).await;
    let head = common::post_head(&format!("content-length: {}", STATUS.len()));
    let without_host = head.replacen("host: x\r\n", "", 1);
    assert_ne!(without_host, head);
    let mut s = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    s.write_all(without_host.as_bytes()).await.expect("head");
    s.write_all(STATUS).await.expect("body");
    let answer = common::read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(r#""message":"an HTTP/1.1 request must have a Host header""#),
        "{answer}"
    );
    s.write_all(&common::post_bytes(STATUS))
        .await
        .expect("the next request");
    let next = common::read_answer(&mut s).await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    let got = app
        .records("whatsapp.message.status", 2, Duration::from_secs(3))
        .await;
    assert_eq!(got.len(), 1, "only the request with a Host was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_other_than_chunked_is_refused_with_501_and_nothing_is_dead_lettered() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::start(&[]).await;
    // hyper undoes only the chunked framing: the body would arrive as gzip bytes.
    let mut s = common::raw_framed(
        app.addr,
        "transfer-encoding: gzip, chunked",
        b"4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n",
    )
    .await;
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(answer.contains(r#""error":"not_implemented""#), "{answer}");
    // The sender's to fix, so it says what to send instead (`chunked, chunked` gets the same).
    assert!(
        answer.contains("chunked, applied once: send the body uncompressed"),
        "{answer}"
    );
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics
            .contains(r#"qikchat_bridge_requests_total{outcome="not_implemented",status="501"} 1"#),
        "{metrics}"
    );
    app.assert_nothing_stored_before_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_json_content_type_is_refused_with_415() {
    let app = TestApp::start(&[]).await;
    let response = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .header("content-type", "text/plain")
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);
    app.assert_nothing_stored_before_now().await;
    let ok = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_are_404_and_other_methods_405() {
    let app = TestApp::start(&[]).await;
    let r = app
        .http
        .post(format!("http://{}/other", app.addr))
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let r = app.http.get(app.url()).send().await.expect("request");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(json(r).await["error"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_webhook_path_is_served_and_the_default_one_is_then_404() {
    let app = TestApp::start(&["--webhook-path", "/hooks/qikchat"]).await;
    let post = |path: &str| {
        app.http
            .post(format!("http://{}{path}", app.addr))
            .basic_auth(USER, Some(PASS))
            .body(STATUS)
            .send()
    };
    assert_eq!(post("/hooks/qikchat").await.expect("request").status(), 200);
    assert_eq!(post("/webhook").await.expect("request").status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_path_is_matched_however_a_sender_spells_it_but_not_with_a_slash_escaped() {
    let app = TestApp::start(&["--webhook-path", "/hooks/%7Eacme/caf%C3%A9"]).await;
    // Written by hand: HTTP clients would normalise the path before sending it.
    let status = |path: &[u8]| {
        let mut head = b"POST ".to_vec();
        head.extend_from_slice(path);
        head.extend_from_slice(
            format!(
                " HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                common::basic_auth_header(),
                STATUS.len()
            )
            .as_bytes(),
        );
        head.extend_from_slice(STATUS);
        async move {
            let mut s = common::raw_send(app.addr, &head).await;
            let answer = common::read_answer(&mut s).await;
            answer[9..12].to_string()
        }
    };
    assert_eq!(status(b"/hooks/%7Eacme/caf%C3%A9").await, "200");
    assert_eq!(status(b"/hooks/~acme/caf%c3%a9").await, "200");
    assert_eq!(status("/hooks/%7eacme/caf\u{e9}".as_bytes()).await, "200");
    assert_eq!(status(b"/hooks%2F%7Eacme/caf%C3%A9").await, "404");
    assert_eq!(status(b"/hooks/~acme/caf%C3%A8").await, "404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_answered_408_after_the_body_read_timeout() {
    let app = TestApp::start(&["--body-read-timeout", "300ms"]).await;
    let first: Result<Vec<u8>, std::io::Error> = Ok(b"{\"event\":".to_vec());
    let stalled =
        tokio_stream::StreamExt::chain(tokio_stream::iter(vec![first]), tokio_stream::pending());
    let started = std::time::Instant::now();
    let request = app
        .http
        .post(app.url())
        .basic_auth(USER, Some(PASS))
        .body(reqwest::Body::wrap_stream(stalled))
        .send();
    let response = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("answered within 10 s: the body read timeout ends the wait")
        .expect("request");
    assert_eq!(response.status(), 408);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "answered after the 300 ms body read timeout: {took:?}"
    );
    let answer = json(response).await;
    assert_eq!(answer["error"], "body_timeout");
    // The flag to tune is named by its value, not the ack timeout's (found by mutation testing).
    assert_eq!(answer["message"], "body was not received within 300ms");
    app.assert_nothing_stored_before_now().await;
}
