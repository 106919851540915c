//! The checks (placeholder while the suite is written).
use super::Harness;
/// Run every check that applies to the store.
pub async fn run_all(_h: &dyn Harness) {}
