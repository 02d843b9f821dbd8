//! A request is judged alike over HTTP/1 and HTTP/2: white space around a field's value, which
//! HTTP/1's parser drops and HTTP/2 passes on, changes nothing.

use super::*;

/// The same fields, each with spaces or a tab around its value, over HTTP/2.
fn padded(content_type: &str) -> Request<Full<Bytes>> {
    Request::post("/webhook")
        .version(Version::HTTP_2)
        .header(http::header::HOST, "bridge ")
        .header(AUTHORIZATION, "Basic dTpw")
        .header(AUTHORIZATION, "Basic dTpw ")
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_TYPE, "application/json ")
        .header(X_REQUEST_ID, "\tabc ")
        .body(Full::new(Bytes::from_static(STATUS)))
        .expect("request")
}

#[tokio::test]
async fn white_space_around_an_http2_fields_value_is_dropped_as_http1_drops_it() {
    let (hook, sink) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let answer = hook.handle(padded(" application/json")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[X_REQUEST_ID], "abc");
    assert_eq!(sink.seen.lock().expect("lock").len(), 1);
}

/// The longest `Content-Type` kept is 256 bytes once its white space is dropped.
#[tokio::test]
async fn a_content_type_is_measured_without_the_white_space_around_it() {
    let (hook, _) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let longest = format!("application/json; a={}", "x".repeat(256 - 20));
    assert_eq!(longest.len(), 256);
    let request = |content_type: &str| {
        Request::post("/webhook")
            .version(Version::HTTP_2)
            .header(AUTHORIZATION, "Basic dTpw")
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from_static(STATUS)))
            .expect("request")
    };
    let answer = hook.handle(request(&format!(" {longest}\t"))).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = hook.handle(request(&format!(" {longest}x"))).await;
    assert_eq!(answer.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// hyper ends an HTTP/2 body without an error when its client resets the stream with NO_ERROR
/// or CANCEL, so a body shorter than its `content-length` was cut off: stored, it would be a
/// truncated record, and the client that got no answer sends it again whole (found by mutation
/// testing: without this check every test still passed).
#[tokio::test]
async fn an_http2_body_shorter_than_its_declared_length_is_never_stored() {
    let (hook, sink) = webhook(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let cut_off = Request::post("/webhook")
        .version(Version::HTTP_2)
        .header(AUTHORIZATION, "Basic dTpw")
        .header(CONTENT_LENGTH, STATUS.len() + 10)
        .body(Full::new(Bytes::from_static(STATUS)))
        .expect("request");
    let answer = hook.handle(cut_off).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(sink.seen.lock().expect("lock").is_empty(), "nothing stored");
}
