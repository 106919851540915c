//! Prefix normalizer: replaces machine-specific directory prefixes by placeholders so that
//! checkouts in different places hash alike: the workspace root (`@WS@`), the target directory
//! (`@TARGET@`), the home directory (`@HOME@`), and any `PREFIX=>PLACEHOLDER` pairs in the
//! config (separated by `;` or newlines). The longest prefix wins; a prefix only matches as a
//! whole path (followed by `/` or the end of a path), at the start of a path or inside an
//! argument (`-I/home/me/x`), like larder's native `BaseDirs` rule.

wit_bindgen::generate!({ path: "../wit", world: "path-normalizer" });

use std::sync::{Mutex, MutexGuard};

use exports::larder::policy::normalize::{Context, Guest};

static RULES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

struct Prefix;

fn is_boundary(next: Option<char>) -> bool {
    next.is_none_or(|c| !(c.is_alphanumeric() || "._-+~@".contains(c)))
}

fn replace(rules: &[(String, String)], s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut rest = s;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '/' || out.is_empty() {
            for (prefix, ph) in rules {
                if let Some(after) = rest.strip_prefix(prefix.as_str())
                    && is_boundary(after.chars().next())
                {
                    out.push_str(ph);
                    rest = after;
                    changed = true;
                    continue 'outer;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

/// The rules `init` set, borrowed for one call (a guest is single-threaded; the lock is only
/// what a `static` needs).
fn rules() -> MutexGuard<'static, Vec<(String, String)>> {
    RULES.lock().unwrap_or_else(|p| p.into_inner())
}

impl Guest for Prefix {
    fn init(config: String, ctx: Context) -> Result<String, String> {
        let mut rules: Vec<(String, String)> = Vec::new();
        let mut add = |prefix: &str, ph: &str| {
            let p = prefix.trim_end_matches('/');
            if !p.is_empty() {
                rules.push((p.to_owned(), ph.to_owned()));
            }
        };
        add(&ctx.workspace_root, "@WS@");
        if let Some(t) = &ctx.target_dir {
            add(t, "@TARGET@");
        }
        if let Some(h) = &ctx.home_dir {
            add(h, "@HOME@");
        }
        for item in config
            .split([';', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some((p, ph)) = item.split_once("=>") else {
                return Err(format!("prefix: {item:?} is not PREFIX=>PLACEHOLDER"));
            };
            add(p.trim(), ph.trim());
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        *RULES
            .lock()
            .map_err(|_| "prefix: poisoned state".to_string())? = rules;
        Ok("prefix".into())
    }

    fn normalize_paths(paths: Vec<String>) -> Vec<Option<String>> {
        let rules = rules();
        paths.iter().map(|p| replace(&rules, p)).collect()
    }

    fn normalize_values(items: Vec<(String, String)>) -> Vec<Option<String>> {
        let rules = rules();
        items.iter().map(|(_, v)| replace(&rules, v)).collect()
    }
}

export!(Prefix);
