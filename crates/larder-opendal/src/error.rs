//! How OpenDAL failures become larder's classified errors.
//!
//! OpenDAL marks each error temporary or not (its `RetryLayer`, which this store uses, retries
//! only the temporary ones, and marks those that outlive their retries "persistent"); larder
//! classifies both as [`ErrorKind::Temporary`](larder_core::ErrorKind::Temporary). Rate limiting is temporary too. A bad
//! configuration is the user's fault ([`Error::InvalidInput`]); a refused credential is
//! permanent and says which options to check. Not found is reported as such, though the store
//! turns it into a miss wherever a miss is meant.

use larder_core::Error;
use opendal::ErrorKind as K;

pub(crate) const STORE: &str = "larder-opendal";

/// Turn an OpenDAL error met while doing `what` into a classified [`Error`].
pub(crate) fn od(what: &str, err: opendal::Error) -> Error {
    match err.kind() {
        K::NotFound => Error::NotFound {
            what: format!("{what}: {err}"),
        },
        K::ConfigInvalid => Error::invalid(format!("{what}: invalid OpenDAL configuration: {err}")),
        K::Unsupported => Error::Store {
            store: STORE.into(),
            message: format!("{what}: the service does not support this: {err}"),
            temporary: false,
            source: Some(Box::new(err)),
        },
        K::PermissionDenied => Error::Store {
            store: STORE.into(),
            message: format!(
                "{what}: permission denied (check the service's credentials: LARDER_OPENDAL_* options): {err}"
            ),
            temporary: false,
            source: Some(Box::new(err)),
        },
        kind => {
            // "Persistent" is OpenDAL's mark for a temporary error that outlived its retries
            // (a dead or hanging server): still worth trying again later, so temporary here.
            let temporary = err.is_temporary() || err.is_persistent() || kind == K::RateLimited;
            Error::Store {
                store: STORE.into(),
                message: format!("{what}: {err}"),
                temporary,
                source: Some(Box::new(err)),
            }
        }
    }
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
    use super::*;
    use larder_core::ErrorKind;

    #[test]
    fn kinds_are_classified() {
        let e = od("x", opendal::Error::new(K::NotFound, "gone"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = od("x", opendal::Error::new(K::ConfigInvalid, "bad"));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = od(
            "x",
            opendal::Error::new(K::Unexpected, "reset").set_temporary(),
        );
        assert_eq!(e.kind(), ErrorKind::Temporary);
        let e = od(
            "x",
            opendal::Error::new(K::Unexpected, "reset").set_persistent(),
        );
        assert_eq!(e.kind(), ErrorKind::Temporary);
        let e = od("x", opendal::Error::new(K::RateLimited, "slow down"));
        assert_eq!(e.kind(), ErrorKind::Temporary);
        let e = od("x", opendal::Error::new(K::PermissionDenied, "no"));
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert!(e.to_string().contains("credentials"), "{e}");
        let e = od("x", opendal::Error::new(K::Unexpected, "broken"));
        assert_eq!(e.kind(), ErrorKind::Permanent);
    }
}
