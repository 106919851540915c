//! Unnamed files: written in their destination's directory with `O_TMPFILE`, given their name
//! by `linkat(AT_EMPTY_PATH)` once complete.
//!
//! Compared with a named temporary file renamed into place, the file system does one directory
//! change instead of two (an add, not an add, a remove and an add), and a crash leaves nothing
//! behind: an unnamed file that was never linked is freed with its descriptor. Restores of
//! small outputs and the fs store's entries are written this way. Restores name the directory by a
//! descriptor opened beneath the build root ([`create_at`], [`link_at`]), so a symlink in a
//! parent's path is never followed.
//!
//! Not every system allows it: `O_TMPFILE` needs a file system that supports it (ext4, XFS,
//! Btrfs and tmpfs do; NFS does not), and linking an open file by its descriptor needs Linux
//! 6.10 or `CAP_DAC_READ_SEARCH`. The first refusal turns the whole mechanism off for the rest of
//! the process and callers fall back to named temporary files.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turn unnamed files off for the rest of the process: every caller then writes named
/// temporary files and renames them (what happens anyway on systems that refuse them).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Errors that mean "not on this system", as opposed to "this write failed".
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EOPNOTSUPP
                | libc::EISDIR
                | libc::EINVAL
                | libc::ENOENT
                | libc::EPERM
                | libc::EXDEV
                | libc::ENOSYS
        )
    )
}

/// An unnamed file in directory `dir` with permission bits `mode` (less the umask), or
/// `Ok(None)` when unnamed files are off or not supported there (use a named temporary file).
///
/// # Errors
/// Those of `open`, including `NotFound` when `dir` does not exist (create it and retry);
/// callers may also simply fall back to a named file, which reports such errors itself.
pub fn create_in(dir: &Path, mode: u32) -> io::Result<Option<File>> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let opened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(mode)
        .open(dir);
    match opened {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(e) if unsupported(&e) => {
            ENABLED.store(false, Ordering::Relaxed);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What [`link`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// The file now has the name.
    Done,
    /// The name exists: nothing was changed.
    Exists,
    /// Linking by descriptor is not allowed here (now off for the process): write the bytes
    /// under a named temporary file instead.
    Unsupported,
}

/// An unnamed file in the directory open as `dir` (any descriptor of it, `O_PATH` included),
/// as [`create_in`]: `Ok(None)` when unnamed files are off or not supported there.
///
/// # Errors
/// Those of `openat`.
pub fn create_at(dir: BorrowedFd<'_>, mode: u32) -> io::Result<Option<File>> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    // SAFETY: the path is a NUL-terminated literal; a returned descriptor is new and ours.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd >= 0 {
        // SAFETY: `fd` was just opened and is owned by nothing else.
        return Ok(Some(unsafe { File::from_raw_fd(fd) }));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Err(e),
        _ if unsupported(&e) => {
            ENABLED.store(false, Ordering::Relaxed);
            Ok(None)
        }
        _ => Err(e),
    }
}

/// Give unnamed file `file` the name `dest`.
///
/// # Errors
/// Other failures of `linkat` (a missing directory, permissions, a full directory).
pub fn link(file: &File, dest: &Path) -> io::Result<Linked> {
    let to = std::ffi::CString::new(dest.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    link_raw(file, libc::AT_FDCWD, &to)
}

/// Give unnamed file `file` the name `name` in the directory open as `dir` (one component:
/// nothing in a parent's path is looked up again).
///
/// # Errors
/// As [`link`].
pub fn link_at(file: &File, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Linked> {
    link_raw(file, dir.as_raw_fd(), name)
}

fn link_raw(file: &File, dir: RawFd, to: &CStr) -> io::Result<Linked> {
    // SAFETY: the descriptors are open for the duration of the call and both strings are
    // valid and NUL-terminated.
    let rc = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            c"".as_ptr(),
            dir,
            to.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        return Ok(Linked::Done);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(Linked::Exists),
        // ENOENT is also what an unprivileged AT_EMPTY_PATH gets before Linux 6.10; a
        // destination directory that vanished gets it too, and then the named fallback
        // reports the real error.
        _ if unsupported(&e) => {
            ENABLED.store(false, Ordering::Relaxed);
            Ok(Linked::Unsupported)
        }
        _ => Err(e),
    }
}
