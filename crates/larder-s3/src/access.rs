//! Access records: how a trim learns when entries were last used, since object stores keep no
//! access times.
//!
//! A hit costs no request: it is counted in memory (storage name → last hit, hits). The counts
//! go to the bucket as one small text object under `PREFIX/access/` when
//! [`Store::flush`](larder_core::Store::flush) runs (the CLI flushes at the end of every command)
//! or when the batch reaches its bound (10 000 distinct entries by default). Each line is
//! `<storage name> <last hit ms> <hits>`, about 80 bytes. A trim folds the records into its index
//! (`PREFIX/trim/index`) and deletes them. See `docs/remote-trim.md`.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use larder_core::entry::now_ms;
use larder_core::{Key, Result};

use crate::backend::S3Store;

pub(crate) fn prefix(store: &S3Store) -> String {
    format!("{}access/", store.cfg().prefix)
}

/// Count a hit on `key`; write the batch out when it is full.
pub(crate) async fn record(store: &S3Store, key: &Key) {
    let now = now_ms();
    let full = match store.inner.accesses.lock() {
        Ok(mut m) => {
            let e = m.entry(key.storage_name()).or_insert((0, 0));
            e.0 = e.0.max(now);
            e.1 += 1;
            m.len() >= store.cfg().access_batch
        }
        Err(_) => false,
    };
    if full && let Err(e) = flush(store).await {
        tracing::warn!("{store}: cannot write access records: {e}");
    }
}

/// Write the buffered hits as one access record object. On failure they are kept for the next
/// flush.
pub(crate) async fn flush(store: &S3Store) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let batch = match store.inner.accesses.lock() {
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
        prefix(store),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    match store.put_small(&key, Bytes::from(body), false, &[]).await {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Ok(mut m) = store.inner.accesses.lock() {
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

/// Parse an access record; malformed lines are skipped.
pub(crate) fn parse(body: &[u8]) -> Vec<(String, u64, u64)> {
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
