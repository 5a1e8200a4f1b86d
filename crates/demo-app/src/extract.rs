//! Request extractors that turn bad input into `AppError`s naming the field,
//! instead of axum's plain-text rejections.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// Query string parsed into `T`; unknown parameters and bad values are 400s naming the parameter.
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let q = parts.uri.query().unwrap_or("");
        parse_query(q).map(ValidQuery)
    }
}

pub fn parse_query<T: DeserializeOwned>(q: &str) -> Result<T, AppError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(q));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            // serde reports unknown fields at the root; its message names the parameter.
            AppError::BadRequest {
                field: None,
                message: format!("query: {inner}"),
            }
        } else {
            AppError::bad_field(path, inner)
        }
    })
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

/// Parses a JSON body into `T`: syntax errors are 400, type and shape errors 422 naming the path.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                AppError::Unprocessable {
                    message: format!("{field}: {inner}"),
                    field,
                }
            }
            _ => AppError::BadRequest {
                field: Some("body".into()),
                message: format!("body is not valid JSON: {inner}"),
            },
        }
    })?;
    de.end().map_err(|e| AppError::BadRequest {
        field: Some("body".into()),
        message: format!("body is not valid JSON: {e}"),
    })?;
    Ok(value)
}
