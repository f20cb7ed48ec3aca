//! The one pass over the document poem-openapi generates, for what its derives cannot say.
//! Every output goes through it: the served `/openapi.json` and `/docs`, and
//! `websessions openapi` (which the committed `openapi/openapi.json` is).
//!
//! - Every operation lists what the guard can refuse it with before its handler runs
//!   (`guard::statuses`: R12, the body bound, a malformed parameter), beside the statuses of
//!   its own error type.
//! - The cookie security scheme names the configured cookie, not the compiled default; an
//!   operation that needs no session says so with an empty `security`, and the one server
//!   is the one the document was fetched from (`/`), where poem-openapi writes an empty
//!   list.
//! - A request body's object schema refuses unknown fields (`additionalProperties: false`),
//!   as the server does (422).
//! - Every `/v1` answer declares `Cache-Control: no-store`, which the guard sends, and every
//!   header is named in its usual case (poem-openapi writes derived headers in capitals).
//! - A property that refers to another schema carries no sibling keywords (OpenAPI 3.0
//!   ignores them, and generators choke on the `allOf` poem-openapi wraps them in): a
//!   description is dropped, and a nullable reference becomes the referenced object schema
//!   itself with `nullable: true` beside its `type` (strict 3.0.3 readers such as Ajv and
//!   Redocly ignore `nullable` without a `type`).

use poem::http::Method;
#[cfg(test)]
use poem::http::StatusCode;
use serde_json::{Value, json};

use super::guard;
use super::problem::meta_response;
use super::security::COOKIE_SCHEME;

/// The finished document, as JSON text.
pub fn finish(generated: &str, cookie_name: &str) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(generated) else {
        return generated.to_owned();
    };
    name_cookie(&mut document, cookie_name);
    add_guard_statuses(&mut document);
    declare_public(&mut document);
    declare_no_store(&mut document);
    add_accept_loop_statuses(&mut document);
    if let Some(top) = document.as_object_mut() {
        top.insert(
            "servers".into(),
            json!([{"url": "/", "description": "the server this document was fetched from"}]),
        );
    }
    let schemas = document
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(all) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in all.values_mut() {
            if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                for property in properties.values_mut() {
                    bare_reference(property, &schemas);
                }
            }
        }
    }
    close_request_objects(&mut document);
    drop_unreferenced_schemas(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| generated.to_owned())
}

/// Every request body is read with unknown fields refused (422): an object schema a body
/// refers to says so with `additionalProperties: false`.
fn close_request_objects(document: &mut Value) {
    let bodies: Vec<String> = operations(document)
        .filter_map(|(_, _, operation)| {
            operation
                .pointer("/requestBody/content/application~1json/schema/$ref")
                .and_then(Value::as_str)
                .and_then(|target| target.strip_prefix("#/components/schemas/"))
                .map(str::to_owned)
        })
        .collect();
    for name in bodies {
        if let Some(schema) = document
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(Value::as_object_mut)
            && schema.contains_key("properties")
            && !schema.contains_key("additionalProperties")
        {
            schema.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
}

/// Schemas that nothing refers to any more (an inlined nullable one) are not listed.
fn drop_unreferenced_schemas(document: &mut Value) {
    let text = document.to_string();
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.retain(|name, _| text.contains(&format!("\"#/components/schemas/{name}\"")));
    }
}

/// Each operation, with its path and method.
fn operations(document: &mut Value) -> impl Iterator<Item = (&String, Method, &mut Value)> {
    document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .filter_map(|(path, item)| Some((path, item.as_object_mut()?)))
        .flat_map(|(path, item)| {
            item.iter_mut().filter_map(move |(method, operation)| {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?;
                Some((path, method, operation))
            })
        })
}

/// What the accept loop refuses before a request reaches the application (R16): a head larger
/// than it reads. hyper answers it, with no body.
const HEAD_TOO_LARGE: &str = "The request's head is larger than 32 KiB (HTTP/2: its header \
     list is larger than 16 KiB); the answer has no body.";

/// What the accept loop refuses, on every operation: a bare answer of hyper's (no
/// `Cache-Control`, no body), so it is added after the headers every answer of the
/// application carries.
fn add_accept_loop_statuses(document: &mut Value) {
    for (_, _, operation) in operations(document) {
        if let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        {
            responses.insert("431".into(), json!({ "description": HEAD_TOO_LARGE }));
        }
    }
}

/// What the guard refuses before a handler runs, listed on every operation it can happen to.
fn add_guard_statuses(document: &mut Value) {
    for (path, method, operation) in operations(document) {
        let has_parameters = operation
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|parameters| !parameters.is_empty());
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for status in guard::statuses(&method, path, has_parameters) {
            let key = status.as_u16().to_string();
            if !responses.contains_key(&key) {
                let response = serde_json::to_value(meta_response(status)).unwrap_or(Value::Null);
                responses.insert(key, response);
            }
        }
    }
}

/// An operation without a security requirement needs no session: it says so explicitly.
fn declare_public(document: &mut Value) {
    for (_, _, operation) in operations(document) {
        if let Some(operation) = operation.as_object_mut() {
            operation.entry("security").or_insert_with(|| json!([]));
        }
    }
}

/// The statuses each operation of `document` lists, by `operationId`.
#[cfg(test)]
pub(crate) fn listed_statuses(document: &Value) -> Vec<(String, Method, String, Vec<StatusCode>)> {
    let mut document = document.clone();
    operations(&mut document)
        .map(|(path, method, operation)| {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let statuses = operation["responses"]
                .as_object()
                .map(|responses| {
                    responses
                        .keys()
                        .filter_map(|key| key.parse::<u16>().ok())
                        .filter_map(|code| StatusCode::from_u16(code).ok())
                        .collect()
                })
                .unwrap_or_default();
            (id, method, path.clone(), statuses)
        })
        .collect()
}

fn name_cookie(document: &mut Value, cookie_name: &str) {
    let pointer = format!("/components/securitySchemes/{COOKIE_SCHEME}/name");
    if let Some(name) = document.pointer_mut(&pointer) {
        *name = Value::String(cookie_name.to_owned());
    }
}

/// `X-WEBSESSIONS-USER` as `X-Websessions-User`.
fn usual_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn declare_no_store(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, operations) in paths.iter_mut() {
        let v1 = path.starts_with("/v1/");
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for response in responses.values_mut() {
                let Some(response) = response.as_object_mut() else {
                    continue;
                };
                if let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) {
                    *headers = std::mem::take(headers)
                        .into_iter()
                        .map(|(name, header)| (usual_case(&name), header))
                        .collect();
                }
                if !v1 {
                    continue;
                }
                let headers = response.entry("headers").or_insert_with(|| json!({}));
                if let Some(headers) = headers.as_object_mut() {
                    headers.insert(
                        "Cache-Control".into(),
                        json!({
                            "description": "Every /v1 answer is never to be cached.",
                            "required": true,
                            "deprecated": false,
                            "schema": {"type": "string", "enum": ["no-store"]},
                        }),
                    );
                }
            }
        }
    }
}

/// `allOf: [{$ref}, {patch}]` as poem-openapi writes a described or nullable reference, made
/// into what generators and validators read: the bare reference, or, when nullable, the
/// referenced object schema with `nullable: true` (from `schemas`, the components).
fn bare_reference(property: &mut Value, schemas: &Value) {
    let Some(all_of) = property.get("allOf").and_then(Value::as_array) else {
        return;
    };
    let [reference, patch] = all_of.as_slice() else {
        return;
    };
    let Some(target) = reference.get("$ref").and_then(Value::as_str) else {
        return;
    };
    let nullable = patch.get("nullable").and_then(Value::as_bool) == Some(true);
    let referenced = target
        .strip_prefix("#/components/schemas/")
        .and_then(|name| schemas.get(name));
    *property = match referenced {
        Some(schema) if nullable && schema.get("type").is_some() => {
            let mut schema = schema.clone();
            if let Some(object) = schema.as_object_mut() {
                object.insert("nullable".into(), Value::Bool(true));
            }
            schema
        }
        _ => reference.clone(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_names_the_cookie_declares_no_store_and_bares_references() {
        let generated = json!({
            "servers": [],
            "paths": {
                "/v1/x": {"get": {"security": [{"SessionCookie": []}], "responses": {"200": {"description": "ok",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/S"}}},
                    "headers": {"X-WEBSESSIONS-USER": {"schema": {"type": "string"}}}}}}},
                "/health/live": {"get": {"responses": {"200": {"description": "ok"}}}}
            },
            "components": {
                "securitySchemes": {"SessionCookie": {"type": "apiKey", "name": "__Host-websession", "in": "cookie"}},
                "schemas": {
                    "S": {"type": "object", "properties": {
                        "kind": {"allOf": [{"$ref": "#/components/schemas/Kind"}, {"description": "d"}]},
                        "user": {"allOf": [{"$ref": "#/components/schemas/U"}, {"nullable": true, "description": "d"}]},
                        "n": {"type": "integer"}
                    }},
                    "U": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                    "Kind": {"type": "string"}
                }
            }
        });
        let finished: Value = serde_json::from_str(&finish(&generated.to_string(), "sid")).unwrap();
        assert_eq!(
            finished.pointer("/components/securitySchemes/SessionCookie/name"),
            Some(&json!("sid"))
        );
        assert_eq!(finished["servers"][0]["url"], "/");
        let no_store = "/paths/~1v1~1x/get/responses/200/headers/Cache-Control/schema/enum/0";
        assert_eq!(finished.pointer(no_store), Some(&json!("no-store")));
        let user = "/paths/~1v1~1x/get/responses/200/headers/X-Websessions-User";
        assert!(finished.pointer(user).is_some());
        let health = "/paths/~1health~1live/get/responses/200/headers";
        assert_eq!(finished.pointer(health), None);
        assert_eq!(
            finished.pointer("/paths/~1health~1live/get/security"),
            Some(&json!([]))
        );
        assert_eq!(
            finished.pointer("/paths/~1v1~1x/get/security"),
            Some(&json!([{"SessionCookie": []}]))
        );
        let properties = finished
            .pointer("/components/schemas/S/properties")
            .unwrap();
        assert_eq!(
            properties["kind"],
            json!({"$ref": "#/components/schemas/Kind"})
        );
        assert_eq!(
            properties["user"],
            json!({"type": "object", "nullable": true, "required": ["name"],
                   "properties": {"name": {"type": "string"}}})
        );
        assert_eq!(properties["n"], json!({"type": "integer"}));
        assert!(finished.pointer("/components/schemas/Kind").is_some());
        assert!(finished.pointer("/components/schemas/U").is_none());
    }

    #[test]
    fn the_guards_refusals_are_listed_where_the_guard_can_refuse() {
        let generated = json!({"paths": {
            "/v1/w": {"post": {"responses": {"200": {"description": "ok"}}}},
            "/v1/d/{id}": {"delete": {"parameters": [{"name": "id"}], "responses": {}}},
            "/v1/auth": {"get": {"responses": {}}},
            "/v1/r": {"get": {"responses": {}}}
        }});
        let finished: Value = serde_json::from_str(&finish(&generated.to_string(), "c")).unwrap();
        let listed: Vec<(String, Vec<u16>)> = listed_statuses(&finished)
            .into_iter()
            .map(|(_, method, path, statuses)| {
                let codes = statuses.iter().map(StatusCode::as_u16).collect();
                (format!("{method} {path}"), codes)
            })
            .collect();
        let of = |what: &str| {
            listed
                .iter()
                .find(|(name, _)| name == what)
                .map(|(_, codes)| codes.clone())
                .unwrap()
        };
        assert_eq!(of("POST /v1/w"), [200, 400, 403, 408, 413, 431]);
        assert_eq!(of("DELETE /v1/d/{id}"), [400, 403, 431]);
        assert_eq!(of("GET /v1/auth"), [431]);
        assert_eq!(of("GET /v1/r"), [431]);
    }

    #[test]
    fn request_bodies_refuse_unknown_fields_as_the_server_does() {
        let generated = json!({
            "paths": {"/v1/w": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}},
                "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Out"}}}}}
            }}},
            "components": {"schemas": {
                "In": {"type": "object", "properties": {"a": {"type": "string"}}},
                "Out": {"type": "object", "properties": {"b": {"type": "string"}}}
            }}
        });
        let finished: Value = serde_json::from_str(&finish(&generated.to_string(), "c")).unwrap();
        assert_eq!(
            finished.pointer("/components/schemas/In/additionalProperties"),
            Some(&json!(false))
        );
        assert_eq!(
            finished.pointer("/components/schemas/Out/additionalProperties"),
            None
        );
    }
}
