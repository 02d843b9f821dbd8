//! The three waits of a connection, judged on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Activity, Limits, OpenRequest, Verdict, Watched};

const LIMITS: Limits = Limits {
    header_read: Duration::from_secs(5),
    idle: Duration::from_secs(75),
};

async fn advance(by: Duration) {
    tokio::time::advance(by).await;
}

/// A connection: what its client writes is read through [`Watched`], one read a chunk.
struct Connection {
    client: tokio::io::DuplexStream,
    server: Watched<tokio::io::DuplexStream>,
}

impl Connection {
    fn new(activity: &Arc<Activity>) -> Connection {
        let (client, server) = tokio::io::duplex(1024);
        Connection {
            client,
            server: Watched::new(server, activity.clone()),
        }
    }

    async fn send(&mut self, chunks: &[&[u8]]) {
        for chunk in chunks {
            self.client.write_all(chunk).await.expect("write");
            let mut buf = [0u8; 64];
            let n = self.server.read(&mut buf).await.expect("read");
            assert_eq!(n, chunk.len());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_connection_that_sends_nothing_gets_the_header_read_timeout_not_the_idle_one() {
    let activity = Activity::default();
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(1))
    );
    advance(Duration::from_secs(1)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_may_wait_the_idle_timeout_for_its_next_request() {
    let activity = Arc::new(Activity::default());
    OpenRequest::started(activity.clone()).answered(true);
    advance(Duration::from_secs(60)).await;
    // Looked at again within the header read timeout, in case a head begins meanwhile.
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
    advance(Duration::from_secs(12)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(3))
    );
    advance(Duration::from_secs(3)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}

#[tokio::test(start_paused = true)]
async fn an_open_request_is_never_judged_however_long_it_takes() {
    let activity = Arc::new(Activity::default());
    let open = OpenRequest::started(activity.clone());
    advance(Duration::from_secs(600)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Wait(LIMITS.header_read));
    open.answered(true);
    advance(Duration::from_secs(74)).await;
    assert!(matches!(activity.verdict(LIMITS), Verdict::Wait(_)));
}

#[tokio::test(start_paused = true)]
async fn a_head_begun_after_an_idle_wait_must_be_whole_within_the_header_read_timeout() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    OpenRequest::started(activity.clone()).answered(true);
    advance(Duration::from_secs(30)).await;
    conn.send(&[b"POST /webhook HTTP/1.1\r\n"]).await;
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(1))
    );
    // More of the same head does not restart the clock.
    conn.send(&[b"host: x\r\n"]).await;
    advance(Duration::from_secs(1)).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

#[tokio::test(start_paused = true)]
async fn a_head_that_becomes_a_request_in_time_clears_the_head_clock() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    conn.send(&[b"POST /webhook HTTP/1.1\r\n"]).await;
    advance(Duration::from_secs(4)).await;
    let open = OpenRequest::started(activity.clone());
    // Its body, read while the request is open, starts no head.
    conn.send(&[b"{\"a\":1}"]).await;
    open.answered(true);
    advance(Duration::from_secs(70)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(5))
    );
}

#[tokio::test(start_paused = true)]
async fn http2_frames_between_requests_start_no_head_even_when_the_preface_comes_split() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    conn.send(&[b"P", b"RI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).await;
    OpenRequest::started(activity.clone()).answered(true);
    // A PING frame's bytes, long after the last stream ended.
    advance(Duration::from_secs(30)).await;
    conn.send(&[&[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]])
        .await;
    advance(Duration::from_secs(42)).await;
    assert_eq!(
        activity.verdict(LIMITS),
        Verdict::Wait(Duration::from_secs(3))
    );
}

#[tokio::test(start_paused = true)]
async fn an_http1_client_whose_first_byte_is_p_is_not_taken_for_http2() {
    let activity = Arc::new(Activity::default());
    let mut conn = Connection::new(&activity);
    OpenRequest::started(activity.clone()).answered(true);
    conn.send(&[b"P", b"OST /webhook HTTP/1.1\r\n"]).await;
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::SlowHead);
}

#[tokio::test(start_paused = true)]
async fn a_connection_whose_last_answer_was_a_refusal_gets_the_header_read_timeout() {
    let activity = Arc::new(Activity::default());
    OpenRequest::started(activity.clone()).answered(true);
    OpenRequest::started(activity.clone()).answered(false);
    advance(LIMITS.header_read).await;
    assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
}
