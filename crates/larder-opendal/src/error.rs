//! How OpenDAL failures become larder's classified errors.
//!
//! OpenDAL marks each error temporary or not (its `RetryLayer`, which this store uses, retries
//! only the temporary ones, and marks those that outlive their retries "persistent"); larder
//! classifies both as [`ErrorKind::Temporary`](larder_core::ErrorKind::Temporary). Rate limiting
//! is temporary too. A bad configuration is the user's fault ([`Error::InvalidInput`]); a refused
//! credential is permanent and says which options to check. Not found is reported as such,
//! though the store turns it into a miss wherever a miss is meant.

use larder_bucket::error::{Failure, classify};
use larder_core::Error;
use opendal::ErrorKind as K;

pub(crate) const STORE: &str = "larder-opendal";

/// Turn an OpenDAL error met while doing `what` into a classified [`Error`].
pub(crate) fn od(what: &str, err: opendal::Error) -> Error {
    let failure = match err.kind() {
        K::NotFound => Failure::NotFound,
        K::ConfigInvalid => Failure::Config,
        K::Unsupported => Failure::Unsupported,
        K::PermissionDenied => Failure::Denied,
        // "Persistent" is OpenDAL's mark for a temporary error that outlived its retries (a
        // dead or hanging server): still worth trying again later, so temporary here.
        K::RateLimited => Failure::Temporary,
        _ if err.is_temporary() || err.is_persistent() => Failure::Temporary,
        _ => Failure::Permanent,
    };
    let credentials = "the service's credentials: LARDER_OPENDAL_* options";
    classify(STORE, what, failure, credentials, err)
}

/// Whether an OpenDAL error means "not there".
pub(crate) fn is_not_found(err: &opendal::Error) -> bool {
    err.kind() == K::NotFound
}

/// Whether an OpenDAL error answers a create-only write: the object is already there (or a
/// concurrent create-only write of it is under way).
pub(crate) fn is_exists(err: &opendal::Error) -> bool {
    matches!(err.kind(), K::ConditionNotMatch | K::AlreadyExists)
}

#[cfg(test)]
mod tests {
    use larder_core::ErrorKind;

    use super::*;

    #[test]
    fn kinds_are_classified() {
        let e = |kind, temporary: bool| {
            let e = opendal::Error::new(kind, "reset");
            od("x", if temporary { e.set_temporary() } else { e })
        };
        let persistent = od(
            "x",
            opendal::Error::new(K::Unexpected, "-").set_persistent(),
        );
        let denied = e(K::PermissionDenied, false);
        assert!(denied.to_string().contains("LARDER_OPENDAL_*"), "{denied}");
        let kinds = [
            (e(K::NotFound, false), ErrorKind::NotFound),
            (e(K::ConfigInvalid, false), ErrorKind::InvalidInput),
            (e(K::Unexpected, true), ErrorKind::Temporary),
            (persistent, ErrorKind::Temporary),
            (e(K::RateLimited, false), ErrorKind::Temporary),
            (denied, ErrorKind::Permanent),
            (e(K::Unexpected, false), ErrorKind::Permanent),
        ];
        for (e, kind) in kinds {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }
}
