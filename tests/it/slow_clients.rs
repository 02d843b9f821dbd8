//! Clients that misbehave on the socket: silent, slowloris and slow-body clients are cut off
//! while normal traffic is served; a client that closes its sending side still gets its answer,
//! and one that hangs up before it cancels nothing.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{TestApp, STATUS, TEXT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_slow_body_clients_are_cut_off_while_others_are_served() {
    let app = TestApp::start(&[
        "--header-read-timeout",
        "500ms",
        "--body-read-timeout",
        "500ms",
    ])
    .await;
    let mut slow = Vec::new();
    for i in 0..40 {
        let mut s = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connect");
        if i % 2 == 0 {
            // A head that never ends.
            s.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\n")
                .await
                .expect("write");
        } else {
            // A complete head, then a body that never comes.
            s.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\nauthorization: Basic cWlrY2hhdDpjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl\r\ncontent-length: 500\r\n\r\n{").await.expect("write");
        }
        slow.push(s);
    }
    // Meanwhile, normal requests are answered.
    for _ in 0..20 {
        assert_eq!(app.post(STATUS).await.status(), 200);
    }
    // Every slow client is answered (408) or disconnected, not held forever.
    let started = Instant::now();
    for (i, mut s) in slow.into_iter().enumerate() {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "slow client {i} still connected after {:?}",
            started.elapsed()
        );
        let text = String::from_utf8_lossy(&buf);
        if i % 2 == 1 {
            assert!(
                text.starts_with("HTTP/1.1 408"),
                "slow body answered: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let app = TestApp::start(&[]).await;
    // The idempotent producer's first record also waits for its producer id, a round trip more
    // that the slow broker below would stretch towards the ack deadline; this test is about the
    // half-close, so that happens first (on the other topic).
    assert_eq!(app.post(TEXT).await.status(), 200);
    // Kafka slow enough that the answer is still pending when the client's FIN arrives.
    app.cluster
        .broker_round_trip_time(1, Duration::from_millis(300))
        .expect("rtt");
    let mut s = common::raw_post(app.addr, STATUS).await;
    s.shutdown().await.expect("half-close");
    let text = common::read_until_closed(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200"), "answer: {text:?}");
    let got = app
        .records("whatsapp.message.status", 1, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 1, "the status is in Kafka");
    assert_eq!(got[0].value, STATUS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_before_its_answer_cancels_nothing() {
    let app = TestApp::start(&[]).await;
    assert_eq!(app.post(TEXT).await.status(), 200);
    app.cluster
        .broker_round_trip_time(1, Duration::from_millis(300))
        .expect("rtt");
    let s = common::raw_post(app.addr, STATUS).await;
    drop(s);
    // The record handed over is delivered, and the request is counted as answered.
    let got = app
        .records("whatsapp.message.status", 1, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 1, "the status is in Kafka");
    app.wait_metric(r#"qikchat_bridge_requests_total{outcome="accepted",status="200"} 2"#)
        .await;
}

/// HTTP/2's counterpart: a client that gives up resets its stream (RST_STREAM, CANCEL), which drops
/// the request's future. A record handed to librdkafka before that is still delivered; the
/// request is counted as cancelled, in no answered outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_after_its_record_was_handed_over_still_delivers_the_record() {
    let app = TestApp::start(&[]).await;
    let client = common::h2c_client();
    assert_eq!(
        client
            .post(app.url())
            .basic_auth(common::USER, Some(common::PASS))
            .body(TEXT)
            .send()
            .await
            .expect("h2c request")
            .status(),
        200
    );
    app.cluster
        .broker_round_trip_time(1, Duration::from_millis(1000))
        .expect("rtt");
    // Dropped when the timeout ends it: reqwest resets the stream.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        client
            .post(app.url())
            .basic_auth(common::USER, Some(common::PASS))
            .body(STATUS)
            .send(),
    )
    .await;
    assert!(gave_up.is_err(), "answered within 300 ms: {gave_up:?}");
    app.wait_metric("qikchat_bridge_requests_cancelled_total 1")
        .await;
    let got = app
        .records("whatsapp.message.status", 1, Duration::from_secs(10))
        .await;
    assert_eq!(got.len(), 1, "the status is in Kafka");
    assert_eq!(got[0].value, STATUS);
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"qikchat_bridge_requests_total{outcome="accepted",status="200"} 1"#),
        "only the first was answered: {metrics}"
    );
}

/// The one request was counted as cut off, in no answered outcome, and nothing was stored.
async fn cancelled_and_nothing_else(app: &TestApp) {
    app.wait_metric("qikchat_bridge_requests_cancelled_total 1")
        .await;
    let (_, metrics) = app.admin_get("/metrics").await;
    let answered: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("qikchat_bridge_requests_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(answered.is_empty(), "counted as answered: {answered:?}");
    app.assert_nothing_stored_before_now().await;
}

/// A stream reset while its body is still coming is cut off too, not a 400 no one receives: it
/// is counted as cancelled, in no answered outcome, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_before_its_body_was_whole_is_counted_as_cancelled_not_as_a_400() {
    let app = TestApp::start(&[]).await;
    let client = common::h2c_client();
    // Half a body, then nothing: the client gives up and resets the stream.
    let half = bytes::Bytes::from_static(&TEXT[..TEXT.len() / 2]);
    let body = tokio_stream::StreamExt::chain(
        tokio_stream::iter([Ok::<_, std::io::Error>(half)]),
        tokio_stream::pending(),
    );
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        client
            .post(app.url())
            .basic_auth(common::USER, Some(common::PASS))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    )
    .await;
    assert!(gave_up.is_err(), "answered within 300 ms: {gave_up:?}");
    cancelled_and_nothing_else(&app).await;
}

/// A POST of `TEXT` (by its `Content-Length`) over h2's own client, its body not sent yet: the
/// answer to come, and the stream to send the body on (or reset).
async fn h2_post_without_body(
    app: &TestApp,
    authorization: &str,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let request = http::Request::post(app.url())
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .header("content-length", TEXT.len());
    h2_send(app, request).await
}

async fn h2_send(
    app: &TestApp,
    request: http::request::Builder,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let mut client = common::h2_connection(app.addr).await;
    let request = request.body(()).expect("request");
    client.send_request(request, false).expect("send")
}

/// hyper ends an HTTP/2 body quietly when the client resets the stream with NO_ERROR: half a body
/// must not be taken for a whole one (stored in the dead-letter topic, or, were it valid JSON,
/// stored and then sent again by the client that got no answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_with_no_error_before_its_declared_length_is_cancelled_not_stored() {
    let app = TestApp::start(&[]).await;
    let (_answer, mut body) = h2_post_without_body(&app, &common::basic_auth_header()).await;
    body.send_data(bytes::Bytes::from_static(&TEXT[..TEXT.len() / 2]), false)
        .expect("data");
    // The half is read before the reset ends the stream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    body.send_reset(h2::Reason::NO_ERROR);
    cancelled_and_nothing_else(&app).await;
}

/// A body that overruns its declared length is reset by h2 itself (a protocol error), not by the
/// client: the request is a `bad_request`, counted with the 400s (`invalid`) though none reaches the
/// client, not a cancelled one, and nothing is stored (found by mutation testing: a reset of
/// either side counted as the client's passed every test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_longer_than_its_declared_length_is_a_bad_request_not_a_cancel() {
    let app = TestApp::start(&[]).await;
    let (_answer, mut body) = h2_post_without_body(&app, &common::basic_auth_header()).await;
    let mut longer = TEXT.to_vec();
    longer.extend_from_slice(b"    ");
    body.send_data(bytes::Bytes::from(longer), true)
        .expect("data");
    app.wait_metric(r#"qikchat_bridge_requests_total{outcome="invalid",status="400"} 1"#)
        .await;
    let (_, metrics) = app.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "qikchat_bridge_requests_cancelled_total 0"),
        "{metrics}"
    );
    app.assert_nothing_stored_before_now().await;
}

/// Without a declared length nothing tells a body cut off by a NO_ERROR reset from a whole one
/// (hyper ends both alike), so a reset stream's request is dropped before anything is stored,
/// half a body or all of it: the client got no answer, and sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_reset_with_no_error_and_no_declared_length_is_cancelled_not_stored() {
    for sent in [&TEXT[..TEXT.len() / 2], TEXT] {
        let app = TestApp::start(&[]).await;
        let request = http::Request::post(app.url())
            .header("authorization", common::basic_auth_header())
            .header("content-type", "application/json");
        let (_answer, mut body) = h2_send(&app, request).await;
        body.send_data(bytes::Bytes::from_static(sent), false)
            .expect("data");
        // The bytes are read before the reset ends the stream.
        tokio::time::sleep(Duration::from_millis(200)).await;
        body.send_reset(h2::Reason::NO_ERROR);
        cancelled_and_nothing_else(&app).await;
    }
}

/// An HTTP/2 request refused by its head (here a wrong password) has its body read and dropped
/// before the answer, as on HTTP/1, so its stream ends without a reset: it was answered at once
/// and then reset with NO_ERROR, which RFC 9113 allows but curl 7.88 reported, now and then, as a
/// failure instead of the 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_refused_by_its_head_is_answered_once_its_body_is_in_without_a_reset() {
    let app = TestApp::start(&[]).await;
    let (answer, mut body) = h2_post_without_body(&app, "Basic d3Jvbmc6cGFzcw==").await;
    let mut answer = Box::pin(answer);
    let early = tokio::time::timeout(Duration::from_millis(150), &mut answer).await;
    assert!(early.is_err(), "answered before the body: {early:?}");
    body.send_data(bytes::Bytes::from_static(TEXT), true)
        .expect("the whole body, on a stream not reset");
    let answer = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered once the body is in")
        .expect("an answer, not a reset");
    assert_eq!(answer.status(), 401);
    let mut answer_body = answer.into_body();
    while let Some(chunk) = answer_body.data().await {
        chunk.expect("the answer's body, not a reset");
    }
    let reset = std::future::poll_fn(|cx| match body.poll_reset(cx) {
        std::task::Poll::Pending => std::task::Poll::Ready(None),
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
    })
    .await;
    assert!(
        !matches!(reset, Some(Ok(_))),
        "the stream was reset: {reset:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_send_nothing_or_one_byte_of_the_http2_preface_are_closed_and_free_their_slot()
{
    // Two connection slots: silent clients that kept theirs would lock every sender out.
    let app = TestApp::start(&["--header-read-timeout", "500ms", "--max-connections", "2"]).await;
    let silent = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let mut preface = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    // Telling HTTP/1 from HTTP/2 needs more bytes than this one.
    preface.write_all(b"P").await.expect("write");
    for (name, mut s) in [("silent", silent), ("one preface byte", preface)] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the {name} client is still connected");
        assert!(buf.is_empty(), "the {name} client got an answer: {buf:?}");
    }
    assert_eq!(app.post(STATUS).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_on_the_admin_port_are_closed_and_probes_are_still_answered() {
    let app = TestApp::start(&[]).await;
    // More than the admin port's 256 connection slots.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(
            tokio::net::TcpStream::connect(app.admin)
                .await
                .expect("connect"),
        );
    }
    // The admin port gives silent clients a second (answered in ~1 s, inside the chart's 2 s
    // probe timeout), not the webhook port's 5 s; 4 s leaves room for a loaded CI machine.
    let probe = tokio::time::timeout(Duration::from_secs(4), app.admin_get("/livez")).await;
    assert_eq!(probe.expect("the probe is answered in time").0, 200);
    for mut s in silent {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a silent admin client is still connected");
    }
}

/// The admin port holds a silent client, or a scraper's idle keep-alive connection, about a
/// second whatever `--header-read-timeout` and `--idle-timeout` say: the kubelet's probes (2 s
/// timeout) must not wait behind slots the webhook port's longer timeouts would keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_silent_or_idle_are_closed_within_seconds_whatever_the_webhook_timeouts()
{
    let app = TestApp::start(&["--header-read-timeout", "10s", "--idle-timeout", "60s"]).await;
    let mut silent = tokio::net::TcpStream::connect(app.admin)
        .await
        .expect("connect");
    let mut kept = tokio::net::TcpStream::connect(app.admin)
        .await
        .expect("connect");
    kept.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    for (what, s) in [("silent", &mut silent), ("kept-alive", &mut kept)] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a {what} admin client is still connected");
        // About 1 s; 4 s leaves room for a loaded CI machine (uncapped: 10 s silent, 60 s idle).
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a {what} admin client was closed after {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_idle_after_its_answer_is_closed_after_the_idle_timeout() {
    let app = TestApp::start(&["--header-read-timeout", "300ms", "--idle-timeout", "3s"]).await;
    let mut s = common::raw_post(app.addr, STATUS).await;
    let answered = common::read_answer(&mut s).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let answered = Instant::now();
    // Nothing more is sent on the connection: the close is all that comes.
    let rest = common::read_until_closed(&mut s).await;
    assert!(rest.is_empty(), "{rest}");
    let idle = answered.elapsed();
    // Timed from the answer's arrival here, after the bridge's own clock started: the margin
    // is for a loaded machine's late wake-up, and still far from the header read timeout.
    assert!(
        idle >= Duration::from_secs(2),
        "closed after {idle:?}: before the idle timeout"
    );
    assert!(
        idle < Duration::from_secs(10),
        "open for {idle:?} while idle"
    );
}

/// A kept-alive connection waiting for its next request costs nothing while it waits: its
/// timer is set again at each check, so the runtime sleeps until the next one. Without that, a
/// fired timer stays fired and the connection's loop judges it again and again, one core spent
/// per idle connection for the whole idle timeout (found by mutation testing: dropping the
/// timer's reset went unnoticed, every wait still ending on time). Its own runtime, whose busy
/// time is this listener's alone.
#[test]
fn a_kept_alive_connection_waiting_for_its_next_request_keeps_the_runtime_idle() {
    use bytes::Bytes;
    use http_body_util::Full;
    use qikchat_bridge::server::{serve_with, ServerOptions};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let options = ServerOptions {
        name: "test",
        // Checks every 100 ms, the connection allowed to wait 30 s.
        header_read_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(1),
        max_connections: 16,
        http1_only: true,
    };
    let handler = |_req| async { http::Response::new(Full::new(Bytes::from_static(b"ok"))) };
    runtime.spawn(serve_with(
        listener,
        handler,
        options,
        std::future::pending(),
    ));
    let metrics = runtime.metrics();
    let busy = runtime.block_on(async {
        let mut s = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: bridge\r\n\r\n")
            .await
            .expect("write");
        let answer = common::read_answer(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Past the first checks, then a second of waiting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = metrics.worker_total_busy_duration(0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = metrics.worker_total_busy_duration(0) - before;
        drop(s);
        busy
    });
    assert!(
        busy < Duration::from_millis(300),
        "the runtime was busy {busy:?} of the second an idle connection waited"
    );
}

/// A proxy's pool (ingress-nginx keeps idle upstream connections 60 s) sends its next request
/// on a connection the bridge must not have closed in the meantime: such a request would fail,
/// and a proxy does not retry a POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_takes_a_request_sent_after_the_header_read_timeout_has_passed() {
    let app = TestApp::start(&["--header-read-timeout", "300ms"]).await;
    let mut s = common::raw_post(app.addr, STATUS).await;
    let first = common::read_answer(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.write_all(&common::post_bytes(STATUS))
        .await
        .expect("write");
    let second = common::read_answer(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(
        app.records("whatsapp.message.status", 2, Duration::from_secs(10))
            .await
            .len(),
        2
    );
}

/// Keeping idle connections longer does not lengthen the slowloris window: once the next head
/// starts, it has the header read timeout to be whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_slowly_on_a_kept_alive_connection_is_cut_off_after_the_header_read_timeout() {
    let app = TestApp::start(&["--header-read-timeout", "500ms", "--idle-timeout", "60s"]).await;
    let mut s = common::raw_post(app.addr, STATUS).await;
    let first = common::read_answer(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Later than the connection's first look after its answer: the head alone must bring the
    // header read timeout into force, not the idle one running meanwhile.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(b"POST /webhook HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let rest = common::read_until_closed(&mut s).await;
    assert!(rest.is_empty(), "answered: {rest}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "cut off after {took:?}: before the header read timeout"
    );
}

/// Only accepted clients earn the idle timeout: a refused one (without credentials, say) gets no
/// longer to send its next request than a new connection, so slots are not held for a minute by
/// anyone who can send one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_request_was_refused_is_closed_after_the_header_read_timeout() {
    let app = TestApp::start(&["--header-read-timeout", "500ms"]).await;
    let mut s = common::raw_send(app.addr, b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}").await;
    let refused = common::read_answer(&mut s).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let answered = Instant::now();
    let rest = common::read_until_closed(&mut s).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(
        answered.elapsed() < Duration::from_secs(5),
        "open {:?} after a refusal",
        answered.elapsed()
    );
}

/// A stranger's request to another path (404) or with another method (405) is refused as one
/// without credentials is: its connection gets no longer for its next request than a new one, or
/// anyone who can send one request could hold a slot for the idle timeout (found by mutation
/// testing: taking either status out of the refusals that earn no idle wait went unnoticed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_request_got_404_or_405_is_closed_after_the_header_read_timeout() {
    let app = TestApp::start(&["--header-read-timeout", "500ms"]).await;
    for (request, status) in [
        (
            &b"GET /elsewhere HTTP/1.1\r\nhost: x\r\n\r\n"[..],
            "HTTP/1.1 404",
        ),
        (b"GET /webhook HTTP/1.1\r\nhost: x\r\n\r\n", "HTTP/1.1 405"),
    ] {
        let mut s = common::raw_send(app.addr, request).await;
        let refused = common::read_answer(&mut s).await;
        assert!(refused.starts_with(status), "{refused}");
        let answered = Instant::now();
        let rest = common::read_until_closed(&mut s).await;
        assert!(rest.is_empty(), "{rest}");
        assert!(
            answered.elapsed() < Duration::from_secs(5),
            "open {:?} after a {status}",
            answered.elapsed()
        );
    }
}

/// The ack deadline counts from the request's arrival, not from the end of its body: a body that
/// has not arrived by then is answered 408 then and never produced, so the sender's retry is no
/// duplicate. Not later, at `--body-read-timeout` or whenever the body ends: such a request could
/// only get that 408, and waiting held its `--max-in-flight` place and its connection. The sender
/// was late, not Kafka: neither the answer nor the metrics say Kafka was unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_not_arrived_by_the_ack_deadline_is_answered_408_then_and_not_produced() {
    // The ack timeout is also the sentinel's below: a shorter one made it 503 on a loaded machine.
    let app = TestApp::start(&["--ack-timeout", "2s", "--body-read-timeout", "20s"]).await;
    let (first, _never_sent) = STATUS.split_at(STATUS.len() / 2);
    let sent = Instant::now();
    let mut s = common::raw_request(app.addr, STATUS.len(), first).await;
    let mut answer = Vec::new();
    while !answer.ends_with(b"}") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answered within 10 s")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "answered after {took:?}, not at the 2 s ack deadline"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "{answer}");
    assert!(answer.contains("ack timeout (2s)"), "{answer}");
    // Read before the sentinel below, whose own retried 503s would be counted.
    let (_, metrics) = app.admin_get("/metrics").await;
    // The retry is stored, and nothing before it.
    app.assert_nothing_stored_before_now().await;
    // Answered as soon as its body came: the sender was late, not the bridge.
    assert!(
        metrics.contains("qikchat_bridge_slow_responses_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"qikchat_bridge_requests_total{outcome="body_timeout",status="408"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"qikchat_bridge_requests_total{outcome="unavailable",status="503"} 0"#),
        "{metrics}"
    );
}

/// hyper closes an idle HTTP/1 connection itself, but an HTTP/2 one only when its pings go
/// unanswered: a client could otherwise hold a connection slot for good with one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::start(&["--idle-timeout", "1s"]).await;
    let mut s = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    // The preface, empty SETTINGS, and one GET / (HPACK static entries :method GET,
    // :scheme http, :path /) that ends its stream: answered 404, then nothing more is sent.
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&[0, 0, 3, 1, 0x05, 0, 0, 0, 1, 0x82, 0x86, 0x84]);
    s.write_all(&frames).await.expect("write");
    let started = Instant::now();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut seen)).await;
    assert!(
        read.is_ok(),
        "still open after 10 s (hyper's pings would close it after 40)"
    );
    // The answer came first: a HEADERS frame (type 1) on stream 1 among the server's frames.
    assert!(
        seen.windows(9)
            .any(|f| f[3] == 1 && f[5..9] == [0, 0, 0, 1]),
        "no answer before the close: {seen:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before it was idle for the timeout: {:?}",
        started.elapsed()
    );
    // Told with GOAWAY (type 7) before the close, so a client knows no later request was taken.
    assert!(
        frames_of_type(&seen, 7) > 0,
        "closed without a GOAWAY: {seen:?}"
    );
}

/// How many of the HTTP/2 frames in `bytes` (after the server's preface) are of type `kind`.
fn frames_of_type(bytes: &[u8], kind: u8) -> usize {
    let mut at = 0;
    let mut found = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        found += usize::from(bytes[at + 3] == kind);
        at += 9 + len;
    }
    found
}
