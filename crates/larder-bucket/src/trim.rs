//! Trimming a bucket to byte and entry budgets with the configured eviction policy.
//!
//! One trim at a time per prefix, by a lease object (`PREFIX/trim/lock`, created with a
//! create-only write, taken over once expired). A trim:
//! 1. lists the entries (with their size, creation time and cost, from the listing or a
//!    metadata request per entry);
//! 2. folds the access records clients left (`PREFIX/access/`) into its index
//!    (`PREFIX/trim/index`: last access and hits per entry, and the blobs each entry names);
//! 3. asks the eviction policy for victims until the budgets hold, and deletes them, each only
//!    if its version (S3 ETag, GCS generation) is still the one listed (an entry re-put
//!    meanwhile stays);
//! 4. deletes blobs that no remaining entry names and that are older than the grace period
//!    (1 h by default), checked again just before each delete: a writer stores blobs before its
//!    entry, and one that reuses an old blob refreshes it first, so a blob a concurrent put
//!    relies on is never deleted;
//! 5. writes the index, then deletes the records it folded.
//!
//! Entry sizes count their blobs (shared blobs once per entry), so keeping their sum under the
//! byte budget keeps the bucket under it too. `min_free_bytes` does not apply to buckets.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use larder_core::entry::{MAX_ENTRY_BYTES, now_ms};
use larder_core::eviction::{Candidates, EvictionGoal, EvictionPolicy, Lru, validate_victims};
use larder_core::store::ProgressFn;
use larder_core::{Digest, Entry, EntryMeta, Error, PutOutcome, Result, TrimOptions, TrimReport};

use crate::{Bucket, Listed, PutObject};

/// The most a lease object may hold.
const SMALL: u64 = 4096;

/// The most the trim's index or one access record may hold.
const INDEX_LIMIT: u64 = 1 << 30;

/// How long a trim's lease lasts; a crashed trimmer's lock is taken over after it.
const LEASE: Duration = Duration::from_secs(15 * 60);

fn lock_key(store: &dyn Bucket) -> String {
    format!("{}trim/lock", store.prefix())
}

fn index_key(store: &dyn Bucket) -> String {
    format!("{}trim/index", store.prefix())
}

/// What the trimmer remembers about an entry between trims.
#[derive(Debug, Clone, Default)]
struct Row {
    last_access_ms: u64,
    hits: u64,
    /// The version (ETag, generation) the blob list below belongs to.
    version: String,
    blobs: Option<Vec<String>>,
}

/// Take the lease: `Ok(false)` when another trim holds it (and we do not wait).
async fn lock(store: &dyn Bucket, wait: bool) -> Result<bool> {
    let key = lock_key(store);
    loop {
        let body = format!(
            "{} {}\n",
            std::process::id(),
            now_ms() + LEASE.as_millis() as u64
        );
        if store
            .put(&key, Bytes::from(body), PutObject::create_only())
            .await?
            == PutOutcome::Written
        {
            return Ok(true);
        }
        let held = store.get(&key, SMALL).await?;
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
                store.delete(&key).await?;
            }
        }
    }
}

async fn unlock(store: &dyn Bucket) {
    if let Err(e) = store.delete(&lock_key(store)).await {
        tracing::warn!("{store}: cannot release the trim lock: {e}");
    }
}

/// Trim `store` to `opts`' budgets.
///
/// # Errors
/// The bucket's, when listing, reading or deleting fails; the lease is released either way.
pub async fn trim(
    store: &dyn Bucket,
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
                version: f[3].to_owned(),
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
            r.version.replace(['\t', '\n'], "")
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
    store: &dyn Bucket,
    opts: &TrimOptions,
    progress: Option<ProgressFn>,
) -> Result<TrimReport> {
    let started = now_ms();
    let concurrency = store.settings().concurrency.max(1);
    let report_progress = |done: u64, total: u64| {
        if let Some(p) = &progress {
            p(done, total);
        }
    };

    // 1. Entries with their metadata.
    let listed: Vec<Listed> = store.list(&store.entries_prefix()).try_collect().await?;
    let metas: Vec<Option<EntryMeta>> = futures::stream::iter(listed.clone())
        .map(|l| async move { crate::store::entry_meta(store, &l).await })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let live: Vec<(&Listed, EntryMeta)> = listed
        .iter()
        .zip(metas)
        .filter_map(|(l, m)| m.map(|m| (l, m)))
        .collect();

    // 2. Fold the access records into the index.
    let mut index = load_index(store.get(&index_key(store), INDEX_LIMIT).await?);
    let records: Vec<Listed> = store
        .list(&crate::access::prefix(store))
        .try_collect()
        .await?;
    let record_keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    let bodies: Vec<Option<Bytes>> = futures::stream::iter(record_keys.clone())
        .map(|key| async move { store.get(&key, INDEX_LIMIT).await })
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
        for v in victims(store.settings().policy.as_ref(), &c, goal) {
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
        // Re-put since it was listed (or already gone): not ours to evict.
        if !opts.dry_run && !store.delete_if_version(&l.key, &l.version).await? {
            continue;
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
                .filter(|r| r.version == l.version)
                .and_then(|r| r.blobs.clone());
            async move {
                let blobs = match cached {
                    Some(b) => Some(b),
                    None => store.get(&l.key, MAX_ENTRY_BYTES as u64).await?.map(|doc| {
                        match Entry::decode(&doc) {
                            Ok(e) => e.blob_digests().iter().map(Digest::to_hex).collect(),
                            // A corrupt entry names nothing (its next read removes it).
                            Err(_) => Vec::new(),
                        }
                    }),
                };
                Ok::<_, Error>((name_of(&l.key).to_owned(), l.version.clone(), blobs))
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let mut referenced: HashSet<String> = HashSet::new();
    let mut new_index: HashMap<String, Row> = HashMap::new();
    for (name, version, blobs) in refs {
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
                version,
                blobs: Some(blobs),
            },
        );
    }
    let grace_ms = store.settings().trim_grace.as_millis() as u64;
    let cutoff = started.saturating_sub(grace_ms);
    let blobs: Vec<Listed> = store.list(&store.blobs_prefix()).try_collect().await?;
    let doomed: Vec<String> = blobs
        .iter()
        .filter(|b| !referenced.contains(name_of(&b.key)))
        .filter(|b| b.modified_ms.saturating_add(grace_ms) < started)
        .map(|b| b.key.clone())
        .collect();
    futures::stream::iter(doomed)
        .map(|key| async move { store.delete_stale(&key, cutoff).await })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;

    // 5. The index, then the records it now holds.
    store
        .put(
            &index_key(store),
            save_index(&new_index),
            PutObject::default(),
        )
        .await?;
    futures::stream::iter(record_keys)
        .map(|key| async move { store.delete(&key).await })
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
                version: "\"e\"".into(),
                blobs: Some(vec!["cd".repeat(32), "ef".repeat(32)]),
            },
        );
        index.insert(
            "01".repeat(32),
            Row {
                last_access_ms: 7,
                hits: 0,
                version: String::new(),
                blobs: None,
            },
        );
        let back = load_index(Some(save_index(&index)));
        assert_eq!(back.len(), 2);
        let r = &back[&"ab".repeat(32)];
        assert_eq!(
            (r.last_access_ms, r.hits, r.version.as_str()),
            (5, 2, "\"e\"")
        );
        assert_eq!(r.blobs.as_ref().map(Vec::len), Some(2));
        assert!(back[&"01".repeat(32)].blobs.is_none());
    }
}
