//! Store errors as gRPC statuses.

use larder_core::{Error, ErrorKind};
use tonic::Status;

/// The gRPC status for a store error: the caller's fault is INVALID_ARGUMENT, a full disk
/// RESOURCE_EXHAUSTED, a retryable failure UNAVAILABLE, anything else INTERNAL.
pub(crate) fn store_status(e: Error) -> Status {
    if let Error::Io { source, .. } = &e
        && matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    {
        return Status::resource_exhausted(e.to_string());
    }
    match e.kind() {
        ErrorKind::InvalidInput => Status::invalid_argument(e.to_string()),
        ErrorKind::NotFound => Status::not_found(e.to_string()),
        ErrorKind::Temporary => Status::unavailable(e.to_string()),
        ErrorKind::Corrupt => Status::data_loss(e.to_string()),
        ErrorKind::Permanent => Status::internal(e.to_string()),
    }
}
