//! The confined-restore tests (`confined_restore.rs`) again, as on a system without `openat2`,
//! without a mounted `/proc` and without unnamed files: directories walked one `O_NOFOLLOW`
//! component at a time, blobs streamed into files created beneath them, small outputs
//! written under temporary names.

#[path = "confined_restore.rs"]
mod cases;

/// Switch every restore of this process to the fallbacks (idempotent).
pub(crate) fn before() {
    larder_core::artifacts::restore_without_openat2_or_proc();
    larder_core::unnamed::disable();
}
