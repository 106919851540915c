//! The worker's JSON line protocol (documented in `docs/worker-protocol.md`).
//!
//! A request is one JSON object: `op` (`get`, `put`, `exists`, `stats`), `key`, `files`, and an
//! optional `root` (the directory `files` are relative to; default: the worker's working
//! directory) and `id` (echoed in the answer). Every answer has `ok`; `ok: false` carries
//! `error`. A miss is not an error: `{"ok":true,"hit":false,"reason":…}`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use larder_core::Key;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Put, Worker};
use crate::paths::workdir_relative;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Get,
    Put,
    Exists,
    Stats,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: Op,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    root: Option<PathBuf>,
    #[serde(default)]
    id: Option<Value>,
}

/// `{"ok":false,"error":msg}` as a line (without the newline).
pub(super) fn error_line(msg: &str) -> Vec<u8> {
    finish(None, Err(anyhow::anyhow!("{msg}")))
}

/// Answer one request line.
pub(super) async fn handle(w: &mut Worker<'_>, line: &[u8]) -> Vec<u8> {
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            w.stats.errors += 1;
            return error_line(&format!("bad request: {e}"));
        }
    };
    let id = req.id.clone();
    let result = serve(w, req).await;
    if result.is_err() {
        w.stats.errors += 1;
    }
    finish(id, result)
}

fn finish(id: Option<Value>, result: Result<Map<String, Value>>) -> Vec<u8> {
    let mut obj = match result {
        Ok(mut fields) => {
            fields.insert("ok".into(), Value::Bool(true));
            fields
        }
        Err(e) => {
            let mut m = Map::new();
            m.insert("ok".into(), Value::Bool(false));
            m.insert("error".into(), Value::String(format!("{e:#}")));
            m
        }
    };
    if let Some(id) = id {
        obj.insert("id".into(), id);
    }
    // A map of JSON values always serialises.
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_else(|_| b"{\"ok\":false}".to_vec())
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The key, root directory and relative file names a request names.
fn target(w: &Worker<'_>, req: &Request) -> Result<(Key, PathBuf, Vec<String>)> {
    let Some(key) = &req.key else {
        bail!("missing \"key\"");
    };
    let key = Key::new(key.as_str())?;
    let root = match &req.root {
        Some(root) => w.absolute(root),
        None => w.cwd.clone(),
    };
    let mut names = Vec::with_capacity(req.files.len());
    for f in &req.files {
        names.push(workdir_relative(&root, f, "file")?);
    }
    Ok((key, root, names))
}

async fn serve(w: &mut Worker<'_>, req: Request) -> Result<Map<String, Value>> {
    match req.op {
        Op::Stats => {
            let stats = serde_json::to_value(w.stats).context("cannot encode the statistics")?;
            Ok(fields(json!({ "stats": stats })))
        }
        Op::Exists => {
            let (key, _, names) = target(w, &req)?;
            if !names.is_empty() {
                bail!("\"exists\" takes no \"files\"");
            }
            let hit = w.lookup(&key, &[]).await.is_ok();
            if hit {
                w.stats.hits += 1;
            }
            Ok(fields(json!({ "hit": hit })))
        }
        Op::Get => {
            let (key, root, names) = target(w, &req)?;
            let entry = match w.lookup(&key, &names).await {
                Ok(entry) => entry,
                Err(reason) => return Ok(fields(json!({ "hit": false, "reason": reason }))),
            };
            Ok(match w.restore(&key, &entry, &root, &names).await {
                Ok(r) => fields(json!({ "hit": true, "files": r.files, "bytes": r.bytes })),
                Err(reason) => fields(json!({ "hit": false, "reason": reason })),
            })
        }
        Op::Put => {
            w.stats.puts += 1;
            let (key, root, names) = target(w, &req)?;
            if names.is_empty() {
                bail!("\"put\" needs \"files\"");
            }
            w.check_push()?;
            let prepared =
                tokio::task::block_in_place(|| w.cache.collect(&root, &key, &names, "worker"))
                    .map_err(larder_client::Error::into_inner)
                    .context("reading the files")?;
            let (files, bytes) = (prepared.entry.outputs.len(), prepared.entry.total_size());
            let stored = w.store(key, prepared).await?;
            let mut answer = fields(json!({ "files": files, "bytes": bytes }));
            match stored {
                Put::Now => answer.insert("stored".into(), Value::Bool(true)),
                Put::Queued => answer.insert("queued".into(), Value::Bool(true)),
                Put::Refused => {
                    answer.insert("stored".into(), Value::Bool(false));
                    answer.insert("refused".into(), Value::Bool(true))
                }
            };
            Ok(answer)
        }
    }
}
