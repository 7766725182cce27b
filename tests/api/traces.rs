//! Spans exported over OTLP/HTTP: a collector stand-in (wiremock) receives what the real
//! binary sends, and the test decodes it as a collector would.

use std::collections::HashMap;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use prost::Message;
use reqwest::multipart;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{
    child::ChildServer,
    helpers::{file_part, random_bytes, spawn_app},
};

#[derive(Debug)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), text(pair.value.as_ref())))
        .collect()
}

#[tokio::test]
async fn exported_spans_carry_the_request_id_and_show_where_an_upload_spent_its_time() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let db = spawn_app().await;
    let token = db.user_with_token("alice").await;
    let root = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(
        &db.db_url(),
        root.path(),
        &[
            ("APP__AUTH__ENABLED", "true"),
            ("APP__TELEMETRY__OTLP_ENDPOINT", &collector.uri()),
            ("APP__TELEMETRY__SERVICE_NAME", "intake-under-test"),
        ],
    )
    .await;
    // Over two batches: the first is full, and more follows it, so it is written on its own
    // before the last is written and synced (a full batch that ends the file goes with the sync).
    let bytes = random_bytes(600_000, 1);
    let response = reqwest::Client::new()
        .post(server.url("/upload"))
        .bearer_auth(&token)
        .multipart(multipart::Form::new().part("file", file_part("a.bin", bytes, None)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let file: serde_json::Value = response.json().await.unwrap();
    // The exporter sends what it still holds when the server stops.
    server.signal("TERM");
    assert!(server.child.wait().await.unwrap().success());

    let mut spans = Vec::new();
    let mut services = Vec::new();
    for request in collector.received_requests().await.unwrap() {
        assert!(
            !String::from_utf8_lossy(&request.body).contains(&token),
            "a token was exported"
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        for resource in export.resource_spans {
            if let Some(resource) = &resource.resource {
                services.push(attributes(&resource.attributes)["service.name"].clone());
            }
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| Span {
                    name: span.name,
                    trace_id: span.trace_id,
                    attributes: attributes(&span.attributes),
                }));
            }
        }
    }
    assert!(!services.is_empty() && services.iter().all(|s| s == "intake-under-test"));

    let request = spans
        .iter()
        .find(|span| span.attributes.get("request_id") == Some(&request_id))
        .unwrap_or_else(|| panic!("no span carries request id {request_id}: {spans:#?}"));
    assert_eq!(request.attributes["http.route"], "/upload");
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|span| span.trace_id == request.trace_id)
        .collect();
    let named = |name: &'static str| trace.iter().filter(move |span| span.name == name);

    let receive = named("upload.receive").next().expect("a receive span");
    assert_eq!(receive.attributes["file_id"], file["id"].as_str().unwrap());
    assert_eq!(receive.attributes["size"], "600000");
    let finish = named("storage")
        .find(|span| span.attributes["operation"] == "finish")
        .expect("the span of making the file durable");
    assert_eq!(finish.attributes["backend"], "fs");
    // Where the writer's time went: hashing, writing, the fsync (numbers of milliseconds).
    for part in ["hashing_ms", "writing_ms", "syncing_ms"] {
        let spent: f64 = finish.attributes[part].parse().unwrap();
        assert!(spent > 0.0, "{part}: {spent}");
    }
    assert!(named("storage").any(|span| span.attributes["operation"] == "write"));
    assert!(named("db.authenticate").next().is_some());
    let insert = named("db.insert_files").next().expect("the commit's span");
    assert_eq!(insert.attributes["files"], "1");
}
