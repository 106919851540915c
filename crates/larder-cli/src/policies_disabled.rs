//! Stand-ins for `policies.rs` in a build without the `policy` feature: a configured eviction
//! policy is a warning (trims go in LRU order), so is an admission policy (everything is
//! stored), a configured normalizer is an error (the task is not cached: signing without it
//! could give false hits).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use larder_core::admission::AdmissionPolicy;
use larder_core::normalize::PathNormalizer;

use crate::config::Config;
use crate::progress::Ui;

/// Warns about a configured policy; none.
pub(crate) fn admission_policy(config: &Config, ui: &Ui) -> Option<Arc<dyn AdmissionPolicy>> {
    if let Some(path) = &config.admission_policy.value {
        ui.warn(format_args!(
            "admission policy {} ignored: this larder was built without the `policy` feature; storing every entry",
            path.display()
        ));
    }
    None
}

/// An error when a normalizer is configured.
pub(crate) fn normalizer(config: &Config, _cwd: &Path) -> Result<Option<Box<dyn PathNormalizer>>> {
    match &config.normalize_policy.value {
        Some(path) => bail!(
            "path normalizer {} needs the `policy` feature, which this larder was built without",
            path.display()
        ),
        None => Ok(None),
    }
}

/// Without the `policy` feature, a configured policy is a warning.
pub(crate) fn eviction_policy(
    config: &Config,
) -> Option<std::sync::Arc<dyn larder_core::eviction::EvictionPolicy>> {
    let path = config.eviction_policy.value.as_ref()?;
    tracing::warn!(
        "eviction policy {} ignored: this larder was built without the `policy` feature; trimming in LRU order",
        path.display()
    );
    None
}
