//! The one HTTP error type, mapped once to RFC 9457 problem details
//! (`application/problem+json`). 5xx details are logged, not sent.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wenming_analytics::AnalyticsError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
}

use wenming_analytics::history::HistoryError;

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> ApiError {
        match e {
            AnalyticsError::BadRequest(m) => ApiError::bad_request(m),
            AnalyticsError::Refused(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            AnalyticsError::Cancelled(m) => ApiError::new(StatusCode::REQUEST_TIMEOUT, m),
            AnalyticsError::Limit(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            AnalyticsError::NotFound(m) => ApiError::not_found(m),
            AnalyticsError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            AnalyticsError::History(h) => match *h {
                // The data of that time is no longer in the lake.
                gone @ HistoryError::Gone { .. } => {
                    ApiError::new(StatusCode::GONE, gone.to_string())
                }
                refused @ (HistoryError::NoSuchVersion { .. } | HistoryError::Future(_)) => {
                    ApiError::bad_request(refused.to_string())
                }
                HistoryError::Lake(e) => AnalyticsError::Lake(e).into(),
            },
            other => {
                tracing::error!(error = %other, request_id = %request_id(), "query failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the query failed; the server log has the details",
                )
            }
        }
    }
}

// The extractors' own rejections (a malformed query string, a body over the size limit)
// are plain text by default; handlers take `Result<Query<_>, _>` / `Result<Bytes, _>` and
// turn them into problems here, keeping axum's status code and its message.
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::new(e.status(), format!("bad query string: {}", e.body_text()))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> ApiError {
        ApiError::new(
            e.status(),
            format!("cannot read the body: {}", e.body_text()),
        )
    }
}

tokio::task_local! {
    /// The id of the request being served (`routes::observe` sets it for the handler's
    /// whole future): in the `x-request-id` header of every answer, in the body of a 5xx,
    /// and in the log lines of its failure, so an office can quote it to its IT.
    pub static REQUEST_ID: String;
}

/// The current request's id (empty outside a request).
pub fn request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default()
}

/// A panic anywhere in a handler: logged with the request id, answered 500, and the
/// server goes on (`tower_http::catch_panic`).
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(request_id = %request_id(), panic = what, "a handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed on this request; the server log has the details",
    )
    .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if self.status.is_server_error() {
            body["request_id"] = request_id().into();
        }
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
