//! The one error type of the query layer. `BadRequest` is the caller's mistake (a 4xx
//! over HTTP, a usage error on the command line); the others are ours or the lake's.

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Refused(String),
    #[error("query cancelled: {0}")]
    Cancelled(String),
    /// A limit of the caller's question was reached (memory, values built, cells).
    #[error("{0}")]
    Limit(String),
    /// Not found in the caller's scope: said alike whether it exists elsewhere or not.
    #[error("{0}")]
    NotFound(String),
    /// A part the question needs is not there (the distributed engine's scheduler).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Lake(#[from] crate::lakehouse::LakehouseError),
    /// A question about the past the lake cannot answer (no such version, data vacuumed).
    #[error(transparent)]
    History(Box<crate::history::HistoryError>),
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("query failed: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl From<crate::history::HistoryError> for AnalyticsError {
    fn from(e: crate::history::HistoryError) -> Self {
        AnalyticsError::History(Box::new(e))
    }
}
