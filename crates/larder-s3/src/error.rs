//! How S3 failures become larder's classified errors.
//!
//! Temporary (worth a retry): time-outs, connection failures, truncated responses, 429, 5xx and
//! the S3 codes `SlowDown`, `RequestTimeout`, `InternalError`. Everything else is permanent, with
//! the service's code and message in the text so a wrong key or a missing bucket reads as such.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use larder_core::Error;

pub(crate) const STORE: &str = "larder-s3";

/// The HTTP status of a service error, if the service answered.
pub(crate) fn status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn status_is_temporary(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status) && status != 501
}

/// Turn an SDK error for the operation `what` into a classified [`Error`].
pub(crate) fn sdk<E>(what: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let status = ctx.raw().status().as_u16();
            let code = e.code().unwrap_or("no error code");
            let message = e.message().unwrap_or("");
            let temporary = status_is_temporary(status)
                || matches!(code, "SlowDown" | "RequestTimeout" | "InternalError");
            let hint = match (status, code) {
                (_, "NoSuchBucket") => " (the bucket does not exist)",
                (403, _) | (_, "AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId") => {
                    " (check the access key and secret: LARDER_S3_ACCESS_KEY / LARDER_S3_SECRET_KEY or the AWS credential chain)"
                }
                _ => "",
            };
            Error::Store {
                store: STORE.into(),
                message: format!("{what}: HTTP {status} {code}: {message}{hint}"),
                temporary,
                source: Some(Box::new(err)),
            }
        }
        SdkError::ConstructionFailure(_) => Error::Store {
            store: STORE.into(),
            message: format!("{what}: {}", DisplayErrorContext(&err)),
            temporary: false,
            source: Some(Box::new(err)),
        },
        SdkError::DispatchFailure(d) => {
            // A bad configuration (e.g. no credentials) is a user error; I/O and time-outs may
            // pass.
            let temporary = !d.is_user();
            Error::Store {
                store: STORE.into(),
                message: format!("{what}: {}", DisplayErrorContext(&err)),
                temporary,
                source: Some(Box::new(err)),
            }
        }
        _ => Error::Store {
            // Time-outs and responses cut short.
            store: STORE.into(),
            message: format!("{what}: {}", DisplayErrorContext(&err)),
            temporary: true,
            source: Some(Box::new(err)),
        },
    }
}

/// A failure while reading a response body.
pub(crate) fn body(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Store {
        store: STORE.into(),
        message: format!("{what}: {err}"),
        temporary: true,
        source: Some(Box::new(err)),
    }
}

/// A peer that sent nothing for `after`: temporary.
pub(crate) fn stalled(what: &str, after: std::time::Duration) -> Error {
    Error::Store {
        store: STORE.into(),
        message: format!("{what}: nothing received for {after:?}"),
        temporary: true,
        source: None,
    }
}

/// A bad store configuration (URL, missing keys): permanent, user-facing.
pub(crate) fn config(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for s in [429, 500, 502, 503, 504, 408] {
            assert!(status_is_temporary(s), "{s}");
        }
        for s in [400, 403, 404, 412, 501] {
            assert!(!status_is_temporary(s), "{s}");
        }
    }
}
