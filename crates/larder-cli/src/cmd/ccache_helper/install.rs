//! `larder ccache-helper install [--dir DIR]`: the names ccache runs, as symlinks to this
//! binary.
//!
//! ccache looks for `ccache-storage-<scheme>` in its `helper=` property, its libexec
//! directories, next to itself, then on `PATH`. Without `--dir` the names go into a directory
//! on `PATH`: `~/.local/bin`, else the directory this binary is in, else `~/bin` (the first one
//! on `PATH` that can be written).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::NAME_PREFIX;
use crate::cmd::EXIT_OK;

/// Create the helper names.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to create them (default: ~/.local/bin or larder's own directory, when on PATH)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The URL schemes of the stores compiled in, as ccache names helpers.
pub(crate) fn schemes() -> Vec<&'static str> {
    let mut schemes = Vec::new();
    if cfg!(feature = "s3") {
        schemes.extend(["s3", "minio"]);
    }
    if cfg!(feature = "gcs") {
        schemes.push("gs");
    }
    if cfg!(feature = "http") {
        schemes.extend(["larder+http", "larder+https"]);
    }
    schemes
}

/// Run `larder ccache-helper install`.
pub(crate) fn run(args: Args) -> Result<u8> {
    let schemes = schemes();
    if schemes.is_empty() {
        bail!(
            "this larder has no remote store compiled in (features s3, gcs, http): nothing for ccache to use"
        );
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot tell where the larder binary is")?;
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let (dir, why) = match args.dir {
        Some(dir) => (dir, "--dir"),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            default_dir(&path_dirs, home.as_deref(), &exe)?
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut made = Vec::new();
    for scheme in &schemes {
        let link = dir.join(format!("{NAME_PREFIX}{scheme}"));
        place_link(&exe, &link)?;
        made.push(link);
    }
    let mut out = String::new();
    for link in &made {
        out.push_str(&format!("{} -> {}\n", link.display(), exe.display()));
    }
    let on_path = path_dirs.iter().any(|d| same_dir(d, &dir));
    out.push_str(&format!(
        "installed {} ccache storage helpers in {} ({why}{})\n",
        made.len(),
        dir.display(),
        if on_path {
            ", on PATH"
        } else {
            "; not on PATH: ccache finds them there only with libexec_dirs or helper=PATH"
        }
    ));
    super::super::print_stdout(out.as_bytes())?;
    Ok(EXIT_OK)
}

/// The default directory: the first of `~/.local/bin`, the binary's own directory and `~/bin`
/// that is on `PATH` and can be written, with why it was chosen.
fn default_dir(
    path_dirs: &[PathBuf],
    home: Option<&Path>,
    exe: &Path,
) -> Result<(PathBuf, &'static str)> {
    let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
    if let Some(home) = home {
        candidates.push((home.join(".local/bin"), "~/.local/bin"));
    }
    if let Some(own) = exe.parent() {
        candidates.push((own.to_path_buf(), "larder's own directory"));
    }
    if let Some(home) = home {
        candidates.push((home.join("bin"), "~/bin"));
    }
    for (dir, why) in &candidates {
        if path_dirs.iter().any(|d| same_dir(d, dir)) && writable(dir) {
            return Ok((dir.clone(), why));
        }
    }
    let tried: Vec<String> = candidates
        .iter()
        .map(|(d, _)| d.display().to_string())
        .collect();
    bail!(
        "none of {} is a writable directory on PATH: pass --dir DIR (and put DIR on PATH, or set ccache's libexec_dirs)",
        tried.join(", ")
    )
}

/// Whether two directory names are the same directory (by name, or once resolved).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Whether this user can create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads a NUL-terminated path and changes nothing.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Make `link` a symlink to `exe`, replacing a symlink already there (an older install); a
/// file that is not a symlink is left alone, as an error.
fn place_link(exe: &Path, link: &Path) -> Result<()> {
    match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if std::fs::read_link(link).is_ok_and(|t| t == exe) {
                return Ok(());
            }
            // Replace it atomically: a link beside it, renamed over it.
            let mut tmp = OsString::from(link.as_os_str());
            tmp.push(format!(".larder-{}", std::process::id()));
            let tmp = PathBuf::from(tmp);
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(exe, &tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            std::fs::rename(&tmp, link)
                .with_context(|| format!("cannot replace {}", link.display()))
        }
        Ok(_) => bail!(
            "{} exists and is not a symlink (another helper?): remove it or choose another --dir",
            link.display()
        ),
        Err(_) => std::os::unix::fs::symlink(exe, link)
            .with_context(|| format!("cannot create {}", link.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_directory_is_one_on_path() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = tmp.path().join("home");
        let local_bin = home.join(".local/bin");
        let own = tmp.path().join("opt/larder/bin");
        for d in [&local_bin, &own] {
            std::fs::create_dir_all(d).expect("dirs");
        }
        let exe = own.join("larder");
        let (dir, _) = default_dir(&[local_bin.clone(), own.clone()], Some(&home), &exe).unwrap();
        assert_eq!(dir, local_bin, "~/.local/bin first when on PATH");
        let (dir, why) = default_dir(std::slice::from_ref(&own), Some(&home), &exe).unwrap();
        assert_eq!((dir, why), (own.clone(), "larder's own directory"));
        let err = default_dir(&[tmp.path().join("elsewhere")], Some(&home), &exe)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--dir"), "{err}");
    }

    #[test]
    fn links_replace_old_links_but_not_files() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let exe = tmp.path().join("larder");
        std::fs::write(&exe, "").expect("exe");
        let link = tmp.path().join("ccache-storage-s3");
        std::os::unix::fs::symlink("/old/larder", &link).expect("old link");
        place_link(&exe, &link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), exe);
        place_link(&exe, &link).unwrap();
        let file = tmp.path().join("ccache-storage-gs");
        std::fs::write(&file, "someone else's").expect("file");
        assert!(place_link(&exe, &file).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "someone else's");
    }
}
