//! How S3 failures become larder's classified errors.
//!
//! Temporary (worth a retry): time-outs, connection failures, truncated responses, the statuses
//! [`larder_bucket::error::status_is_temporary`] names, and the S3 codes `SlowDown`,
//! `RequestTimeout`, `InternalError`. Everything else is permanent, with the service's code and
//! message in the text so a wrong key or a missing bucket reads as such.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use larder_bucket::error::{status_is_temporary, store_error};
use larder_core::Error;

pub(crate) const STORE: &str = "larder-s3";

/// The HTTP status of a service error, if the service answered.
pub(crate) fn status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Turn an SDK error for the operation `what` into a classified [`Error`].
pub(crate) fn sdk<E>(what: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (message, temporary) = match &err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let status = ctx.raw().status().as_u16();
            let code = e.code().unwrap_or("no error code");
            let temporary = status_is_temporary(status)
                || matches!(code, "SlowDown" | "RequestTimeout" | "InternalError");
            let hint = match (status, code) {
                (_, "NoSuchBucket") => " (the bucket does not exist)",
                (403, _) | (_, "AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId") => {
                    " (check the access key and secret: LARDER_S3_ACCESS_KEY / LARDER_S3_SECRET_KEY or the AWS credential chain)"
                }
                _ => "",
            };
            let text = e.message().unwrap_or("");
            (format!("HTTP {status} {code}: {text}{hint}"), temporary)
        }
        SdkError::ConstructionFailure(_) => (DisplayErrorContext(&err).to_string(), false),
        // A bad configuration (e.g. no credentials) is a user error; I/O and time-outs may pass.
        SdkError::DispatchFailure(d) => (DisplayErrorContext(&err).to_string(), !d.is_user()),
        // Time-outs and responses cut short.
        _ => (DisplayErrorContext(&err).to_string(), true),
    };
    store_error(STORE, what, message, temporary, Some(Box::new(err)))
}
