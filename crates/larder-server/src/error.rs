//! Errors of the server: how a failed request becomes an HTTP status.
//!
//! Store errors are mapped by their [`ErrorKind`]: a miss is 404, the caller's mistake is 400
//! (413 when over a size bound), a temporary failure is 503 so that clients retry, and anything
//! else is 500. Error bodies are one line of plain text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use larder_core::ErrorKind;

/// Errors of server set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The store directory could not be opened.
    #[error("cannot open the store at {dir}: {source}")]
    Store {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: larder_core::Error,
    },
    /// A TLS file could not be used.
    #[error("TLS: {file}: {message}")]
    Tls {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The credentials file could not be read.
    #[error("bad credentials file {file}: {message}")]
    Auth {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Another server already serves the directory.
    #[error(
        "another larder server (pid {pid}) already serves {dir}; stop it first or use another --dir"
    )]
    Locked {
        /// The directory.
        dir: String,
        /// The other server's pid, as it wrote it.
        pid: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A prefix in the configuration is not an absolute path without a trailing slash.
    #[error("bad prefix {0:?}: it must start with `/`, be distinct and not end with `/`")]
    Prefix(String),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// From the store.
    #[error(transparent)]
    Store(#[from] larder_core::Error),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// A body over the configured bound.
    #[error("{what} is over the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// A write to a read-only server.
    #[error("this server is read-only")]
    ReadOnly,
    /// Nothing here.
    #[error("not found")]
    NotFound,
    /// The disk cannot take the write.
    #[error("insufficient storage: {0}")]
    OutOfSpace(String),
    /// Reading the request body failed.
    #[error("reading the request body: {0}")]
    Body(String),
}

impl ApiError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Store(e) if crate::disk::is_out_of_space(e) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ApiError::Store(e) => match (e, e.kind()) {
                (larder_core::Error::TooLarge { .. }, _) => StatusCode::PAYLOAD_TOO_LARGE,
                (larder_core::Error::NotSupported { .. }, _) => StatusCode::NOT_IMPLEMENTED,
                (larder_core::Error::Untrusted { .. }, _) => StatusCode::FORBIDDEN,
                (_, ErrorKind::NotFound) => StatusCode::NOT_FOUND,
                (_, ErrorKind::InvalidInput) => StatusCode::BAD_REQUEST,
                (_, ErrorKind::Temporary) => StatusCode::SERVICE_UNAVAILABLE,
                (_, ErrorKind::Corrupt) | (_, ErrorKind::Permanent) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ReadOnly => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Body(_) => StatusCode::BAD_REQUEST,
            ApiError::OutOfSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("larder-server: {self}");
        } else {
            tracing::debug!("larder-server: {status}: {self}");
        }
        (status, format!("{self}\n")).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
