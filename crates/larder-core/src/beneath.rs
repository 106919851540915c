//! Directories beneath a build root, opened without following symbolic links.
//!
//! A restore writes an entry's outputs (untrusted input, whoever wrote it) into a build tree
//! that may hold symlinks an earlier entry planted, or that another process swaps in while the
//! restore runs. So every directory a restore writes into is opened as a descriptor beneath the
//! root: with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (Linux 5.6), or, where that call
//! does not exist, one `openat(O_NOFOLLOW)` per path component. Everything after that (create,
//! link, rename, remove) names a single component relative to such a descriptor, so a symlink
//! swapped into a parent once it is open changes nothing: writes land in the directory that was
//! opened, which lies beneath the root.
//!
//! The root itself is opened by its path, following symlinks: it is the caller's choice (the
//! working directory), not the entry's.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Whether `openat2` is worth trying; off for the rest of the process after an `ENOSYS`.
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Whether blobs may be placed through `/proc/self/fd` paths (see [`fd_path`]).
static PROC_PATHS: AtomicBool = AtomicBool::new(true);

/// Work as on a system without `openat2` and without `/proc` for the rest of the process:
/// component-by-component `O_NOFOLLOW` walks, and blobs streamed into files this module
/// creates. For tests of those paths.
pub(crate) fn use_fallbacks() {
    OPENAT2.store(false, Ordering::Relaxed);
    PROC_PATHS.store(false, Ordering::Relaxed);
}

/// Flags of every directory descriptor held here: a handle for `*at` calls (no read
/// permission needed), never a symlink, not inherited by children.
const DIR_FLAGS: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;

/// `struct open_how` of `openat2(2)` (libc's is `non_exhaustive`, so it cannot be built here).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `s` as a C string (output names are validated: no NUL, but the error is kept honest).
pub(crate) fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// The result of a libc call returning -1 on failure.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `openat(dir, name, flags, mode)` as an owned descriptor.
pub(crate) fn openat(
    dir: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and outlives the call; a returned descriptor is new
    // and owned by nobody else.
    let fd = check(unsafe { libc::openat(dir, name.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: `fd` was just returned by `openat` and is owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open directory `rel` (a validated relative path) beneath `root` without following any
/// symlink: `ELOOP` (or `EXDEV`, `ENOTDIR`) when a component is one.
fn open_beneath(root: RawFd, rel: &str) -> io::Result<OwnedFd> {
    let path = cstr(rel)?;
    if OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow {
            flags: DIR_FLAGS as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH
                | libc::RESOLVE_NO_SYMLINKS
                | libc::RESOLVE_NO_MAGICLINKS,
        };
        loop {
            // SAFETY: `path` and `how` outlive the call, and the size passed is `how`'s.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    root,
                    path.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                )
            };
            if rc >= 0 {
                // SAFETY: a new descriptor, owned here.
                return Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) });
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // A rename elsewhere raced the lookup: the kernel asks for a retry.
                Some(libc::EAGAIN | libc::EINTR) => continue,
                Some(libc::ENOSYS) => {
                    OPENAT2.store(false, Ordering::Relaxed);
                    break;
                }
                _ => return Err(e),
            }
        }
    }
    // No openat2: one component at a time, each refusing to be a symlink. With `O_PATH`,
    // `O_NOFOLLOW` alone would open a symlink itself; `O_DIRECTORY` makes that `ENOTDIR`.
    let mut held: Option<OwnedFd> = None;
    for part in rel.split('/') {
        let at = held.as_ref().map_or(root, AsRawFd::as_raw_fd);
        held = Some(openat(at, &cstr(part)?, DIR_FLAGS | libc::O_NOFOLLOW, 0)?);
    }
    held.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))
}

/// Split a validated relative path into its parent (`""` for the root) and last component.
pub(crate) fn split(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// What stands at a name, not following a symlink there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing.
    Nothing,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (a file, a socket, ...).
    Other,
}

/// What is at `name` in `dir`.
pub(crate) fn found_at(dir: RawFd, name: &CStr) -> io::Result<Found> {
    // SAFETY: `stat` is plain data, for which all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` is a valid `stat` for the call to fill.
    let rc = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(Found::Nothing),
            _ => Err(e),
        };
    }
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Found::Dir,
        libc::S_IFLNK => Found::Symlink,
        _ => Found::Other,
    })
}

/// `unlinkat(dir, name, flags)`.
pub(crate) fn unlink_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
}

/// Remove whatever is at `name` in `dir` (a directory with everything below it), without
/// following symlinks anywhere: a symlink is removed, never what it points to. Nothing there
/// is not an error.
pub(crate) fn remove_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    match unlink_at(dir, name, 0) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        // Linux answers EISDIR for a directory.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::EPERM)) => {}
        Err(e) => return Err(e),
    }
    match unlink_at(dir, name, libc::AT_REMOVEDIR) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {}
        Err(e) => return Err(e),
    }
    // Not empty: empty it through a descriptor that refuses to be a symlink, then remove it.
    let sub = openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
    )?;
    for child in list(&sub)? {
        remove_at(sub.as_raw_fd(), &child)?;
    }
    drop(sub);
    match unlink_at(dir, name, libc::AT_REMOVEDIR) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
        _ => Ok(()),
    }
}

/// The names in open directory `dir`, less `.` and `..`.
fn list(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    // `fdopendir` takes its descriptor over: give it a duplicate.
    let dup = dir.try_clone()?;
    // SAFETY: `dup` is a valid directory descriptor whose ownership passes to the stream.
    let stream = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(dup);
    let mut names = Vec::new();
    loop {
        // SAFETY: `stream` is open until `closedir` below; each entry is read before the next
        // call to `readdir` and copied out.
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            break;
        }
        // SAFETY: `d_name` of a returned entry is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    // SAFETY: `stream` came from `fdopendir` and is closed once.
    unsafe { libc::closedir(stream) };
    Ok(names)
}

/// Where a path through open directory `dir` can be given to code that takes paths (a
/// store's `place_blob`): `/proc/self/fd/N/name`, which the kernel resolves to that very
/// directory whatever happened to its path since. `None` without a mounted `/proc`.
pub(crate) fn fd_path(dir: RawFd, name: &CStr) -> Option<PathBuf> {
    static PROC: OnceLock<bool> = OnceLock::new();
    if !PROC_PATHS.load(Ordering::Relaxed)
        || !*PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
    {
        return None;
    }
    let mut p = PathBuf::from(format!("/proc/self/fd/{dir}"));
    p.push(std::ffi::OsStr::from_bytes(name.to_bytes()));
    Some(p)
}

/// A build root and the directories beneath it a restore has opened (or created), by their
/// relative path.
#[derive(Debug)]
pub(crate) struct Tree {
    /// The root as the caller named it.
    root: PathBuf,
    /// The same, for system calls.
    root_c: CString,
    /// Descriptors of the directories opened so far.
    fds: Vec<OwnedFd>,
    /// Relative path to index in `fds` (the root is `""`).
    index: HashMap<String, usize>,
    /// Directories this restore created, in creation order.
    created: Vec<String>,
    /// The topmost directory made to create a missing root, if any.
    created_root: Option<PathBuf>,
}

impl Tree {
    /// A tree rooted at `root`. Nothing is opened yet: the root is opened (following symlinks
    /// in its own path: it is the caller's choice) when first needed, and created then, with
    /// its missing parents, if missing.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a root path holding a NUL byte.
    pub(crate) fn open(root: &Path) -> Result<Tree> {
        let root_c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| Error::invalid(format!("{} holds a NUL byte", root.display())))?;
        Ok(Tree {
            root: root.to_path_buf(),
            root_c,
            fds: Vec::new(),
            index: HashMap::new(),
            created: Vec::new(),
            created_root: None,
        })
    }

    /// The descriptor of directory number `i` (from [`Tree::dir`]).
    pub(crate) fn fd(&self, i: usize) -> RawFd {
        self.fds[i].as_raw_fd()
    }

    /// `rel` under the root, for messages.
    pub(crate) fn show(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    /// Open the root (creating it if missing), by its path.
    fn open_root(&mut self) -> Result<OwnedFd> {
        let shown = |root: &Path| format!("opening {}", root.display());
        match openat(libc::AT_FDCWD, &self.root_c, DIR_FLAGS, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.created_root = self
                    .root
                    .ancestors()
                    .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
                    .last()
                    .map(Path::to_path_buf);
                std::fs::create_dir_all(&self.root).map_err(|e| Error::io(shown(&self.root), e))?;
                openat(libc::AT_FDCWD, &self.root_c, DIR_FLAGS, 0)
            }
            other => other,
        }
        .map_err(|e| Error::io(shown(&self.root), e))
    }

    /// Directory `rel` beneath the root (`""`: the root), created (with its missing parents)
    /// if missing: its number for [`Tree::fd`].
    ///
    /// # Errors
    /// [`Error::UnsafePath`] when `rel` or one of its parents is a symlink; [`Error::Io`] when
    /// one is not a directory or cannot be created.
    pub(crate) fn dir(&mut self, rel: &str) -> Result<usize> {
        if let Some(&i) = self.index.get(rel) {
            return Ok(i);
        }
        let fd = if rel.is_empty() {
            self.open_root()?
        } else {
            let (parent, name) = split(rel);
            let opened = match self.index.get(parent) {
                // The parent is open: one component relative to it.
                Some(&p) => openat(
                    self.fd(p),
                    &cstr(name).map_err(|e| self.io_err(rel, e))?,
                    DIR_FLAGS | libc::O_NOFOLLOW,
                    0,
                ),
                // A directory right below the root: one open by the root's path (followed, as
                // the root's own open would be) and the name, which must not be a symlink. The
                // root itself is then never opened when no output lies directly in it.
                None if parent.is_empty() => {
                    let mut path = self.root_c.as_bytes().to_vec();
                    path.push(b'/');
                    path.extend_from_slice(name.as_bytes());
                    let path = CString::new(path).map_err(|_| {
                        let nul = io::Error::new(io::ErrorKind::InvalidInput, "NUL in path");
                        self.io_err(rel, nul)
                    })?;
                    openat(libc::AT_FDCWD, &path, DIR_FLAGS | libc::O_NOFOLLOW, 0)
                }
                None => {
                    let r = self.dir("")?;
                    open_beneath(self.fd(r), rel)
                }
            };
            match opened {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.create(rel)?,
                Err(e) => return Err(self.refusal(rel, e)),
            }
        };
        self.fds.push(fd);
        self.index.insert(rel.to_owned(), self.fds.len() - 1);
        Ok(self.fds.len() - 1)
    }

    /// Make directory `rel` (its parent first, if missing) and open it.
    fn create(&mut self, rel: &str) -> Result<OwnedFd> {
        let (parent, name) = split(rel);
        let p = self.dir(parent)?;
        let c = cstr(name).map_err(|e| self.io_err(rel, e))?;
        // SAFETY: `c` is NUL-terminated and outlives the call.
        match check(unsafe { libc::mkdirat(self.fd(p), c.as_ptr(), 0o777) }) {
            Ok(_) => self.created.push(rel.to_owned()),
            // Made meanwhile by someone else: open what is there, if it is a directory.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(self.io_err(rel, e)),
        }
        openat(self.fd(p), &c, DIR_FLAGS | libc::O_NOFOLLOW, 0).map_err(|e| self.refusal(rel, e))
    }

    /// The error for directory `rel` failing to open: a symlink in the way is an unsafe path.
    fn refusal(&self, rel: &str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ELOOP | libc::EXDEV) => Error::UnsafePath {
                path: rel.to_owned(),
                reason: "it or a parent directory is a symbolic link",
            },
            Some(libc::ENOTDIR) if self.has_symlink(rel) => Error::UnsafePath {
                path: rel.to_owned(),
                reason: "it or a parent directory is a symbolic link",
            },
            _ => self.io_err(rel, e),
        }
    }

    /// Whether a component of `rel` is a symlink (only asked to explain a failure).
    fn has_symlink(&self, rel: &str) -> bool {
        let Ok(root) = openat(libc::AT_FDCWD, &self.root_c, DIR_FLAGS, 0) else {
            return false;
        };
        let mut at: Option<OwnedFd> = None;
        for part in rel.split('/') {
            let Ok(c) = cstr(part) else { return false };
            let dir = at.as_ref().map_or(root.as_raw_fd(), AsRawFd::as_raw_fd);
            match found_at(dir, &c) {
                Ok(Found::Symlink) => return true,
                Ok(Found::Dir) => match openat(dir, &c, DIR_FLAGS | libc::O_NOFOLLOW, 0) {
                    Ok(fd) => at = Some(fd),
                    Err(_) => return false,
                },
                _ => return false,
            }
        }
        false
    }

    fn io_err(&self, rel: &str, e: io::Error) -> Error {
        Error::io(format!("creating {}", self.show(rel)), e)
    }

    /// Remove the directories this tree created, deepest first, where they are empty (a
    /// restore that turns out a miss leaves the tree as it found it).
    pub(crate) fn remove_created(&mut self) {
        for rel in std::mem::take(&mut self.created).iter().rev() {
            let (parent, name) = split(rel);
            if let (Some(&p), Ok(c)) = (self.index.get(parent), cstr(name)) {
                let _ = unlink_at(self.fd(p), &c, libc::AT_REMOVEDIR);
            }
        }
        // The root and the parents made for it, by path as they were made (the caller's).
        if let Some(top) = self.created_root.take() {
            for dir in self.root.ancestors() {
                if std::fs::remove_dir(dir).is_err() || dir == top {
                    break;
                }
            }
        }
    }
}
