//! Access records: how a trim learns when entries were last used, since object stores keep no
//! access times.
//!
//! A hit costs no request: it is counted in memory (storage name → last hit, hits) by an
//! [`AccessLog`]. The counts go to the bucket as one small text object under `PREFIX/access/`
//! when the store flushes (the CLI flushes at the end of every command) or when the batch
//! reaches its bound (10 000 distinct entries by default). Each line is
//! `<storage name> <last hit ms> <hits>`, about 80 bytes. A trim folds the records into its
//! index (`PREFIX/trim/index`) and deletes them. See `docs/remote-trim.md`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use larder_core::entry::now_ms;
use larder_core::{Key, Result};

use crate::{Bucket, PutObject};

/// Where a bucket's access records live: `PREFIX/access/`.
pub fn prefix(bucket: &dyn Bucket) -> String {
    format!("{}access/", bucket.prefix())
}

/// Hits not yet written as an access record.
#[derive(Debug)]
pub struct AccessLog {
    /// Storage name → (last hit ms, hits).
    hits: Mutex<HashMap<String, (u64, u64)>>,
    batch: usize,
}

impl AccessLog {
    /// A log written out once it holds `batch` distinct entries (or at flush).
    pub fn new(batch: usize) -> AccessLog {
        AccessLog {
            hits: Mutex::new(HashMap::new()),
            batch: batch.max(1),
        }
    }

    /// Count a hit on `key`; write the batch to `bucket` when it is full (a failure there is
    /// only logged: the hits stay for the next flush).
    pub async fn record(&self, bucket: &dyn Bucket, key: &Key) {
        let now = now_ms();
        let full = match self.hits.lock() {
            Ok(mut m) => {
                let e = m.entry(key.storage_name()).or_insert((0, 0));
                e.0 = e.0.max(now);
                e.1 += 1;
                m.len() >= self.batch
            }
            Err(_) => false,
        };
        if full && let Err(e) = self.flush(bucket).await {
            tracing::warn!("{bucket}: cannot write access records: {e}");
        }
    }

    /// Write the buffered hits to `bucket` as one access record object. On failure they are
    /// kept for the next flush.
    ///
    /// # Errors
    /// The bucket's, when the record cannot be written.
    pub async fn flush(&self, bucket: &dyn Bucket) -> Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let batch = match self.hits.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return Ok(()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        let mut body = String::with_capacity(batch.len() * 84);
        for (name, (last, hits)) in &batch {
            body.push_str(&format!("{name} {last} {hits}\n"));
        }
        let now = now_ms();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let key = format!(
            "{}{now:013}-{}-{nanos:09}-{}",
            prefix(bucket),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        match bucket
            .put(&key, Bytes::from(body), PutObject::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Ok(mut m) = self.hits.lock() {
                    for (name, (last, hits)) in batch {
                        let e = m.entry(name).or_insert((0, 0));
                        e.0 = e.0.max(last);
                        e.1 += hits;
                    }
                }
                Err(e)
            }
        }
    }
}

/// Parse an access record; malformed lines are skipped.
pub fn parse(body: &[u8]) -> Vec<(String, u64, u64)> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let last = it.next()?.parse().ok()?;
            let hits = it.next()?.parse().ok()?;
            let ok = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| (name.to_owned(), last, hits))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_skip_junk() {
        let name = "ab".repeat(32);
        let body = format!("{name} 1700000000000 3\njunk\n{name} x 1\nshort 1 1\n");
        assert_eq!(parse(body.as_bytes()), vec![(name, 1_700_000_000_000, 3)]);
    }
}
