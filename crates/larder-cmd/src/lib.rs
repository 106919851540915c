//! Larder's command store: a [`Store`](larder_core::Store) that moves files with external
//! commands, as waf's wafcache did with `WAFCACHE_CMD="gsutil cp %{SRC} %{TGT}"`. Any tool that
//! copies files to and from somewhere (`gsutil`, `aws s3`, `mc`, `rclone`, `scp`, `cp` onto a
//! shared mount) becomes a cache.
//!
//! # Configuration
//! `cmd://BASE?put=TEMPLATE&get=TEMPLATE[&exists=..][&delete=..][&jobs=N][&timeout=SECS][&miss_status=N,..]`
//!
//! - `BASE` is the remote location objects are named under: `cmd://gs://bucket/cache` names
//!   blobs `gs://bucket/cache/blobs/<blake3 hex>` and entries
//!   `gs://bucket/cache/entries/<storage name>`.
//! - `put` uploads: `%{SRC}` is a local file, `%{TGT}` the remote name.
//! - `get` downloads: `%{SRC}` is the remote name, `%{TGT}` a local file. A failing download is a
//!   miss (wafcache's rule), or with `miss_status=1,..` only those exit codes are.
//! - `copy` sets both at once, when one command copies both ways (`gsutil cp %{SRC} %{TGT}`).
//! - `exists` (optional): exit 0 when `%{TGT}` exists. Used by find-missing and create-only
//!   writes; without it, find-missing reports what this process has not seen as missing, and
//!   the blob is re-uploaded (safe: names are content digests).
//! - `delete` (optional): removes `%{TGT}`. Enables `delete`, and removes corrupt blobs.
//! - `jobs`: commands running at once (default 8); `timeout`: seconds one command may run
//!   before it is killed (default 300).
//!
//! Query values are percent-decoded (`+` is a space). Every parameter can come from the
//! environment instead: `LARDER_CMD_PUT`, `LARDER_CMD_GET`, `LARDER_CMD_COPY`,
//! `LARDER_CMD_EXISTS`, `LARDER_CMD_DELETE`, `LARDER_CMD_JOBS`, `LARDER_CMD_TIMEOUT` (the URL
//! wins), so `LARDER_STORE=cmd://gs://bucket/cache` plus `LARDER_CMD_COPY='gsutil cp %{SRC}
//! %{TGT}'` works like wafcache.
//!
//! # Commands
//! - Templates are split into words like a POSIX shell would (quotes and backslashes; no
//!   `$VAR`, globs, pipes or redirections), then the placeholders are replaced inside each word:
//!   a path with spaces stays one argument. Commands never run through a shell; write
//!   `sh -c '...'` yourself if you want one.
//! - A failure reports the command line, its exit status and the tail of its stderr/stdout.
//! - Each command runs in its own process group. On time-out, or when the operation is
//!   cancelled, the whole group is killed. The direct child also dies with larder
//!   (`PR_SET_PDEATHSIG`). With [`CmdStoreBuilder::with_exit_on_signal`] (the `larder` binary
//!   sets it), SIGINT or SIGTERM while a command runs kills every running command's group and
//!   then ends the process as the signal would have; a program with its own handlers calls
//!   [`kill_all`] from them instead.
//!
//! # Guarantees and limits
//! - Uploads are verified locally before the command runs; downloads are verified (BLAKE3)
//!   before anything is returned. A corrupt blob is a miss, and is removed when a delete command
//!   is configured.
//! - Uploads should publish atomically, as object-store tools do (`gsutil cp`, `aws s3 cp`). A
//!   plain `cp` onto a shared directory does not: a reader racing it may download a partial file
//!   (it fails verification and reads as a miss), and two `cp`s racing onto one name can fail.
//!   On a shared mount, copy then rename:
//!   `put=sh -c 'cp "$0" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"' %{SRC} %{TGT}`.
//! - Create-only entry writes check, then write.
//! - No list, stats or trim: commands give no listing. Capability: `delete` only with a delete
//!   command.
//!
//! ```no_run
//! # fn example() -> larder_core::Result<()> {
//! let store = larder_cmd::CmdStore::from_url(
//!     "cmd://gs://bucket/cache?copy=gsutil+-q+cp+%{SRC}+%{TGT}&exists=gsutil+-q+stat+%{TGT}",
//! )?;
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod config;
mod runner;
pub mod template;

/// The store's name in errors.
pub(crate) const STORE: &str = "larder-cmd";

pub use backend::CmdStore;
pub use config::{
    COPY_ENV, CmdStoreBuilder, DELETE_ENV, EXISTS_ENV, GET_ENV, JOBS_ENV, PUT_ENV, TIMEOUT_ENV,
};
pub use runner::kill_all;
