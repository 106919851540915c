//! The wafcache protocol: what waf's `wafcache.py` clients send to its pre-forked workers.
//!
//! A request line is `base64(pickle.dumps([sig, files_from, files_to]))`, the answer line is
//! `base64(pickle.dumps(text))` where `text` is `"ok"` or why not (the seed answers a Python
//! traceback; clients only check `startswith("ok")`). As in the seed's `loop()`:
//! - `files_from` not empty: copy those files into the cache under `sig` (a put), the i-th file as
//!   output number i;
//! - else `files_to` not empty: copy output number i of `sig` to the i-th path (a get);
//! - else the answer is `"Invalid command"`.
//!
//! Paths are absolute (waf sends `node.abspath()`); relative ones are taken from the worker's
//! working directory. A get restores all files or none.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use larder_client::Prepared;
use larder_core::artifacts::{PendingBlob, collect_outputs};
use larder_core::{Entry, Key, Output, OutputKind};

use super::Worker;
use super::pickle::{Value, b64decode, b64encode, decode, encode_str};

/// The seed's success answer.
const OK: &str = "ok";
/// The seed's answer to a request with neither files to store nor files to fetch.
const INVALID: &str = "Invalid command";
/// Error texts are cut to this many bytes: enough for any message, and Python pickles longer
/// strings outside its frame, which [`encode_str`] does not reproduce.
const MAX_ANSWER: usize = 8 << 10;

/// A request: `[sig, files_from, files_to]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Command {
    sig: String,
    files_from: Vec<PathBuf>,
    files_to: Vec<PathBuf>,
}

/// `text` as an answer line (without the newline).
pub(super) fn answer(text: &str) -> Vec<u8> {
    let mut end = text.len().min(MAX_ANSWER);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    b64encode(&encode_str(&text[..end])).into_bytes()
}

/// Answer one request line.
pub(super) async fn handle(w: &mut Worker<'_>, line: &[u8]) -> Vec<u8> {
    let text = match parse(line) {
        Err(e) => Err(e),
        Ok(cmd) => serve(w, cmd).await,
    };
    match text {
        Ok(()) => answer(OK),
        Err(e) => {
            w.stats.errors += 1;
            let msg = format!("{e:#}");
            if msg == INVALID {
                answer(INVALID)
            } else {
                answer(&format!("larder: {msg}"))
            }
        }
    }
}

fn parse(line: &[u8]) -> Result<Command> {
    let bytes = b64decode(line).context("bad request: not base64")?;
    let value =
        decode(&bytes).context("bad request: not a pickle of [sig, files_from, files_to]")?;
    let Value::List(mut items) = value else {
        bail!("bad request: expected a list [sig, files_from, files_to]");
    };
    if items.len() != 3 {
        bail!(
            "bad request: expected [sig, files_from, files_to], got a list of {}",
            items.len()
        );
    }
    let files_to = paths(items.pop(), "files_to")?;
    let files_from = paths(items.pop(), "files_from")?;
    let sig = match items.pop() {
        Some(Value::Str(s)) => s,
        Some(Value::Bytes(b)) => {
            String::from_utf8(b).map_err(|_| anyhow!("bad request: sig is not text"))?
        }
        _ => bail!("bad request: sig is not a string"),
    };
    Ok(Command {
        sig,
        files_from,
        files_to,
    })
}

fn paths(v: Option<Value>, what: &str) -> Result<Vec<PathBuf>> {
    let Some(Value::List(items)) = v else {
        bail!("bad request: {what} is not a list");
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Str(s) => Ok(PathBuf::from(s)),
            Value::Bytes(b) => Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&b))),
            Value::List(_) => Err(anyhow!("bad request: {what} holds a list, not a path")),
        })
        .collect()
}

async fn serve(w: &mut Worker<'_>, cmd: Command) -> Result<()> {
    if !cmd.files_from.is_empty() {
        w.stats.puts += 1;
        put(w, &cmd).await
    } else if !cmd.files_to.is_empty() {
        get(w, &cmd).await
    } else {
        Err(anyhow!(INVALID))
    }
}

fn key(sig: &str) -> Result<Key> {
    Key::new(sig).with_context(|| format!("invalid signature {sig:?}"))
}

async fn put(w: &mut Worker<'_>, cmd: &Command) -> Result<()> {
    w.check_push()?;
    let key = key(&cmd.sig)?;
    let files: Vec<PathBuf> = cmd.files_from.iter().map(|p| w.absolute(p)).collect();
    let limit = w.cache.inline_limit();
    let (outputs, blobs) = tokio::task::block_in_place(|| collect_numbered(&files, limit))?;
    let mut entry = Entry::new(key.as_str(), "wafcache");
    entry.outputs = outputs;
    w.store(key, Prepared { entry, blobs }).await.map(|_| ())
}

/// Read each file into an output named by its position (`0`, `1`, …), as the seed names them.
fn collect_numbered(files: &[PathBuf], limit: u64) -> Result<(Vec<Output>, Vec<PendingBlob>)> {
    let mut outputs = Vec::with_capacity(files.len());
    let mut blobs = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            bail!("{} names no file", path.display());
        };
        let Some(name) = name.to_str() else {
            bail!("{} is not valid UTF-8", path.display());
        };
        let collected = collect_outputs(dir, &[name.to_owned()], limit)
            .with_context(|| format!("cannot cache {}", path.display()))?;
        let mut found = collected.outputs.into_iter();
        let (Some(mut output), None) = (found.next(), found.next()) else {
            bail!("{} is a directory: wafcache caches files", path.display());
        };
        if matches!(output.kind, OutputKind::Dir) {
            bail!("{} is a directory: wafcache caches files", path.display());
        }
        output.path = i.to_string();
        outputs.push(output);
        blobs.extend(collected.blobs);
    }
    Ok((outputs, blobs))
}

async fn get(w: &mut Worker<'_>, cmd: &Command) -> Result<()> {
    let key = key(&cmd.sig)?;
    let entry = w
        .lookup(&key, &[])
        .await
        .map_err(|why| anyhow!("miss: {why}"))?;
    let dests: Vec<String> = cmd
        .files_to
        .iter()
        .map(|d| from_root(&w.absolute(d)))
        .collect::<Result<_>>()?;
    // The files are restored beneath the deepest directory holding them all: the caller named
    // each path (symlinks in that directory's own path are the caller's), and nothing below it
    // is written through a symlink.
    let (root, names) = beneath_common_dir(&dests);
    let mut restore = Entry::new(entry.key.as_str(), entry.producer.as_str());
    for (i, name) in names.iter().enumerate() {
        let number = i.to_string();
        let Some(stored) = entry.outputs.iter().find(|o| o.path == number) else {
            bail!(
                "miss: entry {key} holds {} files, {} asked for",
                entry.outputs.len(),
                cmd.files_to.len()
            );
        };
        restore.outputs.push(Output {
            path: name.clone(),
            kind: stored.kind.clone(),
        });
    }
    // Entries are validated before anything is written: a path listed twice is refused here.
    // The entry restored is the one built here from the request's paths, so all of it is
    // what was asked for.
    w.restore(&key, &restore, &root, &[])
        .await
        .map(|_| ())
        .map_err(|why| anyhow!("miss: {why}"))
}

/// The deepest directory holding every one of `paths` (relative to `/`, from [`from_root`]),
/// and each path relative to it.
fn beneath_common_dir(paths: &[String]) -> (PathBuf, Vec<String>) {
    let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('/').collect()).collect();
    let mut common = split
        .first()
        .map_or(0, |parts| parts.len().saturating_sub(1));
    for parts in &split {
        let parent = &parts[..parts.len().saturating_sub(1)];
        common = common.min(
            parent
                .iter()
                .zip(&split[0])
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let mut root = PathBuf::from("/");
    if let Some(first) = split.first() {
        root.extend(&first[..common]);
    }
    let names = split
        .iter()
        .map(|parts| parts[common..].join("/"))
        .collect();
    (root, names)
}

/// An absolute path as a name relative to `/`, refusing `..` and non-UTF-8 names.
fn from_root(path: &Path) -> Result<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => match s.to_str() {
                Some(s) => parts.push(s),
                None => bail!("{} is not valid UTF-8", path.display()),
            },
            Component::ParentDir | Component::Prefix(_) => {
                bail!("unsafe path {}: `..` is not allowed", path.display())
            }
        }
    }
    if parts.is_empty() {
        bail!("{} names no file", path.display());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: &[u8]) -> Vec<u8> {
        b64encode(v).into_bytes()
    }

    #[test]
    fn parses_what_python_sends() {
        // base64.b64encode(pickle.dumps(["ab", ["/a/b", "/c"], []]))
        let p = b"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x02ab\x94]\x94(\x8c\x04/a/b\x94\x8c\x02/c\x94e]\x94e.";
        let cmd = parse(&line(p)).map_err(|e| e.to_string());
        assert_eq!(
            cmd,
            Ok(Command {
                sig: "ab".into(),
                files_from: vec!["/a/b".into(), "/c".into()],
                files_to: vec![],
            })
        );
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(parse(b"!!!!").is_err());
        assert!(parse(&line(b"\x80\x04\x8c\x02ok\x94.")).is_err());
        assert!(parse(&line(b"\x80\x04](\x8c\x01a]e.")).is_err());
    }

    #[test]
    fn answers_match_the_seed() {
        assert_eq!(answer("ok"), b"gASVBgAAAAAAAACMAm9rlC4=".to_vec());
        let long = "é".repeat(MAX_ANSWER);
        let a = answer(&long);
        assert!(a.len() < MAX_ANSWER * 2);
    }

    #[test]
    fn common_dir_of_requested_files() {
        let paths = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (root, names) = beneath_common_dir(&paths(&["b/x/1.o", "b/x/y/2.o", "b/x/3.o"]));
        assert_eq!(root, Path::new("/b/x"));
        assert_eq!(names, paths(&["1.o", "y/2.o", "3.o"]));
        let (root, names) = beneath_common_dir(&paths(&["b/x/1.o"]));
        assert_eq!(root, Path::new("/b/x"));
        assert_eq!(names, paths(&["1.o"]));
        let (root, names) = beneath_common_dir(&paths(&["a/1", "b/2"]));
        assert_eq!(root, Path::new("/"));
        assert_eq!(names, paths(&["a/1", "b/2"]));
        // A file named like another's directory stays a name below the root.
        let (root, names) = beneath_common_dir(&paths(&["a/b", "a/b/c"]));
        assert_eq!(root, Path::new("/a"));
        assert_eq!(names, paths(&["b", "b/c"]));
    }

    #[test]
    fn paths_from_root() {
        assert_eq!(from_root(Path::new("/a/./b")).ok(), Some("a/b".into()));
        assert!(from_root(Path::new("/a/../b")).is_err());
        assert!(from_root(Path::new("/")).is_err());
    }
}
