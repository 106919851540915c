//! What larder writes to stderr besides a command's own output: warnings, status lines and
//! progress bars.
//!
//! Progress bars appear only when stderr is a terminal (and not with `--quiet`): a build log
//! never fills with bar redraws. Transfers get a bar only past [`LARGE_TRANSFER`] bytes.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use larder_core::store::ProgressFn;

/// Transfers at least this large show a progress bar (on a terminal).
pub(crate) const LARGE_TRANSFER: u64 = 64 << 20;

/// How chatty larder is on stderr.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    verbose: u8,
    quiet: bool,
    terminal: bool,
}

impl Ui {
    /// From `-v` (repeatable) and `-q`.
    pub(crate) fn new(verbose: u8, quiet: bool) -> Self {
        Ui {
            verbose,
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Whether `-v` was given.
    pub(crate) fn verbose(&self) -> bool {
        self.verbose > 0 && !self.quiet
    }

    /// Whether `-q` was given.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    /// `larder: warning: ...` (not with `-q`).
    pub(crate) fn warn(&self, msg: impl fmt::Display) {
        if !self.quiet {
            eprintln!("larder: warning: {msg}");
        }
    }

    /// A status line, shown with `-v`.
    pub(crate) fn status(&self, msg: impl fmt::Display) {
        if self.verbose() {
            eprintln!("larder: {msg}");
        }
    }

    /// A message shown unless `-q`.
    pub(crate) fn note(&self, msg: impl fmt::Display) {
        if !self.quiet {
            eprintln!("larder: {msg}");
        }
    }

    /// A progress bar over `total` units, drawn on stderr only when it is a terminal.
    pub(crate) fn bar(&self, total: u64, message: &'static str, bytes: bool) -> ProgressBar {
        if self.quiet || !self.terminal {
            return ProgressBar::hidden();
        }
        let template = if bytes {
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
        } else {
            "{msg} [{bar:30}] {pos}/{len}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(message);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A [`ProgressFn`] feeding `bar`.
    pub(crate) fn progress_fn(bar: &ProgressBar) -> ProgressFn {
        let bar = bar.clone();
        Arc::new(move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
    }
}

/// Blob transfers of a task (restoring a hit, storing a run) show a byte bar when they are
/// large and stderr is a terminal.
impl larder_client::Progress for Ui {
    fn transfer(
        &self,
        total: u64,
        message: &'static str,
    ) -> Option<Arc<dyn larder_client::Transfer>> {
        if total < LARGE_TRANSFER || self.quiet || !self.terminal {
            return None;
        }
        Some(Arc::new(Bar(self.bar(total, message, true))))
    }
}

/// A byte bar following one transfer.
struct Bar(ProgressBar);

impl larder_client::Transfer for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
