//! Trimming a bucket to byte and entry budgets with the configured eviction policy.
//!
//! One trim at a time per prefix, by a lease object (`PREFIX/trim/lock`, created with
//! `If-None-Match: *`, taken over once expired). A trim:
//! 1. lists the entries (and HEADs each for its size, creation time and cost);
//! 2. folds the access records clients left (`PREFIX/access/`) into its index
//!    (`PREFIX/trim/index`: last access and hits per entry, and the blobs each entry names);
//! 3. asks the eviction policy for victims until the budgets hold, and deletes them, each only
//!    if its ETag is still the one listed (an entry re-put meanwhile stays);
//! 4. deletes blobs that no remaining entry names and that are older than the grace period
//!    (1 h by default): a writer stores blobs before its entry, and one that reuses an old blob
//!    refreshes it first, so a blob a concurrent put relies on is never deleted;
//! 5. writes the index, then deletes the records it folded.
//!
//! Entry sizes count their blobs (shared blobs once per entry), so keeping their sum under the
//! byte budget keeps the bucket under it too. `min_free_bytes` does not apply to buckets.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use larder_core::entry::now_ms;
use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru, validate_victims};
use larder_core::store::ProgressFn;
use larder_core::{Digest, Entry, EntryMeta, Error, PutOutcome, Result, TrimOptions, TrimReport};

use crate::backend::{Listed, S3Store};

/// How long a trim's lease lasts; a crashed trimmer's lock is taken over after it.
const LEASE: Duration = Duration::from_secs(15 * 60);

fn lock_key(store: &S3Store) -> String {
    format!("{}trim/lock", store.cfg().prefix)
}

fn index_key(store: &S3Store) -> String {
    format!("{}trim/index", store.cfg().prefix)
}

/// What the trimmer remembers about an entry between trims.
#[derive(Debug, Clone, Default)]
struct Row {
    last_access_ms: u64,
    hits: u64,
    /// The ETag the blob list below belongs to.
    etag: String,
    blobs: Option<Vec<String>>,
}

async fn get_bytes(store: &S3Store, key: &str) -> Result<Option<Bytes>> {
    let what = format!("reading {key}");
    let client = store.small_client().await?;
    let Some(out) = store.get_object(client, key, &what).await? else {
        return Ok(None);
    };
    let body = out.body.collect().await;
    Ok(Some(
        body.map_err(|e| crate::error::body(&what, e))?.into_bytes(),
    ))
}

/// Take the lease: `Ok(false)` when another trim holds it (and we do not wait).
async fn lock(store: &S3Store, wait: bool) -> Result<bool> {
    let key = lock_key(store);
    loop {
        let body = format!(
            "{} {}\n",
            std::process::id(),
            now_ms() + LEASE.as_millis() as u64
        );
        if store.put_small(&key, Bytes::from(body), true, &[]).await? == PutOutcome::Written {
            return Ok(true);
        }
        let held = get_bytes(store, &key).await?;
        let expires = held.as_deref().and_then(|b| {
            String::from_utf8_lossy(b)
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        });
        match expires {
            Some(t) if t > now_ms() => {
                if !wait {
                    return Ok(false);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Expired, unreadable or gone: take it over.
            _ => {
                tracing::warn!("{store}: taking over an expired trim lock");
                store.delete_object(&key).await?;
            }
        }
    }
}

async fn unlock(store: &S3Store) {
    if let Err(e) = store.delete_object(&lock_key(store)).await {
        tracing::warn!("{store}: cannot release the trim lock: {e}");
    }
}

/// Trim `store` to `opts`' budgets.
pub(crate) async fn trim(
    store: &S3Store,
    opts: &TrimOptions,
    progress: Option<ProgressFn>,
) -> Result<TrimReport> {
    if !lock(store, opts.wait_for_lock).await? {
        return Ok(TrimReport {
            skipped_locked: true,
            dry_run: opts.dry_run,
            ..TrimReport::default()
        });
    }
    let result = run(store, opts, progress).await;
    unlock(store).await;
    result
}

fn load_index(bytes: Option<Bytes>) -> HashMap<String, Row> {
    let mut index = HashMap::new();
    let Some(bytes) = bytes else {
        return index;
    };
    for line in String::from_utf8_lossy(&bytes).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            continue;
        }
        let (Ok(last), Ok(hits)) = (f[1].parse(), f[2].parse()) else {
            continue;
        };
        let blobs = (f[4] != "-").then(|| {
            f[4].split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        });
        index.insert(
            f[0].to_owned(),
            Row {
                last_access_ms: last,
                hits,
                etag: f[3].to_owned(),
                blobs,
            },
        );
    }
    index
}

fn save_index(index: &HashMap<String, Row>) -> Bytes {
    let mut out = String::new();
    for (name, r) in index {
        let blobs = match &r.blobs {
            Some(b) => b.join(","),
            None => "-".into(),
        };
        out.push_str(&format!(
            "{name}\t{}\t{}\t{}\t{blobs}\n",
            r.last_access_ms,
            r.hits,
            r.etag.replace(['\t', '\n'], "")
        ));
    }
    Bytes::from(out)
}

fn name_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or_default()
}

/// The policy's victims, or native LRU's if the policy fails or answers nonsense.
fn victims(policy: &dyn EvictionPolicy, c: &Candidates, goal: EvictionGoal) -> Vec<usize> {
    let now = now_ms();
    match policy
        .select_victims(c, goal, now)
        .and_then(|v| validate_victims(policy.name(), &v, c.len()).map(|()| v))
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("eviction policy {}: {e}; using LRU", policy.name());
            Lru.select_victims(c, goal, now).unwrap_or_default()
        }
    }
}

async fn run(
    store: &S3Store,
    opts: &TrimOptions,
    progress: Option<ProgressFn>,
) -> Result<TrimReport> {
    let started = now_ms();
    let concurrency = store.cfg().concurrency;
    let report_progress = |done: u64, total: u64| {
        if let Some(p) = &progress {
            p(done, total);
        }
    };

    // 1. Entries with their metadata.
    let listed: Vec<Listed> = store
        .list_prefix(store.entries_prefix())
        .try_collect()
        .await?;
    let metas: Vec<Option<EntryMeta>> = futures::stream::iter(listed.clone())
        .map(|l| {
            let store = store.clone();
            async move { store.entry_meta(&l).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let live: Vec<(&Listed, EntryMeta)> = listed
        .iter()
        .zip(metas)
        .filter_map(|(l, m)| m.map(|m| (l, m)))
        .collect();

    // 2. Fold the access records into the index.
    let mut index = load_index(get_bytes(store, &index_key(store)).await?);
    let records: Vec<Listed> = store
        .list_prefix(crate::access::prefix(store))
        .try_collect()
        .await?;
    let record_keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    let bodies: Vec<Option<Bytes>> = futures::stream::iter(record_keys.clone())
        .map(|key| {
            let store = store.clone();
            async move { get_bytes(&store, &key).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    for body in bodies.into_iter().flatten() {
        for (name, last, hits) in crate::access::parse(&body) {
            let row = index.entry(name).or_default();
            row.last_access_ms = row.last_access_ms.max(last);
            row.hits += hits;
        }
    }

    // 3. Victims.
    let mut c = Candidates::default();
    for (i, (l, m)) in live.iter().enumerate() {
        let row = index.get(name_of(&l.key));
        let last = row.map_or(0, |r| r.last_access_ms).max(m.last_access_ms);
        let hits = row.map_or(0, |r| r.hits);
        c.push(i as u64, m.size, m.created_ms, last, hits, m.cost_ms);
    }
    let total_bytes: u64 = c.size.iter().sum();
    let total_entries = c.len() as u64;
    let goal = EvictionGoal {
        bytes: opts
            .max_bytes
            .map_or(0, |max| total_bytes.saturating_sub(max)),
        entries: opts
            .max_entries
            .map_or(0, |max| total_entries.saturating_sub(max)),
    };
    let mut chosen = Vec::new();
    if goal.bytes > 0 || goal.entries > 0 {
        let (mut bytes, mut entries) = (0u64, 0u64);
        for v in victims(store.cfg().policy.as_ref(), &c, goal) {
            if bytes >= goal.bytes && entries >= goal.entries {
                break;
            }
            bytes += c.size[v];
            entries += 1;
            chosen.push(v);
        }
    }

    // Delete victims whose entry is still the one listed.
    let mut report = TrimReport {
        dry_run: opts.dry_run,
        ..TrimReport::default()
    };
    let mut evicted: HashSet<usize> = HashSet::new();
    let total = chosen.len() as u64;
    for (n, &v) in chosen.iter().enumerate() {
        let (l, m) = &live[v];
        if !opts.dry_run {
            let now = store.head(&l.key).await?;
            match now {
                Some(h) if h.e_tag().unwrap_or_default() == l.etag => {
                    store.delete_object(&l.key).await?;
                }
                // Re-put since it was listed (or already gone): not ours to evict.
                _ => continue,
            }
        }
        evicted.insert(v);
        report.evicted_entries += 1;
        report.evicted_bytes += m.size;
        report_progress(n as u64 + 1, total);
    }
    report.remaining_entries = total_entries - report.evicted_entries;
    report.remaining_bytes = total_bytes - report.evicted_bytes;
    if opts.dry_run {
        return Ok(report);
    }

    // 4. Blobs no remaining entry names, older than the grace period.
    let remaining: Vec<Listed> = live
        .iter()
        .enumerate()
        .filter(|(i, _)| !evicted.contains(i))
        .map(|(_, (l, _))| (*l).clone())
        .collect();
    let refs: Vec<(String, String, Option<Vec<String>>)> = futures::stream::iter(remaining)
        .map(|l| {
            let cached = index
                .get(name_of(&l.key))
                .filter(|r| r.etag == l.etag)
                .and_then(|r| r.blobs.clone());
            let store = store.clone();
            async move {
                let blobs = match cached {
                    Some(b) => Some(b),
                    None => get_bytes(&store, &l.key).await?.map(|doc| {
                        match Entry::decode(&doc) {
                            Ok(e) => e.blob_digests().iter().map(Digest::to_hex).collect(),
                            // A corrupt entry names nothing (its next read removes it).
                            Err(_) => Vec::new(),
                        }
                    }),
                };
                Ok::<_, Error>((name_of(&l.key).to_owned(), l.etag.clone(), blobs))
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let mut referenced: HashSet<String> = HashSet::new();
    let mut new_index: HashMap<String, Row> = HashMap::new();
    for (name, etag, blobs) in refs {
        let Some(blobs) = blobs else {
            continue; // deleted meanwhile
        };
        referenced.extend(blobs.iter().cloned());
        let old = index.get(&name).cloned().unwrap_or_default();
        new_index.insert(
            name,
            Row {
                last_access_ms: old.last_access_ms,
                hits: old.hits,
                etag,
                blobs: Some(blobs),
            },
        );
    }
    let grace_ms = store.cfg().trim_grace.as_millis() as u64;
    let blobs: Vec<Listed> = store
        .list_prefix(store.blobs_prefix())
        .try_collect()
        .await?;
    let doomed: Vec<String> = blobs
        .iter()
        .filter(|b| !referenced.contains(name_of(&b.key)))
        .filter(|b| b.modified_ms.saturating_add(grace_ms) < started)
        .map(|b| b.key.clone())
        .collect();
    futures::stream::iter(doomed)
        .map(|key| {
            let store = store.clone();
            async move { store.delete_object(&key).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;

    // 5. The index, then the records it now holds.
    store
        .put_small(&index_key(store), save_index(&new_index), false, &[])
        .await?;
    futures::stream::iter(record_keys)
        .map(|key| {
            let store = store.clone();
            async move { store.delete_object(&key).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips() {
        let mut index = HashMap::new();
        index.insert(
            "ab".repeat(32),
            Row {
                last_access_ms: 5,
                hits: 2,
                etag: "\"e\"".into(),
                blobs: Some(vec!["cd".repeat(32), "ef".repeat(32)]),
            },
        );
        index.insert(
            "01".repeat(32),
            Row {
                last_access_ms: 7,
                hits: 0,
                etag: String::new(),
                blobs: None,
            },
        );
        let back = load_index(Some(save_index(&index)));
        assert_eq!(back.len(), 2);
        let r = &back[&"ab".repeat(32)];
        assert_eq!((r.last_access_ms, r.hits, r.etag.as_str()), (5, 2, "\"e\""));
        assert_eq!(r.blobs.as_ref().map(Vec::len), Some(2));
        assert!(back[&"01".repeat(32)].blobs.is_none());
    }
}
