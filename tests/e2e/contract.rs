//! Every answer the end-to-end suite receives is checked against the committed OpenAPI
//! document (issue 11): the operation must list its status, a body must have the declared
//! media type and validate against the declared schema (with the `jsonschema` crate, a
//! validator nobody here wrote), and every required header must be present. Requests go out
//! through `send_checked`, which panics on the first violation; answers of paths and methods
//! the document does not have (404, 405) are checked to be problems.

use std::sync::LazyLock;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DOCUMENT: &str = include_str!("../../openapi/openapi.json");

/// An operation of the document: its path as a pattern, and its responses by status.
struct Operation {
    segments: Vec<Option<String>>,
    method: Method,
    responses: serde_json::Map<String, Value>,
}

struct Contract {
    operations: Vec<Operation>,
    components: Value,
}

/// OpenAPI 3.0's `nullable` in JSON Schema's terms, everywhere in `schema`.
fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => {
            let mut converted: serde_json::Map<String, Value> = object
                .iter()
                .filter(|(key, _)| key.as_str() != "nullable")
                .map(|(key, value)| (key.clone(), json_schema(value)))
                .collect();
            if object.get("nullable") != Some(&Value::Bool(true)) {
                return Value::Object(converted);
            }
            match converted.get("type").cloned() {
                Some(Value::String(ty)) => {
                    converted.insert("type".into(), json!([ty, "null"]));
                    if let Some(Value::Array(values)) = converted.get_mut("enum") {
                        values.push(Value::Null);
                    }
                    Value::Object(converted)
                }
                _ => json!({"anyOf": [Value::Object(converted), {"type": "null"}]}),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

static CONTRACT: LazyLock<Contract> = LazyLock::new(|| {
    let document: Value = serde_json::from_str(DOCUMENT).expect("the document is JSON");
    let mut operations = Vec::new();
    for (path, methods) in document["paths"].as_object().expect("paths") {
        let segments = path
            .split('/')
            .map(|segment| {
                (!(segment.starts_with('{') && segment.ends_with('}'))).then(|| segment.to_owned())
            })
            .collect();
        for (method, operation) in methods.as_object().expect("operations") {
            operations.push(Operation {
                segments: Clone::clone(&segments),
                method: Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method"),
                responses: operation["responses"]
                    .as_object()
                    .expect("responses")
                    .clone(),
            });
        }
    }
    Contract {
        operations,
        components: json_schema(&document["components"]),
    }
});

impl Contract {
    /// The operations whose path matches `path`, and the one of `method` among them.
    fn find(&self, method: &Method, path: &str) -> (bool, Option<&Operation>) {
        let segments: Vec<&str> = path.split('/').collect();
        let matching: Vec<&Operation> =
            self.operations
                .iter()
                .filter(|op| {
                    op.segments.len() == segments.len()
                        && op.segments.iter().zip(&segments).all(|(pattern, segment)| {
                            pattern.as_deref().is_none_or(|p| p == *segment)
                        })
                })
                .collect();
        // A literal segment wins over a parameter (`/v1/admin/sessions/count` over `{id}`).
        let literal = |op: &&Operation| op.segments.iter().filter(|s| s.is_some()).count();
        let best = matching.iter().map(literal).max();
        let chosen = matching
            .iter()
            .filter(|op| Some(literal(op)) == best && op.method == *method)
            .copied()
            .next();
        (!matching.is_empty(), chosen)
    }
}

/// Checks one answer; panics with what is wrong.
pub fn check(method: &Method, path: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
    let contract = &*CONTRACT;
    let what = format!("{method} {path} answered {status}");
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (path_known, operation) = contract.find(method, path);
    let Some(operation) = operation else {
        // Not in the document: only the router's own refusals may answer.
        let expected = if path_known {
            StatusCode::METHOD_NOT_ALLOWED
        } else {
            StatusCode::NOT_FOUND
        };
        if path.starts_with("/v1/") || !path_known {
            assert!(
                status == expected || (status == StatusCode::FORBIDDEN && path.starts_with("/v1/")),
                "{what}: an undocumented path or method must be {expected}"
            );
        }
        return;
    };
    let Some(response) = operation.responses.get(status.as_str()) else {
        panic!("{what}, which the document does not list");
    };
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        if header["required"] == true {
            assert!(headers.contains_key(name.as_str()), "{what} without {name}");
        }
    }
    let content = response["content"].as_object();
    let Some((media, declared)) = content.and_then(|c| c.iter().next()) else {
        assert!(
            body.is_empty(),
            "{what} with a body the document does not declare"
        );
        return;
    };
    assert_eq!(content_type, media, "{what}: the wrong media type");
    if !media.contains("json") {
        return;
    }
    let instance: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON: {e}"));
    let schema = json!({
        "allOf": [json_schema(&declared["schema"])],
        "components": contract.components,
    });
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{what}: the declared schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the body breaks its schema: {errors:?}\n{instance}"
    );
}

/// `send`, with the answer checked against the document.
pub trait SendChecked {
    fn send_checked(self) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send;
}

impl SendChecked for reqwest::RequestBuilder {
    async fn send_checked(self) -> reqwest::Result<reqwest::Response> {
        let (client, request) = self.build_split();
        let request = request?;
        let (method, path) = (request.method().clone(), request.url().path().to_owned());
        let response = client.execute(request).await?;
        let (status, version, headers) = (
            response.status(),
            response.version(),
            response.headers().clone(),
        );
        let body = response.bytes().await?;
        check(&method, &path, status, &headers, &body);
        let mut rebuilt = poem::http::Response::builder()
            .status(status)
            .version(version);
        for (name, value) in &headers {
            rebuilt = rebuilt.header(name, value);
        }
        Ok(reqwest::Response::from(
            rebuilt.body(body).expect("the parts of a response"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{CACHE_CONTROL, HeaderValue};

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers
    }

    fn refused(
        method: Method,
        path: &str,
        status: StatusCode,
        headers: HeaderMap,
        body: &Value,
    ) -> bool {
        let body = body.to_string();
        std::panic::catch_unwind(|| check(&method, path, status, &headers, body.as_bytes()))
            .is_err()
    }

    #[test]
    fn the_check_accepts_a_conforming_answer_with_nulls_and_refuses_every_kind_of_drift() {
        let json = "application/json; charset=utf-8";
        let view = json!({
            "id": 3, "kind": "browser", "user": null, "ip_address": "192.0.2.1",
            "created_at": "2026-01-01T00:00:00Z", "authenticated_at": null,
            "last_activity_at": "2026-01-01T00:00:00Z",
            "idle_expires_at": "2026-01-01T00:30:00Z", "absolute_expires_at": null,
        });
        assert!(!refused(
            Method::GET,
            "/v1/session",
            StatusCode::OK,
            headers(json),
            &view
        ));
        let mut wrong = view.clone();
        wrong["id"] = json!("3");
        assert!(refused(
            Method::GET,
            "/v1/session",
            StatusCode::OK,
            headers(json),
            &wrong
        ));
        let mut wrong = view.clone();
        wrong["kind"] = json!("robot");
        assert!(refused(
            Method::GET,
            "/v1/session",
            StatusCode::OK,
            headers(json),
            &wrong
        ));
        assert!(refused(
            Method::GET,
            "/v1/session",
            StatusCode::IM_A_TEAPOT,
            headers(json),
            &view
        ));
        assert!(refused(
            Method::GET,
            "/v1/session",
            StatusCode::OK,
            headers("text/html"),
            &view
        ));
        let mut no_cache_control = headers(json);
        no_cache_control.remove(CACHE_CONTROL);
        assert!(refused(
            Method::GET,
            "/v1/session",
            StatusCode::OK,
            no_cache_control,
            &view
        ));
        let problem =
            json!({"type": "about:blank", "title": "Locked", "status": 423, "detail": "x"});
        let locked = headers("application/problem+json");
        assert!(refused(
            Method::POST,
            "/v1/session/login",
            StatusCode::LOCKED,
            locked,
            &problem
        ));
    }
}
