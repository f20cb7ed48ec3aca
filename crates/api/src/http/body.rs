//! Request bodies: declared `application/json` in the document, and parsed strictly with serde
//! only when the handler asks, so that what R5f puts first (R14's limit on logins) does come
//! first. A body of another media type is 415, one that is not JSON 400, and JSON of the wrong
//! shape or types 422: `{"username": 5}` is never read as `"5"`. No refusal echoes the body,
//! which may hold a password.

use std::marker::PhantomData;

use poem::http::header;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::problem::refuse;

/// The media type of every request body.
pub const JSON: &str = "application/json";

/// A JSON request body of shape `T`, not yet parsed.
#[derive(Debug)]
pub struct JsonBody<T> {
    is_json: bool,
    bytes: Vec<u8>,
    _shape: PhantomData<T>,
}

/// What is wrong with a request body.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Not `application/json`.
    MediaType,
    /// Not JSON at all.
    NotJson,
    /// JSON of the wrong shape or types.
    Shape,
}

refuse! {
    BodyRefusal {
        Self::MediaType => UNSUPPORTED_MEDIA_TYPE("the body must be application/json"),
        Self::NotJson => BAD_REQUEST("the body is not JSON"),
        Self::Shape => UNPROCESSABLE_ENTITY(
            "the JSON body has a missing, unknown or mistyped field; see the API document"
        ),
    }
}

impl<T: DeserializeOwned> JsonBody<T> {
    /// The body as `T`, or what is wrong with it.
    pub fn parse(self) -> Result<T, BodyRefusal> {
        if !self.is_json {
            return Err(BodyRefusal::MediaType);
        }
        serde_json::from_slice(&self.bytes).map_err(|error| match error.classify() {
            Category::Data => BodyRefusal::Shape,
            Category::Syntax | Category::Eof | Category::Io => BodyRefusal::NotJson,
        })
    }
}

/// Whether a `Content-Type` says `application/json` (parameters such as charset allowed).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(JSON))
}

impl<'a, T: Type + DeserializeOwned + Send> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: JSON,
                schema: T::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json);
        // The guard has read the body already, bounded to 16 KiB.
        let bytes = body.take()?.into_vec().await?;
        Ok(Self {
            is_json,
            bytes,
            _shape: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::problem::Refuse;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[allow(dead_code)]
        name: String,
    }

    fn body(is_json: bool, text: &str) -> JsonBody<Shape> {
        JsonBody {
            is_json,
            bytes: text.as_bytes().to_vec(),
            _shape: PhantomData,
        }
    }

    #[test]
    fn media_types_are_compared_without_parameters_or_case() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("application/jsonx"));
    }

    #[test]
    fn the_wrong_type_is_422_never_coerced_and_garbage_is_400() {
        assert!(body(true, r#"{"name":"a"}"#).parse().is_ok());
        for (text, refusal) in [
            (r#"{"name":5}"#, BodyRefusal::Shape),
            (r#"{"name":"a","x":1}"#, BodyRefusal::Shape),
            ("{}", BodyRefusal::Shape),
            ("null", BodyRefusal::Shape),
            ("[]", BodyRefusal::Shape),
            ("{", BodyRefusal::NotJson),
            ("", BodyRefusal::NotJson),
            ("name=a", BodyRefusal::NotJson),
        ] {
            assert_eq!(body(true, text).parse().unwrap_err(), refusal, "{text:?}");
        }
        let refusal = body(false, r#"{"name":"a"}"#).parse().unwrap_err();
        assert_eq!(refusal, BodyRefusal::MediaType);
    }

    #[test]
    fn no_refusal_echoes_the_body() {
        let secret = "hunter2hunter2";
        for text in [
            format!(r#"{{"name":{secret}}}"#),
            format!(r#"{{"{secret}":1}}"#),
        ] {
            let refusal = body(true, &text).parse().unwrap_err().refusal();
            assert!(!format!("{refusal:?}").contains(secret));
        }
    }
}
