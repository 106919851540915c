//! Files on disk to entries and back: what `larder exec`, `get`/`put` and the worker share.
//!
//! Storing ([`collect_outputs`] then [`store_outputs`]) hashes each output, uploads only the
//! blobs the store lacks, and writes the entry last. Restoring ([`restore_outputs`]) places every
//! file into a temporary name beside its destination and renames them into place only once all
//! of them are verified, so a missing or corrupt blob leaves the work tree as it was. Small
//! (inline) outputs are staged as unnamed files (`O_TMPFILE`) where the file system and the
//! kernel allow it, and linked into place: one directory change per file instead of two, and
//! nothing left behind by a crash.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

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

/// What [`restore_outputs`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Every output is in place.
    Restored,
    /// A blob was missing or corrupt: nothing was changed (a miss).
    Missing,
}

/// Place every output of `entry` under `root`. All-or-nothing: files are placed into temporary
/// names first and renamed into place only when every blob has been fetched and verified.
///
/// Every path is checked before anything is written. Inline bytes are written as they are:
/// [`Entry::decode`] verified them against their digests when the entry was read, and hashing
/// them again here cost a small restore about 5% of its CPU time.
///
/// # Errors
/// [`Error::UnsafePath`] for entries naming unsafe paths (never written), I/O errors writing
/// under `root`, and store errors other than missing or corrupt blobs.
pub async fn restore_outputs(
    store: &dyn Store,
    entry: &Entry,
    root: &Path,
    how: Placement,
) -> Result<Restore> {
    entry.validate_shape()?;
    let mut staged = Staged::default();
    let result = stage_all(store, entry, root, how, &mut staged).await;
    match result {
        Ok(Restore::Restored) => {}
        other => {
            for (tmp, _) in &staged.files {
                let _ = fs::remove_file(tmp);
            }
            // Directories this restore created (deepest first) go too: a miss changes nothing.
            for dir in staged.created_dirs.iter().rev() {
                let _ = fs::remove_dir_all(dir);
            }
            return other;
        }
    }
    let files = staged.files;
    if let Err(e) = link_all(staged.unnamed) {
        for (tmp, _) in &files {
            let _ = fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, dest) in &files {
        move_into_place(tmp, dest)?;
    }
    for o in &entry.outputs {
        if let OutputKind::Symlink { target } = &o.kind {
            let dest = root.join(&o.path);
            if fs::symlink_metadata(&dest).is_ok() {
                remove_any(&dest)?;
            }
            std::os::unix::fs::symlink(target, &dest)
                .ctx(|| format!("creating link {}", dest.display()))?;
        }
    }
    Ok(Restore::Restored)
}

/// Rename `from` to `to` unless `to` exists: `Ok(false)` when it exists, or when the file
/// system cannot tell (`renameat2` unsupported), and nothing was renamed.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
    };
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
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
fn link_all(unnamed: Vec<(fs::File, PathBuf, &[u8], bool)>) -> Result<()> {
    for (file, dest, bytes, executable) in unnamed {
        let linked =
            |f: &fs::File| unnamed::link(f, &dest).ctx(|| format!("linking {}", dest.display()));
        match linked(&file)? {
            Linked::Done => continue,
            Linked::Exists => {
                make_room(&dest)?;
                if linked(&file)? == Linked::Done {
                    continue;
                }
                // Something put a file there again meanwhile (or linking is refused now):
                // replace it by rename, as a named restore would.
            }
            Linked::Unsupported => {}
        }
        drop(file);
        let tmp = temp_name_for(&dest);
        let mut f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        if let Err(e) = fill(&mut f, bytes, executable) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", tmp.display()), e));
        }
        move_into_place(&tmp, &dest)?;
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

/// Rename staged file `tmp` to `dest`, replacing what is there.
fn move_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    // Most restores go to a fresh path: one rename that refuses to replace settles those, and
    // only an existing output costs the look-up in `make_room`.
    if rename_noreplace(tmp, dest).ctx(|| format!("moving {} into place", dest.display()))? {
        return Ok(());
    }
    make_room(dest)?;
    fs::rename(tmp, dest).ctx(|| format!("moving {} into place", dest.display()))
}

/// Remove what is at `dest` (a file, or a directory that was an output last time) so a
/// restored file can take its place.
fn make_room(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        // An output that was a directory last time and is a file now.
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(dest).ctx(|| format!("replacing {}", dest.display()))
        }
        // Unlink first instead of renaming over: ext4 (auto_da_alloc) flushes the new file's
        // data to disk before a rename that replaces a file, which made restoring a 100 MiB
        // output over an old one 5x slower than restoring it fresh. A crash in between
        // leaves the output missing (a miss next time), never a partial file.
        Ok(_) => match fs::remove_file(dest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("replacing {}", dest.display()), e))
            }
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// At most this many small outputs of one restore are held as open unnamed files; the rest
/// get named temporary files, so a restore of thousands of outputs stays within the
/// descriptor limit.
const MAX_UNNAMED: usize = 64;

/// An unnamed file in `dest`'s directory (created if missing), ready for `dest`'s bytes;
/// `None` to stage under a name instead.
fn unnamed_file(dest: &Path, staged: &mut Staged<'_>) -> Result<Option<fs::File>> {
    if staged.unnamed.len() >= MAX_UNNAMED {
        return Ok(None);
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file = match unnamed::create_in(dir, 0o666) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            staged.ensure_dir(dir)?;
            unnamed::create_in(dir, 0o666)
        }
        other => other,
    };
    // Any error (permissions, a full disk) is reported by the named path.
    Ok(file.ok().flatten())
}

/// Temporary files waiting to be renamed into place, unnamed files waiting to be linked into
/// place (with their bytes and executable bit, for the named fallback), and directories
/// created on the way.
#[derive(Default)]
struct Staged<'a> {
    files: Vec<(PathBuf, PathBuf)>,
    unnamed: Vec<(fs::File, PathBuf, &'a [u8], bool)>,
    created_dirs: Vec<PathBuf>,
}

impl Staged<'_> {
    /// `create_dir_all`, remembering the topmost directory it had to create.
    fn ensure_dir(&mut self, dir: &Path) -> Result<()> {
        let mut first_missing = None;
        let mut p = Some(dir);
        while let Some(d) = p {
            if d.exists() {
                break;
            }
            first_missing = Some(d.to_path_buf());
            p = d.parent();
        }
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        if let Some(d) = first_missing {
            self.created_dirs.push(d);
        }
        Ok(())
    }
}

fn remove_any(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).ctx(|| format!("reading {}", path.display()))?;
    if m.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .ctx(|| format!("removing {}", path.display()))
}

fn temp_name_for(dest: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // The pid is read once: `getpid` is a syscall each time, on every restored file.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = *PID.get_or_init(std::process::id);
    dest.with_file_name(format!(".{name}.larder-{pid}-{n}"))
}

async fn stage_all<'a>(
    store: &dyn Store,
    entry: &'a Entry,
    root: &Path,
    how: Placement,
    staged: &mut Staged<'a>,
) -> Result<Restore> {
    for o in &entry.outputs {
        let dest = root.join(&o.path);
        match &o.kind {
            OutputKind::Dir => {
                if let Ok(m) = fs::symlink_metadata(&dest)
                    && !m.is_dir()
                {
                    remove_any(&dest)?;
                }
                staged.ensure_dir(&dest)?;
            }
            OutputKind::Symlink { .. } => {
                if let Some(parent) = dest.parent() {
                    staged.ensure_dir(parent)?;
                }
            }
            OutputKind::File {
                content,
                executable,
            } => {
                if let Some(bytes) = &content.inline
                    && let Some(mut f) = unnamed_file(&dest, staged)?
                {
                    fill(&mut f, bytes, *executable)
                        .ctx(|| format!("writing {}", dest.display()))?;
                    staged.unnamed.push((f, dest, bytes, *executable));
                    continue;
                }
                let tmp = temp_name_for(&dest);
                match &content.inline {
                    Some(bytes) => {
                        // The directory usually exists: create the file first and make the
                        // directory only when that fails (no `stat`/`mkdir` per small output).
                        let mut f = match fs::File::create(&tmp) {
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                if let Some(parent) = dest.parent() {
                                    staged.ensure_dir(parent)?;
                                }
                                fs::File::create(&tmp)
                            }
                            other => other,
                        }
                        .ctx(|| format!("creating {}", tmp.display()))?;
                        staged.files.push((tmp.clone(), dest.clone()));
                        f.write_all(bytes)
                            .ctx(|| format!("writing {}", tmp.display()))?;
                    }
                    None => {
                        if let Some(parent) = dest.parent() {
                            staged.ensure_dir(parent)?;
                        }
                        staged.files.push((tmp.clone(), dest.clone()));
                        // Executables are always copied: a hard link shares the cache file's mode.
                        let how = if *executable { Placement::Copy } else { how };
                        match store.place_blob(&content.digest, &tmp, how).await {
                            Ok(true) => {}
                            Ok(false) => return Ok(Restore::Missing),
                            Err(e) if e.kind() == ErrorKind::Corrupt => {
                                tracing::warn!("{e}; treating entry {} as a miss", entry.key);
                                return Ok(Restore::Missing);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                if *executable {
                    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                        .ctx(|| format!("setting mode of {}", tmp.display()))?;
                }
            }
        }
    }
    Ok(Restore::Restored)
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
    temp_name_for(&std::env::temp_dir().join("captured"))
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
