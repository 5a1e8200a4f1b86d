//! The one error type at the HTTP edge. Every failure becomes a JSON body
//! `{"error": code, "message": text, "field": name?}` with a fitting status;
//! internal causes are logged, never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::faults::FaultError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed request: bad query value, unparsable JSON, bad path parameter.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    /// Well-formed but semantically invalid body.
    #[error("{message}")]
    Unprocessable { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("fault injection is disabled (FAULTS=disabled)")]
    FaultsDisabled,
    #[error("missing or wrong x-fault-token header")]
    FaultTokenRequired,
    #[error("{0}")]
    Conflict(String),
    /// An intentional failure (fault injection); logged by the caller.
    #[error("{0}")]
    Injected(String),
    /// A bug or failed dependency; the cause is logged by the caller.
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<FaultError> for AppError {
    fn from(e: FaultError) -> AppError {
        match e {
            FaultError::Invalid { field, message } => AppError::BadRequest {
                field: Some(field.to_string()),
                message: format!("{field}: {message}"),
            },
            FaultError::LimitReached(m) => AppError::Conflict(m),
        }
    }
}

impl AppError {
    pub fn bad_field(field: impl Into<String>, message: impl std::fmt::Display) -> AppError {
        let field = field.into();
        AppError::BadRequest {
            message: format!("{field}: {message}"),
            field: Some(field),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::FaultsDisabled => StatusCode::FORBIDDEN,
            AppError::FaultTokenRequired => StatusCode::UNAUTHORIZED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Injected(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { .. } => "bad_request",
            AppError::Unprocessable { .. } => "validation_failed",
            AppError::NotFound(_) => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::FaultsDisabled => "faults_disabled",
            AppError::FaultTokenRequired => "fault_token_required",
            AppError::Conflict(_) => "limit_reached",
            AppError::Injected(_) | AppError::Internal(_) => "internal_error",
            AppError::Timeout(_) => "timeout",
            AppError::Unavailable(_) => "unavailable",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let field = match &self {
            AppError::BadRequest { field, .. } => field.clone(),
            AppError::Unprocessable { field, .. } => Some(field.clone()),
            _ => None,
        };
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        if let Some(f) = field {
            body["field"] = f.into();
        }
        (self.status(), Json(body)).into_response()
    }
}
