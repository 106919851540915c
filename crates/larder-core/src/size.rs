//! Human byte sizes (`10G`, `512MiB`, `1.5T`, `1000000`), as budgets are written in config
//! files, flags and `WAFCACHE_EVICT_MAX_BYTES`.

use crate::error::{Error, Result};

/// Parse a size. Suffixes `K`, `M`, `G`, `T` (optionally followed by `B` or `iB`) are powers of
/// 1024; `KB`-style with a `B` are accepted as the same (build caches are sized in binary units);
/// a bare number is bytes.
///
/// # Errors
/// [`Error::InvalidInput`] explaining the accepted forms.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::invalid(format!(
            "invalid size {s:?}: expected a number of bytes, optionally with K, M, G or T (e.g. 10G, 512MiB)"
        ))
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parse a rate in bytes per second: a size (see [`parse_size`]) with an optional `/s`
/// (`50MiB/s`, `1G`); `off` or zero is `None`.
///
/// # Errors
/// [`Error::InvalidInput`] explaining the accepted forms.
pub fn parse_rate(s: &str) -> Result<Option<u64>> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bytes = parse_size(t.strip_suffix("/s").unwrap_or(t)).map_err(|_| {
        Error::invalid(format!(
            "invalid rate {s:?}: expected bytes per second (e.g. 50MiB/s, 1G) or off"
        ))
    })?;
    Ok((bytes > 0).then_some(bytes))
}

/// Format bytes for people: `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50MiB/s").unwrap(), Some(50 << 20));
        assert_eq!(parse_rate(" 1G ").unwrap(), Some(1 << 30));
        assert_eq!(parse_rate("OFF").unwrap(), None);
        assert_eq!(parse_rate("0/s").unwrap(), None);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10M/min").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10X").is_err());
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(12), "12 B");
    }
}
