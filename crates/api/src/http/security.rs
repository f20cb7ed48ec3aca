//! How each operation's security is documented: a session is optional, required, or required
//! and a superuser's. These extractors only document; the credential itself is read from the
//! raw request (`edge`), under the configured cookie name, and the rules decide. OpenAPI 3.0
//! cannot say "superuser" as a scheme: such operations say so in their description and list
//! 403. The document pass (`document`) names the configured cookie.

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

/// The name the cookie scheme is registered with before the document pass renames it.
pub const DEFAULT_COOKIE: &str = "__Host-websession";

pub const COOKIE_SCHEME: &str = "SessionCookie";
pub const BEARER_SCHEME: &str = "SessionBearer";

fn register_schemes(registry: &mut Registry) {
    registry.create_security_scheme(
        COOKIE_SCHEME,
        MetaSecurityScheme {
            ty: "apiKey",
            description: Some(
                "The session cookie a browser holds (HttpOnly); its value is the credential.",
            ),
            name: Some(DEFAULT_COOKIE),
            key_in: Some("cookie"),
            scheme: None,
            bearer_format: None,
            flows: None,
            openid_connect_url: None,
        },
    );
    registry.create_security_scheme(
        BEARER_SCHEME,
        MetaSecurityScheme {
            ty: "http",
            description: Some(
                "`Authorization: Bearer <id>.<token>`, the credential an API client receives at \
                 login. With this header present, any cookie is ignored.",
            ),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("<id>.<token>"),
            flows: None,
            openid_connect_url: None,
        },
    );
}

/// Declares a documentation-only security extractor.
macro_rules! security {
    ($(#[$doc:meta])* $name:ident, optional = $optional:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl<'a> ApiExtractor<'a> for $name {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                register_schemes(registry);
            }

            fn security_schemes() -> Vec<&'static str> {
                vec![COOKIE_SCHEME, BEARER_SCHEME]
            }

            fn has_security_fallback() -> bool {
                $optional
            }

            async fn from_request(
                _: &'a Request,
                _: &mut RequestBody,
                _: ExtractParamOptions<()>,
            ) -> poem::Result<Self> {
                Ok(Self)
            }
        }
    };
}

security!(
    /// A session may be presented, or none.
    OptionalSession,
    optional = true
);

security!(
    /// A valid session must be presented (for most operations, of a logged-in user; for
    /// administration, of a superuser).
    RequiredSession,
    optional = false
);
