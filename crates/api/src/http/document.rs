//! The one pass over the document poem-openapi generates, for what its derives cannot say.
//! Every output goes through it: the served `/openapi.json` and `/docs`, and
//! `websessions openapi` (which the committed `openapi/openapi.json` is).
//!
//! - The cookie security scheme names the configured cookie, not the compiled default.
//! - Every `/v1` answer declares `Cache-Control: no-store`, which the guard sends, and every
//!   header is named in its usual case (poem-openapi writes derived headers in capitals).
//! - A property that refers to another schema carries no sibling keywords (OpenAPI 3.0
//!   ignores them, and generators choke on the `allOf` poem-openapi wraps them in): a
//!   description is dropped, and a nullable reference becomes `allOf: [$ref]` with
//!   `nullable: true` beside it, the 3.0 idiom.

use serde_json::{Value, json};

use super::security::COOKIE_SCHEME;

/// The finished document, as JSON text.
pub fn finish(generated: &str, cookie_name: &str) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(generated) else {
        return generated.to_owned();
    };
    name_cookie(&mut document, cookie_name);
    declare_no_store(&mut document);
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                properties.values_mut().for_each(bare_reference);
            }
        }
    }
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| generated.to_owned())
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
/// into what generators and validators read.
fn bare_reference(property: &mut Value) {
    let Some(all_of) = property.get("allOf").and_then(Value::as_array) else {
        return;
    };
    let [reference, patch] = all_of.as_slice() else {
        return;
    };
    if reference.get("$ref").is_none() {
        return;
    }
    let nullable = patch.get("nullable").and_then(Value::as_bool) == Some(true);
    *property = if nullable {
        json!({"allOf": [reference], "nullable": true})
    } else {
        reference.clone()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_names_the_cookie_declares_no_store_and_bares_references() {
        let generated = json!({
            "paths": {
                "/v1/x": {"get": {"responses": {"200": {"description": "ok",
                    "headers": {"X-WEBSESSIONS-USER": {"schema": {"type": "string"}}}}}}},
                "/health/live": {"get": {"responses": {"200": {"description": "ok"}}}}
            },
            "components": {
                "securitySchemes": {"SessionCookie": {"type": "apiKey", "name": "__Host-websession", "in": "cookie"}},
                "schemas": {"S": {"type": "object", "properties": {
                    "kind": {"allOf": [{"$ref": "#/components/schemas/Kind"}, {"description": "d"}]},
                    "user": {"allOf": [{"$ref": "#/components/schemas/U"}, {"nullable": true, "description": "d"}]},
                    "n": {"type": "integer"}
                }}}
            }
        });
        let finished: Value = serde_json::from_str(&finish(&generated.to_string(), "sid")).unwrap();
        assert_eq!(
            finished.pointer("/components/securitySchemes/SessionCookie/name"),
            Some(&json!("sid"))
        );
        let no_store = "/paths/~1v1~1x/get/responses/200/headers/Cache-Control/schema/enum/0";
        assert_eq!(finished.pointer(no_store), Some(&json!("no-store")));
        let user = "/paths/~1v1~1x/get/responses/200/headers/X-Websessions-User";
        assert!(finished.pointer(user).is_some());
        let health = "/paths/~1health~1live/get/responses/200/headers";
        assert_eq!(finished.pointer(health), None);
        let properties = finished
            .pointer("/components/schemas/S/properties")
            .unwrap();
        assert_eq!(
            properties["kind"],
            json!({"$ref": "#/components/schemas/Kind"})
        );
        assert_eq!(
            properties["user"],
            json!({"allOf": [{"$ref": "#/components/schemas/U"}], "nullable": true})
        );
        assert_eq!(properties["n"], json!({"type": "integer"}));
    }
}
