//! Files on disk to entries and back: what `larder exec`, `get`/`put` and the worker share.
//!
//! Storing ([`collect_outputs`] then [`store_outputs`]) hashes each output, uploads only the
//! blobs the store lacks, and writes the entry last. Restoring ([`restore_outputs`]) places every
//! file into a temporary name beside its destination and renames them into place only once all
//! of them are verified, so a missing or corrupt blob leaves the work tree as it was. An entry
//! is untrusted input: a restore writes only the outputs the caller declared, each beneath the
//! build root through directory descriptors that never follow a symlink, and refuses an entry
//! naming anything else as poisoned ([`Restore::Poisoned`], [`discard_poisoned`]). Small
//! (inline) outputs are staged as unnamed files (`O_TMPFILE`) where the file system and the
//! kernel allow it, and linked into place: one directory change per file instead of two, and
//! nothing left behind by a crash.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use crate::beneath::{self, Found, Tree};
use crate::digest::Digest;
use crate::entry::{Content, Entry, Output, OutputKind};
use crate::error::{Error, ErrorKind, IoResultExt, Result};
use crate::key::{Key, validate_rel_path};
use crate::store::{BlobRead, ByteStream, CHUNK_SIZE, Placement, Store};
use crate::unnamed::{self, Linked};

/// A file output whose bytes go to the store as a blob (too large to inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBlob {
    /// Where the bytes are now.
    pub path: PathBuf,
    /// Their digest.
    pub digest: Digest,
    /// Their length.
    pub size: u64,
}

/// Outputs read from disk, ready to store.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// The entry's output list.
    pub outputs: Vec<Output>,
    /// Blobs to upload before the entry.
    pub blobs: Vec<PendingBlob>,
}

/// Read the outputs named by `names` (relative to `root`; directories recursively) into entry
/// outputs, inlining files of at most `inline_limit` bytes.
///
/// # Errors
/// [`Error::UnsafePath`] for a bad name, [`Error::NotFound`] for an output that does not exist,
/// [`Error::Io`] for unreadable files.
pub fn collect_outputs(root: &Path, names: &[String], inline_limit: u64) -> Result<Collected> {
    let mut out = Collected::default();
    for name in names {
        validate_rel_path(name)?;
        collect_one(root, name, inline_limit, &mut out)?;
    }
    Ok(out)
}

fn collect_one(root: &Path, name: &str, inline_limit: u64, out: &mut Collected) -> Result<()> {
    let path = root.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                what: format!("output {name} (at {})", path.display()),
            });
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(&path).ctx(|| format!("reading link {}", path.display()))?;
        let target = target.to_str().ok_or_else(|| {
            Error::invalid(format!("link {} has a non-UTF-8 target", path.display()))
        })?;
        out.outputs.push(Output {
            path: name.to_owned(),
            kind: OutputKind::Symlink {
                target: target.to_owned(),
            },
        });
    } else if ft.is_dir() {
        out.outputs.push(Output {
            path: name.to_owned(),
            kind: OutputKind::Dir,
        });
        let mut children: Vec<String> = Vec::new();
        for child in fs::read_dir(&path).ctx(|| format!("listing {}", path.display()))? {
            let child = child.ctx(|| format!("listing {}", path.display()))?;
            let child_name = child.file_name();
            let child_name = child_name.to_str().ok_or_else(|| {
                Error::invalid(format!(
                    "{} holds a file with a non-UTF-8 name",
                    path.display()
                ))
            })?;
            children.push(format!("{name}/{child_name}"));
        }
        children.sort();
        for child in children {
            validate_rel_path(&child)?;
            collect_one(root, &child, inline_limit, out)?;
        }
    } else if ft.is_file() {
        let executable = meta.mode() & 0o111 != 0;
        let content = if meta.len() <= inline_limit {
            let bytes =
                read_small(&path, meta.len()).ctx(|| format!("reading {}", path.display()))?;
            Content::inline(bytes)
        } else {
            let (digest, size) = Digest::of_file(&path)?;
            out.blobs.push(PendingBlob {
                path: path.clone(),
                digest,
                size,
            });
            Content::blob(digest, size)
        };
        out.outputs.push(Output {
            path: name.to_owned(),
            kind: OutputKind::File {
                content,
                executable,
            },
        });
    } else {
        return Err(Error::invalid(format!(
            "output {} is not a file, directory or symlink",
            path.display()
        )));
    }
    Ok(())
}

/// Read a small file whose length was just seen as `len`, to its end.
///
/// `read_to_end` on a `File` asks for the size and position first (`statx`, `lseek`): two
/// syscalls more per small output than reading into a buffer sized from the metadata we have.
fn read_small(path: &Path, len: u64) -> std::io::Result<Vec<u8>> {
    let mut file = fs::File::open(path)?;
    // One byte more than expected, so a file that grew is read whole and EOF seen at once.
    let mut bytes = vec![0u8; len as usize + 1];
    let mut filled = 0;
    loop {
        if filled == bytes.len() {
            bytes.resize(bytes.len() * 2, 0);
        }
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// Turn captured bytes (stdout, stderr) into content: inline when small, else a blob uploaded now.
///
/// # Errors
/// Store errors from the upload.
pub async fn store_bytes(store: &dyn Store, bytes: Vec<u8>, inline_limit: u64) -> Result<Content> {
    if bytes.len() as u64 <= inline_limit {
        return Ok(Content::inline(bytes));
    }
    let size = bytes.len() as u64;
    let bytes = Bytes::from(bytes);
    let digest = Digest::of(&bytes);
    if !store.find_missing(&[digest]).await?.is_empty() {
        store
            .put_blob(
                &digest,
                size,
                Box::pin(futures::stream::once(async { Ok(bytes) })),
            )
            .await?;
    }
    Ok(Content::blob(digest, size))
}

/// Upload the blobs the store lacks, then write `entry` under `key` (the entry last).
///
/// # Errors
/// Store errors; [`Error::InvalidInput`] when a file changed between hashing and upload.
pub async fn store_outputs(
    store: &dyn Store,
    key: &Key,
    entry: &Entry,
    blobs: &[PendingBlob],
) -> Result<()> {
    store_outputs_concurrently(store, key, entry, blobs, 1).await
}

/// [`store_outputs`] with up to `transfers` blob uploads at a time (for remote stores, where
/// one transfer rarely fills the link). The entry is still written last, only once every blob
/// is stored; the first failure stops the others.
///
/// # Errors
/// As [`store_outputs`].
pub async fn store_outputs_concurrently(
    store: &dyn Store,
    key: &Key,
    entry: &Entry,
    blobs: &[PendingBlob],
    transfers: usize,
) -> Result<()> {
    let digests: Vec<Digest> = blobs.iter().map(|b| b.digest).collect();
    let missing: std::collections::HashSet<Digest> =
        store.find_missing(&digests).await?.into_iter().collect();
    let mut done = std::collections::HashSet::new();
    let todo: Vec<&PendingBlob> = blobs
        .iter()
        .filter(|b| missing.contains(&b.digest) && done.insert(b.digest))
        .collect();
    // No closures held across an await (an adapter like `buffer_unordered` over a closure
    // makes callers' spawned futures fail the `Send` check: "implementation of `FnOnce` is not
    // general enough").
    let mut pending = todo.into_iter();
    let mut running = futures::stream::FuturesUnordered::new();
    loop {
        while running.len() < transfers.max(1) {
            match pending.next() {
                Some(blob) => running.push(upload_blob(store, blob)),
                None => break,
            }
        }
        match running.next().await {
            Some(done) => done?,
            None => break,
        }
    }
    store.put_entry(key, entry).await?;
    Ok(())
}

fn upload_blob<'a>(
    store: &'a dyn Store,
    blob: &'a PendingBlob,
) -> futures::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let stream = file_stream(&blob.path).await?;
        store.put_blob(&blob.digest, blob.size, stream).await?;
        Ok(())
    })
}

use crate::store::StoreExt as _;

/// Stream a file in [`CHUNK_SIZE`] chunks.
///
/// # Errors
/// [`Error::Io`] if it cannot be opened; read errors arrive in the stream.
pub async fn file_stream(path: &Path) -> Result<ByteStream> {
    let file = tokio::fs::File::open(path)
        .await
        .ctx(|| format!("opening {}", path.display()))?;
    let shown = path.display().to_string();
    let stream = futures::stream::try_unfold((file, shown), |(mut file, shown)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
        while buf.len() < CHUNK_SIZE {
            let n = file
                .read_buf(&mut buf)
                .await
                .ctx(|| format!("reading {shown}"))?;
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() {
            Ok(None)
        } else {
            Ok(Some((buf.freeze(), (file, shown))))
        }
    });
    Ok(Box::pin(stream))
}

/// [`Store::place_blob`] for stores without local files: the blob's verified stream written to
/// `dest`; `Ok(false)` when the store lacks the blob.
///
/// # Errors
/// As [`Store::get_blob`] and [`stream_to_file`].
pub async fn place_by_streaming(
    store: &(impl Store + ?Sized),
    digest: &Digest,
    dest: &Path,
) -> Result<bool> {
    let Some(read) = store.get_blob(digest).await? else {
        return Ok(false);
    };
    stream_to_file(read, dest).await?;
    Ok(true)
}

/// Write a blob stream to `dest` (created or truncated). For stores without local files, this is
/// how [`Store::place_blob`] is implemented.
///
/// # Errors
/// Errors from the stream (including [`Error::Corrupt`]) or from writing.
pub async fn stream_to_file(read: BlobRead, dest: &Path) -> Result<u64> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(dest)
        .await
        .ctx(|| format!("creating {}", dest.display()))?;
    let mut stream = read.stream;
    let mut written = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        file.write_all(&chunk)
            .await
            .ctx(|| format!("writing {}", dest.display()))?;
        written += chunk.len() as u64;
    }
    file.flush()
        .await
        .ctx(|| format!("writing {}", dest.display()))?;
    if written != read.size {
        return Err(Error::corrupt(
            format!("blob written to {}", dest.display()),
            format!("{written} bytes, expected {}", read.size),
        ));
    }
    Ok(written)
}

/// Which outputs a restore may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared<'a> {
    /// Whatever the entry lists: for a caller who asked for a whole entry by its key (`larder
    /// get KEY`), where the entry's own list is the user's explicit choice. Still confined
    /// beneath the root, never through a symlink.
    Entry,
    /// These names (relative to the root, as validated by
    /// [`validate_rel_path`](crate::key::validate_rel_path)) and what lies below them: the
    /// outputs a task declared, or the files a request asked for. An entry listing anything
    /// else is [poisoned](Restore::Poisoned).
    Only(&'a [String]),
}

/// How [`restore_outputs`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreOptions<'a> {
    /// How blobs are placed.
    pub placement: Placement,
    /// What the restore may write.
    pub declared: Declared<'a>,
    /// Restore symlinks whose target leaves the root (an absolute target, or `..` above the
    /// root or after a name). Off by default: such a link makes the build's later writes
    /// through it land outside the tree.
    pub allow_external_symlinks: bool,
}

impl<'a> RestoreOptions<'a> {
    /// Restore only `names` (and what lies below them), copying blobs, symlinks kept inside.
    pub fn declared(names: &'a [String]) -> Self {
        RestoreOptions {
            placement: Placement::Copy,
            declared: Declared::Only(names),
            allow_external_symlinks: false,
        }
    }

    /// Restore whatever the entry lists (see [`Declared::Entry`]), copying blobs, symlinks
    /// kept inside.
    pub fn whole_entry() -> Self {
        RestoreOptions {
            placement: Placement::Copy,
            declared: Declared::Entry,
            allow_external_symlinks: false,
        }
    }

    /// Place blobs this way.
    pub fn placement(mut self, how: Placement) -> Self {
        self.placement = how;
        self
    }

    /// Allow (or refuse) symlinks whose target leaves the root.
    pub fn allow_external_symlinks(mut self, allow: bool) -> Self {
        self.allow_external_symlinks = allow;
        self
    }
}

/// What [`restore_outputs`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Every output is in place.
    Restored,
    /// A blob was missing or corrupt: nothing was changed (a miss).
    Missing,
    /// The entry names something this restore may not write: an output outside the declared
    /// ones, or a symlink whose target leaves the root. Nothing was written (a miss); callers
    /// discard the entry with [`discard_poisoned`].
    Poisoned {
        /// The first offending output.
        path: String,
        /// What is wrong with it, as the end of a sentence naming it.
        reason: &'static str,
    },
}

/// Place the outputs of `entry` under `root`, confined to what `opts` declares.
/// All-or-nothing: files are placed into temporary names first and renamed into place only
/// when every blob has been fetched and verified.
///
/// Every path is checked before anything is written: an entry naming an undeclared output or
/// (unless allowed) a symlink leaving the root is [`Restore::Poisoned`]. Every directory is then
/// opened beneath `root` without following symlinks (`openat2` with `RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS`, or `O_NOFOLLOW` per component), missing ones
/// created, and each file created, linked, renamed or removed by its one name relative to its
/// directory's descriptor, so neither a symlink that was there nor one swapped in meanwhile
/// sends a write outside `root`. What stands where an output goes is replaced (a directory with
/// what is in it): every output lies within a declared one. Inline bytes are written as they
/// are: [`Entry::decode`] verified them against their digests when the entry was read, and
/// hashing them again here cost a small restore about 5% of its CPU time.
///
/// # Errors
/// [`Error::UnsafePath`] for entries naming unsafe paths (never written) and for outputs whose
/// parent directory is a symlink on disk, I/O errors writing under `root`, and store errors
/// other than missing or corrupt blobs.
pub async fn restore_outputs(
    store: &dyn Store,
    entry: &Entry,
    root: &Path,
    opts: &RestoreOptions<'_>,
) -> Result<Restore> {
    entry.validate_shape()?;
    if let Some(poisoned) = poisoned(entry, opts) {
        return Ok(poisoned);
    }
    let mut tree = Tree::open(root)?;
    let mut staged = Staged::default();
    let result = stage_all(store, entry, &mut tree, opts.placement, &mut staged).await;
    if !matches!(result, Ok(Restore::Restored)) {
        for f in &staged.files {
            let _ = beneath::unlink_at(tree.fd(f.dir), &f.tmp, 0);
        }
        drop(staged.unnamed);
        // Directories this restore created go too: a miss changes nothing.
        tree.remove_created();
        return result;
    }
    let Staged { files, unnamed } = staged;
    if let Err(e) = link_all(&tree, unnamed) {
        for f in &files {
            let _ = beneath::unlink_at(tree.fd(f.dir), &f.tmp, 0);
        }
        return Err(e);
    }
    for f in &files {
        move_into_place(&tree, f)?;
    }
    for o in &entry.outputs {
        if let OutputKind::Symlink { target } = &o.kind {
            place_symlink(&mut tree, &o.path, target)?;
        }
    }
    Ok(Restore::Restored)
}

/// Restore as on a system without `openat2` and without a mounted `/proc`, for the rest of the
/// process: directories are opened one `O_NOFOLLOW` component at a time, and blobs are
/// streamed into files created beneath them instead of placed by the store. For tests.
#[doc(hidden)]
pub fn restore_without_openat2_or_proc() {
    beneath::use_fallbacks();
}

/// Remove a [poisoned](Restore::Poisoned) entry from the store where the store allows it,
/// with one warning naming the key and the offending output. Returns whether it was removed.
pub async fn discard_poisoned(store: &dyn Store, key: &Key, path: &str, reason: &str) -> bool {
    match store.delete(key).await {
        Ok(removed) => {
            tracing::warn!(
                "entry {key} is poisoned: its output {path:?} {reason}; treated as a miss{}",
                if removed { " and removed" } else { "" }
            );
            removed
        }
        Err(e) => {
            tracing::warn!(
                "entry {key} is poisoned: its output {path:?} {reason}; treated as a miss (not removed: {e})"
            );
            false
        }
    }
}

/// The first reason `entry` may not be restored with `opts`, if any.
fn poisoned(entry: &Entry, opts: &RestoreOptions<'_>) -> Option<Restore> {
    if let Declared::Only(names) = opts.declared {
        // A set only pays for itself with many names (a worker asking for hundreds of files).
        let set: Option<std::collections::HashSet<&str>> =
            (names.len() > 16).then(|| names.iter().map(String::as_str).collect());
        for o in &entry.outputs {
            let declared = match &set {
                Some(set) => self_and_parents(&o.path).any(|p| set.contains(p)),
                None => names.iter().any(|d| within(&o.path, d)),
            };
            if !declared {
                return Some(Restore::Poisoned {
                    path: o.path.clone(),
                    reason: "is not an output the task declared",
                });
            }
        }
    }
    if !opts.allow_external_symlinks
        && let Some(o) = external_symlink(entry)
    {
        return Some(Restore::Poisoned {
            path: o.path.clone(),
            reason: "is a symlink whose target leaves the build root",
        });
    }
    None
}

/// The first symlink output of `entry` whose target leaves the root (see
/// [`RestoreOptions::allow_external_symlinks`]): a restore refuses such an entry unless allowed,
/// so a writer that knows its readers refuse it can skip storing it.
pub fn external_symlink(entry: &Entry) -> Option<&Output> {
    entry.outputs.iter().find(|o| match &o.kind {
        OutputKind::Symlink { target } => !target_stays_inside(&o.path, target),
        _ => false,
    })
}

/// Whether `path` is `dir` or lies below it.
fn within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `a/b/c`, `a/b`, `a`.
fn self_and_parents(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| p.rfind('/').map(|i| &p[..i]))
}

/// Whether symlink `link` (a relative path under the root) pointing at `target` resolves,
/// lexically from the link's directory, to the root or below it.
///
/// `..` is only accepted before any name: `a/../..` would climb from wherever `a` leads (itself
/// perhaps a symlink), which a lexical reading cannot know, so it is refused.
fn target_stays_inside(link: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    // The link's directory is this many levels below the root.
    let mut depth = link.matches('/').count();
    let mut named = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if named || depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            _ => named = true,
        }
    }
    true
}

/// A file written under a temporary name in its directory, waiting to be renamed into place.
struct NamedTmp<'a> {
    /// Its directory, as numbered by the [`Tree`].
    dir: usize,
    tmp: CString,
    name: CString,
    /// The output's path, for messages.
    path: &'a str,
}

/// An unnamed file waiting to be linked into place, with its bytes and executable bit for the
/// named fallback.
struct UnnamedTmp<'a> {
    file: fs::File,
    dir: usize,
    name: CString,
    path: &'a str,
    bytes: &'a [u8],
    executable: bool,
}

/// What a restore has staged so far.
#[derive(Default)]
struct Staged<'a> {
    files: Vec<NamedTmp<'a>>,
    unnamed: Vec<UnnamedTmp<'a>>,
}

/// At most this many small outputs of one restore are held as open unnamed files; the rest
/// get named temporary files, so a restore of thousands of outputs stays within the
/// descriptor limit.
const MAX_UNNAMED: usize = 64;

/// Flags of a named temporary file: a new file, never through a symlink.
const TMP_FLAGS: libc::c_int =
    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;

/// `rel`'s last component as a C string.
fn leaf(tree: &Tree, rel: &str) -> Result<CString> {
    beneath::cstr(beneath::split(rel).1)
        .map_err(|e| Error::io(format!("restoring {}", tree.show(rel)), e))
}

async fn stage_all<'a>(
    store: &dyn Store,
    entry: &'a Entry,
    tree: &mut Tree,
    how: Placement,
    staged: &mut Staged<'a>,
) -> Result<Restore> {
    for o in &entry.outputs {
        let path = o.path.as_str();
        let (parent, name) = beneath::split(path);
        let dir = tree.dir(parent)?;
        let c_name = leaf(tree, path)?;
        match &o.kind {
            OutputKind::Dir => {
                // A file or symlink standing where a directory output goes is replaced (it
                // is within a declared output); the symlink is removed, not followed.
                let shown = || format!("replacing {}", tree.show(path));
                match beneath::found_at(tree.fd(dir), &c_name).ctx(shown)? {
                    Found::Dir | Found::Nothing => {}
                    Found::Symlink | Found::Other => {
                        beneath::unlink_at(tree.fd(dir), &c_name, 0).ctx(shown)?;
                    }
                }
                tree.dir(path)?;
            }
            // Its parent is made above; the link itself is made once every file is in place.
            OutputKind::Symlink { .. } => {}
            OutputKind::File {
                content,
                executable,
            } => {
                let fd = tree.fd(dir);
                if let Some(bytes) = &content.inline
                    && staged.unnamed.len() < MAX_UNNAMED
                    // Any error (permissions, a full disk) is reported by the named path.
                    && let Ok(Some(mut f)) =
                        unnamed::create_at(borrow(fd), 0o666)
                {
                    fill(&mut f, bytes, *executable)
                        .ctx(|| format!("writing {}", tree.show(path)))?;
                    staged.unnamed.push(UnnamedTmp {
                        file: f,
                        dir,
                        name: c_name,
                        path,
                        bytes,
                        executable: *executable,
                    });
                    continue;
                }
                let tmp = beneath::cstr(&temp_name(name))
                    .map_err(|e| Error::io(format!("restoring {}", tree.show(path)), e))?;
                let shown_tmp = || tree.show(&format!("{parent}/{}", tmp.to_string_lossy()));
                match &content.inline {
                    Some(bytes) => {
                        let f = beneath::openat(fd, &tmp, TMP_FLAGS, 0o666)
                            .ctx(|| format!("creating {}", shown_tmp()))?;
                        let mut f = fs::File::from(f);
                        staged.files.push(NamedTmp {
                            dir,
                            tmp: tmp.clone(),
                            name: c_name,
                            path,
                        });
                        fill(&mut f, bytes, *executable)
                            .ctx(|| format!("writing {}", shown_tmp()))?;
                    }
                    None => {
                        staged.files.push(NamedTmp {
                            dir,
                            tmp: tmp.clone(),
                            name: c_name,
                            path,
                        });
                        // Executables are always copied: a hard link shares the cache file's mode.
                        let how = if *executable { Placement::Copy } else { how };
                        match place_at(store, &content.digest, fd, &tmp, how).await {
                            Ok(true) => {}
                            Ok(false) => return Ok(Restore::Missing),
                            Err(e) if e.kind() == ErrorKind::Corrupt => {
                                tracing::warn!("{e}; treating entry {} as a miss", entry.key);
                                return Ok(Restore::Missing);
                            }
                            Err(e) => return Err(e),
                        }
                        if *executable {
                            make_executable(fd, &tmp)
                                .ctx(|| format!("setting mode of {}", shown_tmp()))?;
                        }
                    }
                }
            }
        }
    }
    Ok(Restore::Restored)
}

/// `fd`, held by the [`Tree`] for the whole restore, as a borrowed descriptor.
fn borrow<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: every descriptor passed here belongs to the restore's `Tree`, which outlives
    // each use (the borrow never leaves the statement that makes it).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Place blob `digest` as file `tmp` in the directory open as `dir`.
async fn place_at(
    store: &dyn Store,
    digest: &Digest,
    dir: RawFd,
    tmp: &CStr,
    how: Placement,
) -> Result<bool> {
    // Stores take a path: name the directory through its descriptor, so the store's own
    // open (or reflink, or hard link) lands in that directory whatever its path became.
    if let Some(path) = beneath::fd_path(dir, tmp) {
        return store.place_blob(digest, &path, how).await;
    }
    // No /proc: stream the blob into a file created beneath the descriptor (no reflink or
    // hard link then). The writes block, as the store's own placement does on its thread.
    let Some(read) = store.get_blob(digest).await? else {
        return Ok(false);
    };
    let shown = || format!("writing blob {digest}");
    let mut file = fs::File::from(beneath::openat(dir, tmp, TMP_FLAGS, 0o666).ctx(shown)?);
    let mut stream = read.stream;
    let mut written = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        file.write_all(&chunk).ctx(shown)?;
        written += chunk.len() as u64;
    }
    if written != read.size {
        return Err(Error::corrupt(
            format!("blob {digest}"),
            format!("{written} bytes, expected {}", read.size),
        ));
    }
    Ok(true)
}

/// Give file `name` in `dir` mode 0755, through a descriptor that is not a symlink's target.
fn make_executable(dir: RawFd, name: &CStr) -> std::io::Result<()> {
    let fd = beneath::openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
    )?;
    fs::File::from(fd).set_permissions(fs::Permissions::from_mode(0o755))
}

/// Rename `from` to `to` in `dir` unless `to` exists: `Ok(false)` when it exists, or when the
/// file system cannot tell (`renameat2` unsupported), and nothing was renamed.
fn rename_noreplace(dir: RawFd, from: &CStr, to: &CStr) -> std::io::Result<bool> {
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc =
        unsafe { libc::renameat2(dir, from.as_ptr(), dir, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST | libc::EINVAL | libc::ENOSYS | libc::ENOTSUP) => Ok(false),
        _ => Err(e),
    }
}

/// Link each unnamed staged file into place, replacing what is there.
fn link_all(tree: &Tree, unnamed: Vec<UnnamedTmp<'_>>) -> Result<()> {
    for u in unnamed {
        let dir = tree.fd(u.dir);
        let linked = |f: &fs::File| {
            unnamed::link_at(f, borrow(dir), &u.name)
                .ctx(|| format!("linking {}", tree.show(u.path)))
        };
        match linked(&u.file)? {
            Linked::Done => continue,
            Linked::Exists => {
                make_room(tree, dir, &u.name, u.path)?;
                if linked(&u.file)? == Linked::Done {
                    continue;
                }
                // Something put a file there again meanwhile (or linking is refused now):
                // replace it by rename, as a named restore would.
            }
            Linked::Unsupported => {}
        }
        drop(u.file);
        let tmp = beneath::cstr(&temp_name(beneath::split(u.path).1))
            .map_err(|e| Error::io(format!("restoring {}", tree.show(u.path)), e))?;
        let shown = || format!("writing a temporary file for {}", tree.show(u.path));
        let mut f = fs::File::from(beneath::openat(dir, &tmp, TMP_FLAGS, 0o666).ctx(shown)?);
        if let Err(e) = fill(&mut f, u.bytes, u.executable) {
            let _ = beneath::unlink_at(dir, &tmp, 0);
            return Err(Error::io(shown(), e));
        }
        let named = NamedTmp {
            dir: u.dir,
            tmp,
            name: u.name,
            path: u.path,
        };
        move_into_place(tree, &named)?;
    }
    Ok(())
}

/// Write a small output's bytes into `f` and give it its mode (0755 if executable, else what
/// it was created with).
fn fill(f: &mut fs::File, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    f.write_all(bytes)?;
    if executable {
        f.set_permissions(fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Rename a staged file into place, replacing what is there.
fn move_into_place(tree: &Tree, f: &NamedTmp<'_>) -> Result<()> {
    let dir = tree.fd(f.dir);
    let shown = || format!("moving {} into place", tree.show(f.path));
    // Most restores go to a fresh path: one rename that refuses to replace settles those, and
    // only an existing output costs the removal in `make_room`.
    if rename_noreplace(dir, &f.tmp, &f.name).ctx(shown)? {
        return Ok(());
    }
    make_room(tree, dir, &f.name, f.path)?;
    // SAFETY: both names are NUL-terminated and outlive the call.
    let rc = unsafe { libc::renameat(dir, f.tmp.as_ptr(), dir, f.name.as_ptr()) };
    if rc < 0 {
        return Err(Error::io(shown(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Remove what stands at output `path` (`name` in `dir`) so a restored file can take its place:
/// a file, a symlink (not what it points to), or a directory that was an output last time,
/// with what is in it. Only ever called for outputs within a declared one.
///
/// Unlinking first instead of renaming over: ext4 (auto_da_alloc) flushes the new file's data to
/// disk before a rename that replaces a file, which made restoring a 100 MiB output over an old
/// one 5x slower than restoring it fresh. A crash in between leaves the output missing (a miss
/// next time), never a partial file.
fn make_room(tree: &Tree, dir: RawFd, name: &CStr, path: &str) -> Result<()> {
    beneath::remove_at(dir, name).ctx(|| format!("replacing {}", tree.show(path)))
}

/// Make symlink output `path` point at `target`, replacing what is there.
fn place_symlink(tree: &mut Tree, path: &str, target: &str) -> Result<()> {
    let dir = tree.dir(beneath::split(path).0)?;
    let dir = tree.fd(dir);
    let name = leaf(tree, path)?;
    let shown = || format!("creating link {}", tree.show(path));
    let target = beneath::cstr(target).ctx(shown)?;
    let link = || {
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let rc = unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    match link() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            make_room(tree, dir, &name, path)?;
            link().ctx(shown)
        }
        other => other.ctx(shown),
    }
}

/// A temporary name beside output `name`: hidden, unique to this process and call.
fn temp_name(name: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // The pid is read once: `getpid` is a syscall each time, on every restored file.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = *PID.get_or_init(std::process::id);
    format!(".{name}.larder-{pid}-{n}")
}

/// Write a content item (captured stdout or stderr) to `out`, verified before any byte is shown.
///
/// Returns `Ok(false)` when the blob is missing or corrupt.
///
/// # Errors
/// Store or I/O errors.
pub async fn write_content(
    store: &dyn Store,
    content: &Content,
    out: &mut (dyn Write + Send),
) -> Result<bool> {
    if let Some(bytes) = &content.inline {
        out.write_all(bytes)
            .ctx(|| "writing captured output".into())?;
        return Ok(true);
    }
    let tmp = tempfile_path();
    let placed = match store
        .place_blob(&content.digest, &tmp, Placement::Copy)
        .await
    {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::Corrupt => false,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if placed {
        let mut f = fs::File::open(&tmp).ctx(|| format!("opening {}", tmp.display()))?;
        std::io::copy(&mut f, out).ctx(|| "writing captured output".into())?;
    }
    let _ = fs::remove_file(&tmp);
    Ok(placed)
}

fn tempfile_path() -> PathBuf {
    std::env::temp_dir().join(temp_name("captured"))
}

/// Fetch every blob of an entry just to check the store can serve it (used by `get` without
/// files, and by tests).
///
/// # Errors
/// Store errors.
pub async fn verify_entry_blobs(store: &dyn Store, entry: &Entry) -> Result<bool> {
    for d in entry.blob_digests() {
        let Some(read) = store.get_blob(&d).await? else {
            return Ok(false);
        };
        let mut s = read.stream;
        loop {
            match s.next().await {
                None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) if e.kind() == ErrorKind::Corrupt => return Ok(false),
                Some(Err(e)) => return Err(e),
            }
        }
    }
    Ok(true)
}
