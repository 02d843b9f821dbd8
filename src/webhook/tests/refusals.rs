//! Every refusal the handler makes: its status, its headers, its error code and its metric.

use http::header::{AUTHORIZATION, CONTENT_TYPE};

use super::*;

/// A request to the webhook: method, path, `Authorization`, `Content-Type`, body.
type Asked = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static [u8],
);

#[tokio::test]
async fn each_refusal_has_its_status_its_error_code_and_its_metric() {
    const AUTH: Option<&str> = Some("Basic dTpw");
    const JSON: Option<&str> = Some("application/json");
    let ok = || {
        Ok(Delivered::Kafka {
            partition: 0,
            offset: 0,
        })
    };
    let rejected = || Err(ProduceError::Rejected("InvalidRecord".into()));
    let refused = || Err(ProduceError::Refused("TopicAuthorizationFailed".into()));
    #[allow(clippy::type_complexity)]
    let cases: Vec<(Asked, Result<Delivered, ProduceError>, u16, &str, &str)> = vec![
        (
            ("POST", "/elsewhere", AUTH, JSON, STATUS),
            ok(),
            404,
            "not_found",
            "not_found",
        ),
        (
            ("GET", "/webhook", AUTH, JSON, b""),
            ok(),
            405,
            "method_not_allowed",
            "method_not_allowed",
        ),
        (
            ("POST", "/webhook", None, JSON, STATUS),
            ok(),
            401,
            "unauthorized",
            "unauthorized",
        ),
        (
            ("POST", "/webhook", Some("Basic !!"), JSON, STATUS),
            ok(),
            401,
            "unauthorized",
            "unauthorized",
        ),
        (
            ("POST", "/webhook", Some("Basic dTp4"), JSON, STATUS),
            ok(),
            401,
            "unauthorized",
            "unauthorized",
        ),
        (
            ("POST", "/webhook", AUTH, Some("text/xml"), STATUS),
            ok(),
            415,
            "unsupported_media_type",
            "unsupported_media_type",
        ),
        (
            ("POST", "/webhook", AUTH, JSON, b""),
            ok(),
            400,
            "bad_request",
            "invalid",
        ),
        (
            ("POST", "/webhook", AUTH, JSON, b"{oops"),
            ok(),
            400,
            "invalid_payload",
            "invalid",
        ),
        (
            ("POST", "/webhook", AUTH, JSON, STATUS),
            rejected(),
            500,
            "internal_error",
            "failed",
        ),
        (
            ("POST", "/webhook", AUTH, JSON, STATUS),
            refused(),
            503,
            "unavailable",
            "unavailable",
        ),
        (
            ("POST", "/webhook", AUTH, JSON, STATUS),
            Err(ProduceError::Timeout),
            503,
            "unavailable",
            "unavailable",
        ),
        (
            ("POST", "/webhook", AUTH, JSON, STATUS),
            Err(ProduceError::TooLarge),
            413,
            "too_large",
            "too_large",
        ),
    ];
    for ((method, path, auth, content_type, body), result, status, code, outcome) in cases {
        let (hook, _, metrics) = webhook_with_metrics(result);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "bridge");
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        if let Some(content_type) = content_type {
            req = req.header(CONTENT_TYPE, content_type);
        }
        let req = req
            .body(Full::new(Bytes::from_static(body)))
            .expect("request");
        let response = hook.handle(req).await;
        let case = format!("{method} {path} {auth:?} {content_type:?}");
        assert_eq!(response.status().as_u16(), status, "{case}");
        let header = |name: &str| response.headers().get(name).cloned();
        // Every answer names its request and is JSON, refusals included.
        assert!(
            header("x-request-id").is_some_and(|id| !id.is_empty()),
            "{case}: no X-Request-Id"
        );
        assert_eq!(
            header("content-type").expect("Content-Type"),
            "application/json",
            "{case}"
        );
        match status {
            401 => assert!(header("www-authenticate").is_some(), "{case}"),
            405 => assert_eq!(header("allow").expect("Allow"), "POST", "{case}"),
            503 => assert_eq!(header("retry-after").expect("Retry-After"), "1"),
            _ => {}
        }
        let answer = response.into_body().into_inner().expect("full body");
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
        assert_eq!(answer["error"], code, "{case}: {answer}");
        let shown = String::from_utf8(metrics.render()).expect("utf-8");
        let line =
            format!(r#"qikchat_bridge_requests_total{{outcome="{outcome}",status="{status}"}} 1"#);
        assert!(shown.contains(&line), "{case}: no {line}");
    }
}

#[tokio::test]
async fn each_kind_of_401_is_counted_under_its_reason() {
    for (auth, reason) in [
        (&[][..], "missing"),
        (&["Basic !!"][..], "malformed"),
        (&["Bearer dTpw"][..], "malformed"),
        (&["Basic dTp4"][..], "wrong"),
        // Two fields that differ, as the README's metrics table says (found by mutation testing:
        // counted as missing, they passed every test).
        (&["Basic dTpw", "Basic eDp5"][..], "malformed"),
    ] {
        let (hook, _, metrics) = webhook_with_metrics(Err(ProduceError::Timeout));
        let mut req = Request::post("/webhook").header(http::header::HOST, "bridge");
        for value in auth {
            req = req.header(AUTHORIZATION, *value);
        }
        let req = req
            .body(Full::new(Bytes::from_static(STATUS)))
            .expect("request");
        assert_eq!(hook.handle(req).await.status(), StatusCode::UNAUTHORIZED);
        let shown = String::from_utf8(metrics.render()).expect("utf-8");
        let line = format!(r#"qikchat_bridge_auth_failures_total{{reason="{reason}"}} 1"#);
        assert!(shown.contains(&line), "{auth:?}: no {line}");
    }
}

const BAD_HOST: &str = "the Host header must be a host name or address with an optional port";

#[tokio::test]
async fn an_http1_1_request_without_one_valid_host_header_is_refused_400_after_its_credential() {
    let (hook, sink, metrics) = webhook_with_metrics(Ok(Delivered::Kafka {
        partition: 0,
        offset: 0,
    }));
    let request = |version: http::Version, hosts: &[&'static str], auth: &'static str| {
        let mut req = Request::post("/webhook").version(version);
        for host in hosts {
            req = req.header(http::header::HOST, *host);
        }
        req.header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(STATUS)))
            .expect("request")
    };
    // To an absolute URI (HTTP/1.1's absolute form; HTTP/2's `:authority`, which hyper puts in it).
    let absolute = |version: http::Version, target: &'static str| {
        Request::post(target)
            .version(version)
            .header(http::header::HOST, "x")
            .header(AUTHORIZATION, "Basic dTpw")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(STATUS)))
            .expect("request")
    };
    use http::Version as V;
    for (version, hosts, says) in [
        (
            V::HTTP_11,
            &[][..],
            "an HTTP/1.1 request must have a Host header",
        ),
        (
            V::HTTP_11,
            &["a", "a"][..],
            "the Host header must be given once",
        ),
        (
            V::HTTP_10,
            &["a", "b"][..],
            "the Host header must be given once",
        ),
        (
            V::HTTP_2,
            &["a", "b"][..],
            "the Host header must be given once",
        ),
        (V::HTTP_11, &["a b"][..], BAD_HOST),
        (V::HTTP_11, &["x/y"][..], BAD_HOST),
        (V::HTTP_11, &["user@host"][..], BAD_HOST),
        (V::HTTP_11, &["[::1"][..], BAD_HOST),
        (V::HTTP_2, &["host:port"][..], BAD_HOST),
    ] {
        let answer = hook.handle(request(version, hosts, "Basic dTpw")).await;
        assert_eq!(
            answer.status(),
            StatusCode::BAD_REQUEST,
            "{version:?} {hosts:?}"
        );
        let body = answer.into_body().into_inner().expect("full body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"], "bad_request");
        assert_eq!(body["message"], says, "{version:?} {hosts:?}");
    }
    // The target's authority, where it has one (an absolute URI's, HTTP/2's `:authority`), is
    // read as Host is: a review found `http://x:abc/webhook` and `:authority: u:p@x` taken.
    for (version, target) in [
        (V::HTTP_11, "http://x:abc/webhook"),
        (V::HTTP_11, "http://u:p@x:1/webhook"),
        (V::HTTP_2, "http://u:p@x/webhook"),
    ] {
        let answer = hook.handle(absolute(version, target)).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{target}");
        let body = answer.into_body().into_inner().expect("full body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body["message"],
            "the request's authority (an absolute URI's, or HTTP/2's :authority) must be a host \
             name or address with an optional port",
            "{target}"
        );
    }
    assert!(sink.seen.lock().expect("lock").is_empty(), "nothing sent");
    let shown = String::from_utf8(metrics.render()).expect("utf-8");
    let line = r#"qikchat_bridge_requests_total{outcome="invalid",status="400"} 12"#;
    assert!(shown.contains(line), "no {line} in {shown}");

    // A stranger is told only that its credential is wrong.
    let stranger = hook.handle(request(V::HTTP_11, &[], "Basic eDp5")).await;
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
    // HTTP/1.0 and HTTP/2 (which has `:authority`) may go without.
    for version in [V::HTTP_10, V::HTTP_2] {
        let answer = hook.handle(request(version, &[], "Basic dTpw")).await;
        assert_eq!(answer.status(), StatusCode::OK, "{version:?}");
    }
    // Any name, address or port is fine, and so is an empty value (a target without authority).
    for host in [
        "bridge.ns.svc.cluster.local:8080",
        "127.0.0.1",
        "[::1]:8080",
        "under_score",
        "",
    ] {
        let answer = hook
            .handle(request(V::HTTP_11, &[host], "Basic dTpw"))
            .await;
        assert_eq!(answer.status(), StatusCode::OK, "{host:?}");
    }
    // A valid authority is fine.
    for (version, target) in [
        (V::HTTP_11, "http://bridge.ns.svc:8080/webhook"),
        (V::HTTP_2, "http://[::1]:8080/webhook"),
    ] {
        let answer = hook.handle(absolute(version, target)).await;
        assert_eq!(answer.status(), StatusCode::OK, "{target}");
    }
}
