//! Query strings and JSON bodies parsed so that bad input is an `AppError` naming
//! the field (a 400 or 422 in JSON), never a plain-text rejection.

use serde::de::DeserializeOwned;

use crate::error::AppError;

/// The query string parsed into `T`; unknown parameters and bad values are 400s
/// naming the parameter.
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
