//! Basic authentication as Qikchat sends it: refused requests produce nothing.

use crate::common::{TestApp, PASS, STATUS, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_credentials_is_refused_and_produces_nothing() {
    let app = TestApp::start(&[]).await;
    let response = app
        .http
        .post(app.url())
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii"),
        r#"Basic realm="qikchat-bridge", charset="UTF-8""#
    );
    let body: serde_json::Value = response.json_value().await;
    assert_eq!(body["error"], "unauthorized");
    app.assert_nothing_stored_before_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_malformed_credentials_are_refused_and_produce_nothing() {
    let app = TestApp::start(&[]).await;
    let wrong = app.post_as(USER, "nope", STATUS).await;
    assert_eq!(wrong.status(), 401);
    let malformed = app
        .http
        .post(app.url())
        .header("authorization", "Bearer abc")
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(malformed.status(), 401);
    app.assert_nothing_stored_before_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_credential_works_during_rotation() {
    let app = TestApp::start(&["--auth", "rotated:new-secret"]).await;
    let second = app.post_as("rotated", "new-secret", STATUS).await;
    assert_eq!(second.status(), 200);
    let first = app.post_as(USER, PASS, STATUS).await;
    assert_eq!(first.status(), 200);
    let mixed = app.post_as("rotated", PASS, STATUS).await;
    assert_eq!(mixed.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_from_qikchats_documentation_is_accepted_when_configured() {
    let app = TestApp::start(&["--auth", "testuser:testpass"]).await;
    let response = app
        .http
        .post(app.url())
        .header("authorization", "Basic dGVzdHVzZXI6dGVzdHBhc3M=")
        .body(STATUS)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.expect("body")).expect("JSON body")
    }
}
