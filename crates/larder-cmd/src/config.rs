//! Building a [`CmdStore`]: the remote base, the command templates, limits, from a `cmd://` URL
//! and `LARDER_CMD_*` environment variables (the URL wins).

use std::path::PathBuf;
use std::time::Duration;

use larder_core::{Error, Result};

use crate::backend::CmdStore;
use crate::template::{SRC, TGT, Template};

/// Env var: upload template (`%{SRC}` local file, `%{TGT}` remote name).
pub const PUT_ENV: &str = "LARDER_CMD_PUT";
/// Env var: download template (`%{SRC}` remote name, `%{TGT}` local file).
pub const GET_ENV: &str = "LARDER_CMD_GET";
/// Env var: one copy template for both directions, as wafcache's `WAFCACHE_CMD`.
pub const COPY_ENV: &str = "LARDER_CMD_COPY";
/// Env var: existence check (`%{TGT}` remote name; exit 0 when it exists).
pub const EXISTS_ENV: &str = "LARDER_CMD_EXISTS";
/// Env var: removal (`%{TGT}` remote name).
pub const DELETE_ENV: &str = "LARDER_CMD_DELETE";
/// Env var: commands run at once (default 8).
pub const JOBS_ENV: &str = "LARDER_CMD_JOBS";
/// Env var: seconds one command may run (default 300).
pub const TIMEOUT_ENV: &str = "LARDER_CMD_TIMEOUT";

/// Builds a [`CmdStore`].
#[derive(Debug, Clone)]
pub struct CmdStoreBuilder {
    pub(crate) base: String,
    pub(crate) put: Option<Template>,
    pub(crate) get: Option<Template>,
    pub(crate) exists: Option<Template>,
    pub(crate) delete: Option<Template>,
    pub(crate) jobs: usize,
    pub(crate) timeout: Duration,
    pub(crate) miss_status: Option<Vec<i32>>,
    pub(crate) scratch: Option<PathBuf>,
    pub(crate) exit_on_signal: bool,
}

impl Default for CmdStoreBuilder {
    fn default() -> Self {
        Self::new("")
    }
}

fn bad(message: String) -> Error {
    Error::invalid(message)
}

impl CmdStoreBuilder {
    /// A builder for remote names under `base` (e.g. `gs://bucket/cache`, `/mnt/share/cache`;
    /// empty for bare names). Templates must be set before [`CmdStoreBuilder::build`].
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            put: None,
            get: None,
            exists: None,
            delete: None,
            jobs: 8,
            timeout: Duration::from_secs(300),
            miss_status: None,
            scratch: None,
            exit_on_signal: false,
        }
    }

    /// Parse `cmd://BASE?put=...&get=...` (see the crate docs), filling what the URL leaves out
    /// from `LARDER_CMD_*` environment variables.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the bad part.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("cmd://")
            .ok_or_else(|| bad(format!("{url:?} is not a cmd:// URL")))?;
        let (base, query) = match rest.split_once('?') {
            Some((b, q)) => (b, q),
            None => (rest, ""),
        };
        let mut b = CmdStoreBuilder::new(percent_decode(base));
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut put = env(PUT_ENV);
        let mut get = env(GET_ENV);
        let mut copy = env(COPY_ENV);
        let mut exists = env(EXISTS_ENV);
        let mut delete = env(DELETE_ENV);
        let mut jobs = env(JOBS_ENV);
        let mut timeout = env(TIMEOUT_ENV);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "put" => put = Some(v),
                "get" => get = Some(v),
                "copy" => copy = Some(v),
                "exists" => exists = Some(v),
                "delete" => delete = Some(v),
                "jobs" => jobs = Some(v),
                "timeout" => timeout = Some(v),
                "miss_status" => {
                    let codes: std::result::Result<Vec<i32>, _> =
                        v.split(',').map(|c| c.trim().parse::<i32>()).collect();
                    b.miss_status = Some(codes.map_err(|_| {
                        bad(format!(
                            "{url:?}: miss_status={v} is not a list of exit codes"
                        ))
                    })?);
                }
                other => {
                    return Err(bad(format!(
                        "{url:?}: unknown parameter `{other}` (known: put, get, copy, exists, delete, jobs, timeout, miss_status)"
                    )));
                }
            }
        }
        let put = put.or_else(|| copy.clone());
        let get = get.or(copy.take());
        let (Some(put), Some(get)) = (put, get) else {
            return Err(bad(format!(
                "{url:?}: no upload and download commands: give put= and get= (or copy=) in the URL, or set {PUT_ENV} and {GET_ENV} (or {COPY_ENV})"
            )));
        };
        b = b.with_put(&put)?.with_get(&get)?;
        if let Some(e) = exists {
            b = b.with_exists(&e)?;
        }
        if let Some(d) = delete {
            b = b.with_delete(&d)?;
        }
        if let Some(j) = jobs {
            let n: usize = j
                .trim()
                .parse()
                .map_err(|_| bad(format!("jobs={j} is not a number")))?;
            b = b.with_jobs(n);
        }
        if let Some(t) = timeout {
            let secs: f64 = t
                .trim()
                .parse()
                .map_err(|_| bad(format!("timeout={t} is not a number of seconds")))?;
            if !(secs > 0.0 && secs.is_finite()) {
                return Err(bad(format!("timeout={t} must be positive")));
            }
            b = b.with_timeout(Duration::from_secs_f64(secs));
        }
        Ok(b)
    }

    /// Upload template: `%{SRC}` is a local file, `%{TGT}` the remote name.
    ///
    /// # Errors
    /// Bad quoting, or a placeholder missing.
    pub fn with_put(mut self, template: &str) -> Result<Self> {
        self.put = Some(Template::parse(template, &[SRC, TGT])?);
        Ok(self)
    }

    /// Download template: `%{SRC}` is the remote name, `%{TGT}` a local file. A command that
    /// fails is a miss (see [`CmdStoreBuilder::with_miss_status`]).
    ///
    /// # Errors
    /// Bad quoting, or a placeholder missing.
    pub fn with_get(mut self, template: &str) -> Result<Self> {
        self.get = Some(Template::parse(template, &[SRC, TGT])?);
        Ok(self)
    }

    /// Existence check: `%{TGT}` (or `%{SRC}`) is the remote name; exit 0 means it exists.
    /// Without one, find-missing trusts only what this process has seen.
    ///
    /// # Errors
    /// Bad quoting.
    pub fn with_exists(mut self, template: &str) -> Result<Self> {
        self.exists = Some(Template::parse(template, &[])?);
        Ok(self)
    }

    /// Removal: `%{TGT}` (or `%{SRC}`) is the remote name. Enables `delete`, and removes blobs
    /// that fail verification.
    ///
    /// # Errors
    /// Bad quoting.
    pub fn with_delete(mut self, template: &str) -> Result<Self> {
        self.delete = Some(Template::parse(template, &[])?);
        Ok(self)
    }

    /// Commands run at once, across all operations of this store (default 8).
    pub fn with_jobs(mut self, n: usize) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// Time one command may take before its process group is killed (default 300 s).
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Exit codes of the download command that mean "not there". By default any failure is a
    /// miss, as in wafcache; with a list, other failures are errors that name the command.
    pub fn with_miss_status(mut self, codes: Vec<i32>) -> Self {
        self.miss_status = Some(codes);
        self
    }

    /// Directory for the local files commands read and write (default: the system temp dir).
    pub fn with_scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch = Some(dir.into());
        self
    }

    /// While a command runs, watch SIGINT and SIGTERM: on either, kill every running command's
    /// process group and end the process as the signal would have (default off; for binaries
    /// like `larder`, whose other signal handlers would otherwise swallow the signal and leave
    /// the command running). A library that handles these signals itself leaves this off and
    /// calls [`kill_all`](crate::kill_all) from its handler.
    pub fn with_exit_on_signal(mut self, on: bool) -> Self {
        self.exit_on_signal = on;
        self
    }

    /// Build the store.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] without upload and download templates; I/O errors creating the
    /// scratch directory.
    pub fn build(self) -> Result<CmdStore> {
        if self.put.is_none() || self.get.is_none() {
            return Err(bad(
                "a command store needs an upload (put) and a download (get) template".into(),
            ));
        }
        CmdStore::from_builder(self)
    }
}

/// Decode `%XX` escapes and `+` (a space, as in form-encoded queries).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let b = CmdStoreBuilder::from_url(
            "cmd:///srv/cache?put=cp+%25%7BSRC%7D+%25%7BTGT%7D&get=cp %{SRC} %{TGT}&jobs=3&timeout=2.5&miss_status=1",
        )
        .unwrap();
        assert_eq!(b.base, "/srv/cache");
        assert_eq!(b.put.as_ref().map(|t| t.source()), Some("cp %{SRC} %{TGT}"));
        assert_eq!(b.jobs, 3);
        assert_eq!(b.timeout, Duration::from_millis(2500));
        assert_eq!(b.miss_status, Some(vec![1]));
        let b = CmdStoreBuilder::from_url("cmd://gs://bkt/c?copy=gsutil cp %{SRC} %{TGT}").unwrap();
        assert_eq!(b.base, "gs://bkt/c");
        assert!(b.get.is_some() && b.put.is_some());
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            (
                "cmd://x?put=cp %{SRC}&get=cp %{SRC} %{TGT}",
                "does not use %{TGT}",
            ),
            (
                "cmd://x?put=cp 'a %{SRC} %{TGT}&get=x %{SRC} %{TGT}",
                "unterminated",
            ),
            ("cmd://x?bogus=1&copy=cp %{SRC} %{TGT}", "unknown parameter"),
            ("cmd://x?copy=cp %{SRC} %{TGT}&timeout=0", "positive"),
        ] {
            let err = CmdStoreBuilder::from_url(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
