//! Unnamed files: written in their destination's directory with `O_TMPFILE`, given their name
//! by `linkat(AT_EMPTY_PATH)` once complete.
//!
//! Compared with a named temporary file renamed into place, the file system does one directory
//! change instead of two (an add, not an add, a remove and an add), and a crash leaves nothing
//! behind: an unnamed file that was never linked is freed with its descriptor. Restores of
//! small outputs and the fs store's entries are written this way.
//!
//! Not every system allows it: `O_TMPFILE` needs a file system that supports it (ext4, XFS,
//! Btrfs and tmpfs do; NFS does not), and linking an open file by its descriptor needs Linux
//! 6.10 or `CAP_DAC_READ_SEARCH`. The first refusal turns the whole mechanism off for the rest of
//! the process and callers fall back to named temporary files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
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

/// Give unnamed file `file` the name `dest`.
///
/// # Errors
/// Other failures of `linkat` (a missing directory, permissions, a full directory).
pub fn link(file: &File, dest: &Path) -> io::Result<Linked> {
    let to = std::ffi::CString::new(dest.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: the descriptor is open for the duration of the call and both strings are valid
    // and NUL-terminated.
    let rc = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
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
