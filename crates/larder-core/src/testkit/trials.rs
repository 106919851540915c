//! The suite as separate trials: one per check and store, named `{store}::{check}`, filterable
//! and listed like ordinary tests (libtest-mimic), in a test target with `harness = false`.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

use super::Harness;
use super::checks::{CHECKS, applies};

/// Whether the tests run under CI (env `CI` set and not empty, `0` or `false`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Why a store under test could not be started (its server is not installed, say). Under CI
/// (`CI` set, not `0` or `false`) every trial of that store fails with the reason; elsewhere they are ignored and the
/// reason is printed once.
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

impl<E: std::fmt::Display> From<E> for Unavailable {
    fn from(e: E) -> Self {
        Unavailable(e.to_string())
    }
}

/// The trials of one test target: the conformance checks of each store added with
/// [`Suites::store`], and any other async tests added with [`Suites::test`].
///
/// Trials run one at a time unless `--test-threads` says otherwise: the suite's memory check
/// reads the process's resident size, and stores under test share their servers.
pub struct Suites {
    args: Arguments,
    runtime: Arc<tokio::runtime::Runtime>,
    trials: Vec<Trial>,
}

impl std::fmt::Debug for Suites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suites")
            .field("trials", &self.trials.len())
            .finish()
    }
}

impl Suites {
    /// Trials configured by the test binary's command line (as `cargo test -- ARGS` passes it).
    pub fn from_args() -> Suites {
        let mut args = Arguments::from_args();
        if args.test_threads.is_none() {
            args.test_threads = Some(1);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("testkit: cannot start a tokio runtime: {e}"));
        Suites {
            args,
            runtime: Arc::new(runtime),
            trials: Vec::new(),
        }
    }

    /// Whether any trial named `{prefix}...` would run under the command line's filters.
    fn wanted(&self, prefix: &str) -> bool {
        if self.args.list {
            return false;
        }
        let names = CHECKS
            .iter()
            .map(|(check, _, _)| format!("{prefix}{check}"));
        let mut names = names.chain(std::iter::once(prefix.to_owned()));
        names.any(|name| {
            let skipped = self.args.skip.iter().any(|s| {
                if self.args.exact {
                    name == *s
                } else {
                    name.contains(s.as_str())
                }
            });
            let filtered = match &self.args.filter {
                None => true,
                Some(f) if self.args.exact => name == *f,
                Some(f) => name.contains(f.as_str()),
            };
            filtered && !skipped
        })
    }

    /// Add the conformance checks for the store `start` opens, as trials `{name}::{check}`.
    ///
    /// `start` runs once, on this runtime, when any of those trials is going to run (not for
    /// `--list`, nor when the filters leave none of them). A check the store's capabilities rule
    /// out is listed as ignored.
    pub fn store<H, F, Fut>(mut self, name: &str, start: F) -> Suites
    where
        H: Harness + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<H, Unavailable>>,
    {
        let prefix = format!("{name}::");
        let harness: Option<Result<Arc<dyn Harness>, Unavailable>> = if self.wanted(&prefix) {
            let started = self.runtime.block_on(start());
            Some(started.map(|h| Arc::new(h) as Arc<dyn Harness>))
        } else {
            None
        };
        if let Some(Err(Unavailable(reason))) = &harness
            && !in_ci()
        {
            eprintln!("testkit: {name}: not run here: {reason}");
        }
        for (check, gate, run) in CHECKS {
            let trial_name = format!("{prefix}{check}");
            let trial = match &harness {
                None => Trial::test(trial_name, || Ok(())),
                Some(Ok(h)) => {
                    let applies = applies(*gate, &**h);
                    let (h, rt, run) = (Arc::clone(h), Arc::clone(&self.runtime), *run);
                    Trial::test(trial_name, move || {
                        rt.block_on(run(&*h));
                        Ok(())
                    })
                    .with_ignored_flag(!applies)
                }
                Some(Err(Unavailable(reason))) => {
                    let reason = format!("{name} could not be started: {reason}");
                    Trial::test(trial_name, move || Err(Failed::from(reason)))
                        .with_ignored_flag(!in_ci())
                }
            };
            self.trials.push(trial);
        }
        self
    }

    /// Add one more async test, run on the same runtime; it fails by panicking.
    pub fn test<F, Fut>(mut self, name: &str, test: F) -> Suites
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let rt = Arc::clone(&self.runtime);
        self.trials.push(Trial::test(name, move || {
            rt.block_on(test());
            Ok(())
        }));
        self
    }

    /// Run the trials the command line selects and exit as libtest would.
    pub fn run(self) -> ExitCode {
        let conclusion = libtest_mimic::run(&self.args, self.trials);
        // The runtime holds the stores' servers; dropping it in a blocking context would panic
        // if a test left a task blocked, so it is shut down without waiting.
        if let Ok(rt) = Arc::try_unwrap(self.runtime) {
            rt.shutdown_background();
        }
        conclusion.exit_code()
    }
}
