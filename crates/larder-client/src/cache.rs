//! [`Cache`]: a store and the settings every step of the flow reads, and how a front-end shows
//! a long transfer ([`Progress`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use larder_core::admission::AdmissionPolicy;
use larder_core::entry::DEFAULT_INLINE_LIMIT;
use larder_core::layer::Progress as Counting;
use larder_core::{Placement, Store, TrimOptions};

/// The task cache over one store (a single store, or a stack of layers and tiers).
///
/// Built once per process or request loop with the settings the flow needs; every method
/// takes `&self`, so one `Cache` serves any number of look-ups and stores. `'a` is the
/// lifetime of the [`Progress`] it reports transfers to (`'static` without one).
#[derive(Debug, Clone)]
pub struct Cache<'a> {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) inline_limit: u64,
    pub(crate) placement: Placement,
    pub(crate) allow_external_symlinks: bool,
    pub(crate) admission: Option<Arc<dyn AdmissionPolicy>>,
    pub(crate) budget: TrimOptions,
    pub(crate) local_dir: Option<PathBuf>,
    progress: Option<&'a dyn Progress>,
}

/// How a front-end shows a long transfer (a progress bar on a terminal).
pub trait Progress: Send + Sync + fmt::Debug {
    /// A transfer of `total` blob bytes begins; `what` says which (`"restoring"`,
    /// `"storing"`). Return where to report its bytes, or `None` not to follow it (a small
    /// transfer: no wrapper is then put around the store).
    fn transfer(&self, total: u64, what: &'static str) -> Option<Arc<dyn Transfer>>;
}

/// One transfer being shown.
pub trait Transfer: Send + Sync {
    /// `bytes` more were transferred.
    fn advance(&self, bytes: u64);
    /// The transfer is over (done or failed).
    fn finish(&self);
}

impl Cache<'static> {
    /// The cache over `store`: outputs of at most [`DEFAULT_INLINE_LIMIT`] bytes inlined,
    /// blobs copied (reflinked where possible) on restore, symlinks leaving the root refused,
    /// every entry admitted, no trim budget, no progress shown.
    pub fn new(store: Arc<dyn Store>) -> Cache<'static> {
        Cache {
            store,
            inline_limit: DEFAULT_INLINE_LIMIT,
            placement: Placement::Copy,
            allow_external_symlinks: false,
            admission: None,
            budget: TrimOptions::default(),
            local_dir: None,
            progress: None,
        }
    }
}

impl Cache<'_> {
    /// Inline outputs and captured streams of at most `bytes` in the entry.
    pub fn with_inline_limit(mut self, bytes: u64) -> Self {
        self.inline_limit = bytes;
        self
    }

    /// Place restored blobs this way.
    pub fn with_placement(mut self, how: Placement) -> Self {
        self.placement = how;
        self
    }

    /// Restore (and store) symlinks whose target leaves the root. Off by default: a restore
    /// refuses an entry holding one as poisoned, and [`Cache::external_symlink`] says a task
    /// with one should not be stored.
    pub fn with_external_symlinks(mut self, allow: bool) -> Self {
        self.allow_external_symlinks = allow;
        self
    }

    /// Ask `policy` before each entry is stored (`None`: store every entry).
    pub fn with_admission(mut self, policy: Option<Arc<dyn AdmissionPolicy>>) -> Self {
        self.admission = policy;
        self
    }

    /// Set the admission policy (see [`Cache::with_admission`]) on a cache already in use:
    /// for a front-end that loads the policy only once it has something to store.
    pub fn set_admission(&mut self, policy: Option<Arc<dyn AdmissionPolicy>>) {
        self.admission = policy;
    }

    /// The budgets [`Cache::trim_if_over`] keeps; the free-space head room is measured on
    /// the disk holding `local_dir` (a store without a directory is never trimmed for space).
    pub fn with_budget(mut self, budget: TrimOptions, local_dir: Option<PathBuf>) -> Self {
        self.budget = budget;
        self.local_dir = local_dir;
        self
    }

    /// Show blob transfers through `progress`.
    pub fn with_progress<'b>(self, progress: &'b dyn Progress) -> Cache<'b> {
        Cache {
            store: self.store,
            inline_limit: self.inline_limit,
            placement: self.placement,
            allow_external_symlinks: self.allow_external_symlinks,
            admission: self.admission,
            budget: self.budget,
            local_dir: self.local_dir,
            progress: Some(progress),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The largest output inlined in an entry.
    pub fn inline_limit(&self) -> u64 {
        self.inline_limit
    }

    /// The store for a transfer of `total` bytes: wrapped so that its bytes reach the
    /// [`Progress`] when that wants to follow it, the store itself otherwise.
    pub(crate) fn watch(&self, total: u64, what: &'static str) -> Watched<'_> {
        let shown = self.progress.and_then(|p| p.transfer(total, what));
        let counting = shown.as_ref().map(|shown| {
            let on_bytes = shown.clone();
            Counting::with_callback(self.store.clone(), Arc::new(move |n| on_bytes.advance(n)))
        });
        Watched {
            plain: self.store.as_ref(),
            counting,
            shown,
        }
    }
}

/// A store a transfer goes through ([`Cache::watch`]).
pub(crate) struct Watched<'c> {
    plain: &'c dyn Store,
    counting: Option<Counting<Arc<dyn Store>>>,
    shown: Option<Arc<dyn Transfer>>,
}

impl Watched<'_> {
    /// The store to transfer through.
    pub(crate) fn store(&self) -> &dyn Store {
        match &self.counting {
            Some(counting) => counting,
            None => self.plain,
        }
    }

    /// The transfer is over.
    pub(crate) fn finish(self) {
        if let Some(shown) = self.shown {
            shown.finish();
        }
    }
}
