//! Path normalization: rewrite machine-specific paths before they are hashed, so two checkouts
//! in different directories compute the same signature.
//!
//! [`PathNormalizer`] is the seam the WebAssembly policy host plugs into; [`BaseDirs`] is the
//! built-in "relative to these base directories" rule.

use std::fmt::Debug;

use crate::digest::Digest;
use crate::error::Result;

/// Rewrites paths and variable values before hashing.
///
/// # Contract
/// - MUST be deterministic: same input, same output.
/// - [`PathNormalizer::id`] MUST change whenever the rules' behaviour changes; it is mixed into
///   every signature so that different rules never produce false hits.
/// - A normalizer that cannot decide MUST return an error (the caller then treats the task as
///   uncacheable) rather than guess.
pub trait PathNormalizer: Send + Sync + Debug {
    /// A digest identifying these rules (not the machine they run on).
    fn id(&self) -> Digest;
    /// Normalize an input or output path (absolute, or relative to the working directory).
    fn normalize_path(&self, path: &str) -> Result<String>;
    /// Normalize a command argument or the value of environment variable `name` (`""` for args).
    fn normalize_value(&self, name: &str, value: &str) -> Result<String>;
}

/// Replaces each base directory by a placeholder (`@BASE0@`, `@BASE1@`, ...), wherever it
/// appears as a whole path prefix: at the start of a path, or inside an argument such as
/// `-I/home/me/src/include`.
#[derive(Debug, Clone)]
pub struct BaseDirs {
    /// (base without trailing slash, placeholder), longest base first.
    bases: Vec<(String, String)>,
}

impl BaseDirs {
    /// Rules for these base directories, in priority order (the first is `@BASE0@`).
    pub fn new<I, S>(bases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut v: Vec<(String, String)> = bases
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let b = b.as_ref().trim_end_matches('/');
                (b.to_owned(), format!("@BASE{i}@"))
            })
            .filter(|(b, _)| !b.is_empty())
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        BaseDirs { bases: v }
    }

    fn replace(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        'outer: while i < s.len() {
            for (base, ph) in &self.bases {
                if s[i..].starts_with(base.as_str()) {
                    let next = s[i + base.len()..].chars().next();
                    let boundary =
                        next.is_none_or(|c| !(c.is_alphanumeric() || "._-+~@".contains(c)));
                    if boundary {
                        out.push_str(ph);
                        i += base.len();
                        continue 'outer;
                    }
                }
            }
            let c = s[i..].chars().next().unwrap_or('\0');
            out.push(c);
            i += c.len_utf8().max(1);
        }
        out
    }
}

impl PathNormalizer for BaseDirs {
    fn id(&self) -> Digest {
        // The number of bases shapes the placeholders; the base paths themselves must not
        // enter the id, or checkouts in different places would never share entries.
        let mut h = blake3::Hasher::new_derive_key("larder 2026 normalizer basedirs v1");
        h.update(&(self.bases.len() as u64).to_le_bytes());
        Digest::from(h.finalize())
    }

    fn normalize_path(&self, path: &str) -> Result<String> {
        Ok(self.replace(path))
    }

    fn normalize_value(&self, _name: &str, value: &str) -> Result<String> {
        Ok(self.replace(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_replaced_on_whole_path_prefixes() {
        let n = BaseDirs::new(["/home/a/proj", "/home/a"]);
        assert_eq!(
            n.normalize_path("/home/a/proj/src/x.c").unwrap(),
            "@BASE0@/src/x.c"
        );
        assert_eq!(n.normalize_path("/home/a/other").unwrap(), "@BASE1@/other");
        assert_eq!(
            n.normalize_value("", "-I/home/a/proj/include").unwrap(),
            "-I@BASE0@/include"
        );
        // "/home/a/project2" is not below "/home/a/proj".
        assert_eq!(
            n.normalize_path("/home/a/project2/x").unwrap(),
            "@BASE1@/project2/x"
        );
        assert_eq!(
            n.normalize_path("/usr/include/héllo").unwrap(),
            "/usr/include/héllo"
        );
    }

    #[test]
    fn two_checkouts_normalize_alike() {
        let a = BaseDirs::new(["/ci/run1/src"]);
        let b = BaseDirs::new(["/ci/run2/src"]);
        assert_eq!(a.id(), b.id());
        assert_eq!(
            a.normalize_value("CFLAGS", "-g -fdebug-prefix-map=/ci/run1/src=.")
                .unwrap(),
            b.normalize_value("CFLAGS", "-g -fdebug-prefix-map=/ci/run2/src=.")
                .unwrap()
        );
    }
}
