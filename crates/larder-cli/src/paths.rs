//! Paths named on the command line: outputs and files must lie inside the working directory
//! (they become relative names in entries), and `--in` globs expand to a sorted list of files.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use globset::GlobBuilder;
use larder_client::Input;
use larder_core::key::validate_rel_path;
use walkdir::WalkDir;

/// `path` (relative to `cwd`, or absolute below it) as a clean relative name: no `.`, no `..`,
/// `/`-separated. `what` names the argument in errors (`--out`, `FILE`).
pub(crate) fn workdir_relative(cwd: &Path, path: &str, what: &str) -> Result<String> {
    let p = Path::new(path);
    let rel: PathBuf = if p.is_absolute() {
        match strip_workdir(cwd, p) {
            Some(r) => r,
            None => bail!(
                "{what} {path} is outside the working directory {}: outputs must be inside it",
                cwd.display()
            ),
        }
    } else {
        p.to_path_buf()
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => {
                let Some(s) = s.to_str() else {
                    bail!("{what} {path:?} is not valid UTF-8");
                };
                parts.push(s);
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    bail!(
                        "{what} {path} is outside the working directory {}: outputs must be inside it",
                        cwd.display()
                    );
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                bail!("{what} {path} is not a relative path")
            }
        }
    }
    if parts.is_empty() {
        bail!(
            "{what} {path} names the working directory itself; name the files or directories inside it"
        );
    }
    let name = parts.join("/");
    validate_rel_path(&name).with_context(|| format!("{what} {path} cannot be cached"))?;
    Ok(name)
}

/// `p` relative to `cwd`, also when `p` spells the working directory through the shell's
/// logical `$PWD` (a path through a symlink).
fn strip_workdir(cwd: &Path, p: &Path) -> Option<PathBuf> {
    if let Ok(r) = p.strip_prefix(cwd) {
        return Some(r.to_path_buf());
    }
    let pwd = std::env::var_os("PWD").map(PathBuf::from)?;
    if pwd.canonicalize().ok()? == cwd.canonicalize().ok()? {
        return p.strip_prefix(&pwd).ok().map(Path::to_path_buf);
    }
    None
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Expand `--in` patterns: a file, a directory (every file below it), or a glob (`*` within a
/// path segment, `**` across segments). Sorted by name, deduplicated.
///
/// Directories and globs skip files below `exclude` (the cache directory) and the task's own
/// `outputs` (`--in . --out build` would otherwise miss every time the outputs exist); a file
/// named by itself is always an input (a tool that rewrites a file in place must sign it).
pub(crate) fn expand_inputs(
    cwd: &Path,
    patterns: &[String],
    exclude: Option<&Path>,
    outputs: &[String],
) -> Result<Vec<Input>> {
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut expanded: BTreeMap<String, PathBuf> = BTreeMap::new();
    for pattern in patterns {
        let clean = pattern.strip_prefix("./").unwrap_or(pattern);
        if clean.is_empty() {
            bail!("--in {pattern:?} is empty");
        }
        if !has_glob_meta(clean) {
            let path = cwd.join(clean);
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!("input {pattern} does not exist")
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read input {pattern}"));
                }
            };
            if meta.is_dir() {
                add_tree(cwd, &path, exclude, &mut expanded)?;
            } else {
                found.insert(display_name(cwd, &path)?, path);
            }
            continue;
        }
        if expand_glob(cwd, pattern, clean, exclude, &mut expanded)? == 0 {
            bail!("--in {pattern} matched no files");
        }
    }
    let is_output = |name: &str| {
        outputs.iter().any(|o| {
            name.strip_prefix(o.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    };
    expanded.retain(|name, _| !is_output(name));
    found.append(&mut expanded);
    Ok(found
        .into_iter()
        .map(|(name, path)| Input { name, path })
        .collect())
}

fn compile(pattern: &str) -> Result<globset::GlobMatcher> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .with_context(|| format!("invalid --in pattern {pattern:?}"))?
        .compile_matcher())
}

fn expand_glob(
    cwd: &Path,
    pattern: &str,
    clean: &str,
    exclude: Option<&Path>,
    found: &mut BTreeMap<String, PathBuf>,
) -> Result<usize> {
    let matcher = compile(clean)?;
    // Walk from the longest leading part without glob characters.
    let absolute = clean.starts_with('/');
    let literal: Vec<&str> = clean
        .split('/')
        .take_while(|seg| !has_glob_meta(seg))
        .collect();
    let mut base = literal.join("/");
    if absolute && base.is_empty() {
        base.push('/');
    }
    let root = if base.is_empty() {
        cwd.to_path_buf()
    } else {
        cwd.join(&base)
    };
    if !root.exists() {
        bail!(
            "--in {pattern} matched no files ({} does not exist)",
            root.display()
        );
    }
    let mut matched = 0;
    let mut walk = WalkDir::new(&root).follow_links(false).into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.with_context(|| format!("cannot list inputs for --in {pattern}"))?;
        if exclude.is_some_and(|x| entry.path().starts_with(x)) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let name = if absolute {
            path_str(entry.path())?.to_owned()
        } else {
            let rel = entry.path().strip_prefix(cwd).unwrap_or(entry.path());
            path_str(rel)?.to_owned()
        };
        if name.is_empty() || !matcher.is_match(&name) {
            continue;
        }
        let meta = std::fs::metadata(entry.path())
            .with_context(|| format!("cannot read input {}", entry.path().display()))?;
        matched += 1;
        if meta.is_dir() {
            add_tree(cwd, entry.path(), exclude, found)?;
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
        } else {
            found.insert(name, entry.path().to_path_buf());
        }
    }
    Ok(matched)
}

/// Every file below `dir` (following symlinks; a loop is an error).
fn add_tree(
    cwd: &Path,
    dir: &Path,
    exclude: Option<&Path>,
    found: &mut BTreeMap<String, PathBuf>,
) -> Result<()> {
    let mut walk = WalkDir::new(dir).follow_links(true).into_iter();
    while let Some(entry) = walk.next() {
        let entry =
            entry.with_context(|| format!("cannot list input directory {}", dir.display()))?;
        if exclude.is_some_and(|x| entry.path().starts_with(x)) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        if entry.file_type().is_file() {
            found.insert(display_name(cwd, entry.path())?, entry.path().to_path_buf());
        }
    }
    Ok(())
}

/// The signed name of an input: relative to `cwd` when inside it.
fn display_name(cwd: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(cwd).unwrap_or(path);
    let mut parts: Vec<&str> = Vec::new();
    let absolute = rel.is_absolute();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(
                s.to_str()
                    .with_context(|| format!("input {} is not valid UTF-8", path.display()))?,
            ),
            Component::ParentDir => parts.push(".."),
            _ => {}
        }
    }
    let joined = parts.join("/");
    Ok(if absolute {
        format!("/{joined}")
    } else {
        joined
    })
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("input {} is not valid UTF-8", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_must_stay_inside() {
        let cwd = Path::new("/w/proj");
        assert_eq!(workdir_relative(cwd, "a/./b", "--out").unwrap(), "a/b");
        assert_eq!(workdir_relative(cwd, "a/../b", "--out").unwrap(), "b");
        assert_eq!(
            workdir_relative(cwd, "/w/proj/x/y", "--out").unwrap(),
            "x/y"
        );
        for bad in ["../escape", "/etc/passwd", ".", "a/../.."] {
            let e = workdir_relative(cwd, bad, "--out").unwrap_err();
            let msg = format!("{e:#}");
            assert!(msg.contains("--out"), "{bad}: {msg}");
        }
    }

    #[test]
    fn globs_expand_sorted_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        for f in [
            "src/b.c",
            "src/a.c",
            "src/a.h",
            "src/sub/c.c",
            "inc/x.h",
            "cache/junk.c",
        ] {
            let p = cwd.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        let names = |pats: &[&str]| -> Vec<String> {
            let pats: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
            expand_inputs(
                &cwd,
                &pats,
                Some(&cwd.join("cache")),
                &["src/sub".to_string()],
            )
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
        };
        assert_eq!(names(&["src/*.c"]), ["src/a.c", "src/b.c"]);
        // Outputs (src/sub) are skipped by globs and directories, not when named.
        assert_eq!(names(&["src/**/*.c", "./src/a.c"]), ["src/a.c", "src/b.c"]);
        assert_eq!(
            names(&["src/**/*.c", "src/sub/c.c"]),
            ["src/a.c", "src/b.c", "src/sub/c.c"]
        );
        assert_eq!(names(&["inc"]), ["inc/x.h"]);
        assert_eq!(names(&["**/*.c"]), ["src/a.c", "src/b.c"]);
        assert_eq!(names(&["src/a.c", "src/*.c"]), ["src/a.c", "src/b.c"]);
        let pats = vec!["nope.c".to_string()];
        let e = expand_inputs(&cwd, &pats, None, &[]).unwrap_err();
        assert!(e.to_string().contains("input nope.c does not exist"), "{e}");
        let pats = vec!["src/*.rs".to_string()];
        let e = expand_inputs(&cwd, &pats, None, &[]).unwrap_err();
        assert!(e.to_string().contains("matched no files"), "{e}");
    }
}
