//! Configuration resolution, and where each value came from.
//!
//! Layers, lowest to highest: built-in defaults, `larder.toml`, wafcache's variables
//! (`WAFCACHE`, `WAFCACHE_EVICT_MAX_BYTES`, ...), `LARDER_*` variables, command-line flags.
//! Every layer produces raw strings; each setting is parsed once, from the layer that wins, so
//! an error names exactly the file, variable or flag that holds the bad value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use larder_core::Placement;
use larder_core::entry::DEFAULT_INLINE_LIMIT;
use larder_core::layer::trust::PublicKey;
use larder_core::size::{format_size, parse_size};
use serde_json::Value as J;

/// The config file name looked for in the working directory and its parents.
pub(crate) const CONFIG_FILE_NAME: &str = "larder.toml";

/// The keys of larder.toml's `[policy]` table.
const POLICY_KEYS: &[&str] = &[
    "policy.eviction",
    "policy.eviction_config",
    "policy.admission",
    "policy.admission_config",
    "policy.normalize",
    "policy.normalize_config",
    "policy.trace",
];

/// The keys of larder.toml's `[trust]` table, and the settings they set.
const TRUST_KEYS: &[(&str, &str)] = &[("signing_key", "signing_key"), ("require", "trust_require")];

/// The largest inline limit accepted: past it, entries grow towards their size bound.
const MAX_INLINE_LIMIT: u64 = 1 << 20;

/// One configurable setting: its `larder.toml` key, its `LARDER_*` variable, its wafcache alias,
/// its global flag.
pub(crate) struct Key {
    pub(crate) name: &'static str,
    pub(crate) env: &'static str,
    /// The wafcache variable, and whether it is a presence flag ("set" means true).
    wafcache: Option<(&'static str, bool)>,
    /// A global flag, for settings every command takes.
    pub(crate) flag: Option<Flag>,
    pub(crate) help: &'static str,
}

/// A setting's global flag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag {
    /// As typed: `--store`.
    pub(crate) long: &'static str,
    /// The value's name in `--help`; `None` for a switch (`--no-local` sets `true`).
    pub(crate) value_name: Option<&'static str>,
    /// May be given several times; the values are joined with spaces (a list setting).
    pub(crate) many: bool,
}

impl Flag {
    const fn value(long: &'static str, value_name: &'static str) -> Flag {
        Flag {
            long,
            value_name: Some(value_name),
            many: false,
        }
    }

    const fn switch(long: &'static str) -> Flag {
        Flag {
            long,
            value_name: None,
            many: false,
        }
    }

    const fn many(self) -> Flag {
        Flag { many: true, ..self }
    }
}

/// `Some(...)` of the optional part of a [`settings!`] declaration, or `None`.
macro_rules! optional {
    () => {
        None
    };
    ($($x:tt)+) => {
        Some($($x)+)
    };
}

/// Every setting, declared once: its field in [`Config`] (name and type), default, variable,
/// wafcache alias, global flag, how its raw value is parsed (`fn(&Raw) -> Result<T>`) and shown
/// (`fn(&T) -> (String, JSON)`), and its help. From this come the [`KEYS`] table (file keys,
/// variables, `--help`), the [`Config`] struct, its resolution and the `larder config` rows.
macro_rules! settings {
    ($(
        $name:ident: $ty:ty = $default:expr,
            env $env:literal,
            $(wafcache ($waf:literal, $presence:literal),)?
            $(flag $flag:expr,)?
            parse $parse:expr,
            show $show:expr,
            help $help:literal;
    )*) => {
        /// Every setting, in the order `larder config` shows them.
        const KEYS: &[Key] = &[$(
            Key {
                name: stringify!($name),
                env: $env,
                wafcache: optional!($(($waf, $presence))?),
                flag: optional!($($flag)?),
                help: $help,
            },
        )*];

        /// The resolved configuration.
        #[derive(Debug, Clone)]
        pub(crate) struct Config {
            /// The config file that was read, if any.
            pub(crate) file: Option<PathBuf>,
            $(
                #[doc = $help]
                pub(crate) $name: Setting<$ty>,
            )*
        }

        impl Config {
            /// Parse each setting from the layer that wins for it.
            fn from_layers(file: Option<PathBuf>, raw: &BTreeMap<&'static str, Raw>) -> Result<Config> {
                Ok(Config {
                    file,
                    $($name: setting(raw, stringify!($name), $default, $parse)?,)*
                })
            }

            /// Every setting as (name, shown value, JSON value, source), in [`KEYS`] order.
            pub(crate) fn rows(&self) -> Vec<(&'static str, String, serde_json::Value, &Source)> {
                vec![$({
                    let (shown, json) = ($show)(&self.$name.value);
                    (stringify!($name), shown, json, &self.$name.source)
                },)*]
            }
        }
    };
}

settings! {
    store: Vec<String> = Vec::new(),
        env "LARDER_STORE",
        wafcache ("WAFCACHE", false),
        flag Flag::value("--store", "URL").many(),
        parse |r: &Raw| Ok(store_list(&r.value).iter().map(|s| absolute_store(s, &r.base)).collect()),
        // One store shows as a string, as before tiers; several as a list.
        show |v: &Vec<String>| match &v[..] {
            [one] => (one.clone(), J::from(one.clone())),
            many => (many.join(" "), J::from(many.to_vec())),
        },
        help "where the cache lives: a directory, file://DIR, or a remote store URL; several (fastest first, space-separated in LARDER_STORE, a list in larder.toml, --store again) are tiers: a hit in a slower one is copied into the faster ones";
    no_local: bool = false,
        env "LARDER_NO_LOCAL",
        flag Flag::switch("--no-local"),
        parse |r: &Raw| parse_bool(&r.value),
        show show_bool,
        help "no local cache in front of a remote store (larder.toml: local = false)";
    read_only: bool = false,
        env "LARDER_READ_ONLY",
        flag Flag::switch("--read-only"),
        parse |r: &Raw| parse_bool(&r.value),
        show show_bool,
        help "remote stores are read-only: hits come from them, nothing is stored in them (also ?read-only on one store's URL)";
    max_size: Option<u64> = None,
        env "LARDER_MAX_SIZE",
        wafcache ("WAFCACHE_EVICT_MAX_BYTES", false),
        parse |r: &Raw| parse_opt_size(&r.value),
        show show_size,
        help "trim the cache to this many bytes (10G, 512MiB, none)";
    max_entries: Option<u64> = None,
        env "LARDER_MAX_ENTRIES",
        wafcache ("WAFCACHE_TRIM_MAX_FOLDER", false),
        parse |r: &Raw| parse_opt_count(&r.value),
        show show_count,
        help "trim the cache to this many entries (none: no limit)";
    min_free: Option<u64> = None,
        env "LARDER_MIN_FREE",
        parse |r: &Raw| parse_opt_size(&r.value),
        show show_size,
        help "trim when the cache's disk has less free space than this";
    max_free: Option<u64> = None,
        env "LARDER_MAX_FREE",
        parse |r: &Raw| parse_opt_size(&r.value),
        show show_size,
        help "... until it has this much free (default: min_free)";
    no_push: bool = false,
        env "LARDER_NO_PUSH",
        wafcache ("WAFCACHE_NO_PUSH", true),
        parse |r: &Raw| parse_bool(&r.value),
        show show_bool,
        help "read-only: use hits, never store";
    remote_timeout: Duration = Duration::from_secs(10),
        env "LARDER_REMOTE_TIMEOUT",
        parse |r: &Raw| parse_seconds(&r.value),
        show |v: &Duration| (format!("{} s", v.as_secs_f64()), J::from(v.as_secs_f64())),
        help "how long one request to a remote tier may wait before that tier is skipped for the rest of the command (seconds; whole blob transfers get 60 times as long)";
    link: Placement = Placement::Copy,
        env "LARDER_LINK",
        parse |r: &Raw| parse_link(&r.value),
        show |v: &Placement| {
            let name = match v {
                Placement::Hardlink => "hardlink",
                _ => "copy",
            };
            (name.to_owned(), J::from(name))
        },
        help "how restored files are placed: copy (reflink where possible) or hardlink";
    compression: Compression = Compression::Auto,
        env "LARDER_COMPRESSION",
        parse |r: &Raw| parse_compression(&r.value),
        show |v: &Compression| match v {
            Compression::Level(l) => (v.to_string(), J::from(*l)),
            other => (other.to_string(), J::from(other.to_string())),
        },
        help "blob compression: auto, off, or a zstd level (1-22)";
    inline_limit: u64 = DEFAULT_INLINE_LIMIT,
        env "LARDER_INLINE_LIMIT",
        parse |r: &Raw| parse_inline_limit(&r.value),
        show |v: &u64| (format!("{} ({v} bytes)", format_size(*v)), J::from(*v)),
        help "outputs up to this size are kept inside the entry";
    fsync: bool = false,
        env "LARDER_FSYNC",
        parse |r: &Raw| parse_bool(&r.value),
        show show_bool,
        help "flush cache files to disk before publishing them";
    allow_external_symlinks: bool = false,
        env "LARDER_ALLOW_EXTERNAL_SYMLINKS",
        parse |r: &Raw| parse_bool(&r.value),
        show show_bool,
        help "restore symlink outputs whose target leaves the working directory (off: such an entry is a miss and removed)";
    signing_key: Option<PathBuf> = None,
        env "LARDER_SIGNING_KEY",
        flag Flag::value("--signing-key", "FILE"),
        parse path_value,
        show |v: &Option<PathBuf>| show_path(v, "none (entries are stored unsigned)"),
        help "sign every entry stored with this private key file, from `larder key generate` (larder.toml: [trust] signing_key)";
    trust_require: Vec<PublicKey> = Vec::new(),
        env "LARDER_TRUST_REQUIRE",
        flag Flag::value("--trust-require", "KEY").many(),
        parse |r: &Raw| parse_public_keys(&r.value),
        show |v: &Vec<PublicKey>| {
            let keys: Vec<String> = v.iter().map(PublicKey::to_string).collect();
            match &keys[..] {
                [] => ("none (entries need no signature)".to_owned(), J::Array(Vec::new())),
                _ => (keys.join(" "), J::from(keys)),
            }
        },
        help "take entries from the configured stores only when one of these public keys (ed25519:BASE64, space-separated) signed them; the local cache in front of a remote is not checked; larder serve refuses pushes no such key signed (larder.toml: [trust] require = [...])";
    eviction_policy: Option<PathBuf> = None,
        env "LARDER_EVICTION_POLICY",
        parse path_value,
        show |v: &Option<PathBuf>| show_path(v, "lru (built in)"),
        help "a WebAssembly eviction policy (.wasm) that trims use instead of LRU (larder.toml: [policy] eviction)";
    eviction_config: String = String::new(),
        env "LARDER_EVICTION_CONFIG",
        parse text_value,
        show show_text,
        help "the eviction policy's configuration string (larder.toml: [policy] eviction_config)";
    admission_policy: Option<PathBuf> = None,
        env "LARDER_ADMISSION_POLICY",
        parse path_value,
        show |v: &Option<PathBuf>| show_path(v, "none (admit all)"),
        help "a WebAssembly admission policy (.wasm) asked before storing each entry (larder.toml: [policy] admission)";
    admission_config: String = String::new(),
        env "LARDER_ADMISSION_CONFIG",
        parse text_value,
        show show_text,
        help "the admission policy's configuration string (larder.toml: [policy] admission_config)";
    normalize_policy: Option<PathBuf> = None,
        env "LARDER_NORMALIZE_POLICY",
        parse path_value,
        show |v: &Option<PathBuf>| show_path(v, "none (working directory only)"),
        help "a WebAssembly path normalizer (.wasm) that `larder exec` signs with (larder.toml: [policy] normalize)";
    normalize_config: String = String::new(),
        env "LARDER_NORMALIZE_CONFIG",
        parse text_value,
        show show_text,
        help "the path normalizer's configuration string (larder.toml: [policy] normalize_config)";
    trace: Option<PathBuf> = None,
        env "LARDER_TRACE",
        parse path_value,
        show |v: &Option<PathBuf>| show_path(v, "none"),
        help "record cache accesses into this trace file, for `larder policy simulate` (larder.toml: [policy] trace)";
    stats: bool = false,
        env "LARDER_STATS",
        wafcache ("WAFCACHE_STATS", true),
        parse |r: &Raw| parse_bool(&r.value),
        show show_bool,
        help "print cache statistics when `larder exec` ends";
}

/// The settings with a global flag.
pub(crate) fn global_flags() -> impl Iterator<Item = &'static Key> {
    KEYS.iter().filter(|k| k.flag.is_some())
}

/// The setting called `name` (`inline_limit`), as declared, if there is one.
pub(crate) fn setting_name(name: &str) -> Option<&'static str> {
    KEYS.iter().find(|k| k.name == name).map(|k| k.name)
}

/// The environment-variable part of `larder --help`, generated from [`KEYS`].
pub(crate) fn env_help() -> String {
    let mut s = String::from("Environment:\n");
    s.push_str("  LARDER_CONFIG        the config file (else larder.toml found upwards, else ~/.config/larder/)\n");
    for k in KEYS {
        s.push_str(&format!("  {:<20} {}\n", k.env, k.help));
    }
    s.push_str("  LARDER_LOG           log filter (e.g. debug, larder_fs=trace)\n");
    s.push_str("  LARDER_TOKEN         bearer token for http(s):// stores whose server wants one to push\n");
    s.push_str("  LARDER_CA_FILE       PEM CA certificates to trust for https:// stores\n");
    s.push_str("wafcache's variables are read too, below LARDER_*: ");
    let waf: Vec<String> = KEYS
        .iter()
        .filter_map(|k| k.wafcache.map(|(w, _)| format!("{w} ({})", k.name)))
        .collect();
    s.push_str(&waf.join(", "));
    s.push('.');
    s
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Built in.
    Default,
    /// A `larder.toml`.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A resolved value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting<T> {
    pub(crate) value: T,
    pub(crate) source: Source,
}

/// Blob compression, as configured (mapped onto each store's own setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Auto,
    Off,
    Level(i32),
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Auto => f.write_str("auto"),
            Compression::Off => f.write_str("off"),
            Compression::Level(l) => write!(f, "zstd level {l}"),
        }
    }
}

/// What resolution needs from the outside world (so tests can supply their own).
pub(crate) struct Inputs<'a> {
    /// The working directory.
    pub(crate) cwd: &'a Path,
    /// `--config FILE`.
    pub(crate) config_flag: Option<&'a Path>,
    /// Flags that override settings: (setting name, raw value, flag as typed).
    pub(crate) flags: Vec<(&'static str, String, &'static str)>,
    /// Reads an environment variable.
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

/// A raw value from some layer.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    value: String,
    source: Source,
    /// Relative paths in this value are relative to this directory.
    base: PathBuf,
}

impl Config {
    /// Resolve the configuration from every layer.
    pub(crate) fn resolve(inputs: &Inputs<'_>) -> Result<Config> {
        let env = |name: &str| (inputs.env)(name).filter(|v| !v.is_empty());
        let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();

        // Defaults that need the environment.
        let default_store = default_cache_dir(&env).map(|d| d.display().to_string());
        if let Some(store) = &default_store {
            raw.insert(
                "store",
                Raw {
                    value: store.clone(),
                    source: Source::Default,
                    base: inputs.cwd.to_path_buf(),
                },
            );
        }

        // larder.toml.
        let file = find_config_file(inputs, &env)?;
        if let Some(path) = &file {
            let base = path.parent().unwrap_or(inputs.cwd).to_path_buf();
            for (key, value) in read_config_file(path)? {
                raw.insert(
                    key,
                    Raw {
                        value,
                        source: Source::File(path.clone()),
                        base: base.clone(),
                    },
                );
            }
        }

        // wafcache aliases, then LARDER_* variables.
        for k in KEYS {
            if let Some((var, presence)) = k.wafcache
                && let Some(v) = env(var)
            {
                let value = if presence { "true".to_owned() } else { v };
                raw.insert(
                    k.name,
                    Raw {
                        value,
                        source: Source::Env(var),
                        base: inputs.cwd.to_path_buf(),
                    },
                );
            }
        }
        for k in KEYS {
            if let Some(v) = env(k.env) {
                raw.insert(
                    k.name,
                    Raw {
                        value: v,
                        source: Source::Env(k.env),
                        base: inputs.cwd.to_path_buf(),
                    },
                );
            }
        }

        // Flags.
        for (name, value, flag) in &inputs.flags {
            raw.insert(
                name,
                Raw {
                    value: value.clone(),
                    source: Source::Flag(flag),
                    base: inputs.cwd.to_path_buf(),
                },
            );
        }

        let mut config = Config::from_layers(file, &raw)?;
        if config.store.value.is_empty() {
            bail!(
                "no cache directory: set LARDER_STORE (or pass --store), or set HOME or XDG_CACHE_HOME"
            );
        }
        if let (Some(min), Some(max)) = (config.min_free.value, config.max_free.value)
            && max < min
        {
            bail!(
                "max_free ({}, from {}) is below min_free ({}, from {}): trimming frees space until max_free is reached, so it must be at least min_free",
                format_size(max),
                config.max_free.source,
                format_size(min),
                config.min_free.source
            );
        }
        if config.max_free.value.is_none() && config.min_free.value.is_some() {
            config.max_free = Setting {
                value: config.min_free.value,
                source: Source::Default,
            };
        }
        Ok(config)
    }

    /// Whether any trim budget is configured.
    pub(crate) fn has_budget(&self) -> bool {
        self.max_size.value.is_some()
            || self.max_entries.value.is_some()
            || self.min_free.value.is_some()
    }

    /// The configured trim budget (default lock waiting and no dry run).
    pub(crate) fn trim_options(&self) -> larder_core::TrimOptions {
        let mut opts = larder_core::TrimOptions::default();
        opts.max_bytes = self.max_size.value;
        opts.max_entries = self.max_entries.value;
        opts.min_free_bytes = self.min_free.value;
        opts.max_free_bytes = self.max_free.value;
        opts
    }

    /// The access trace to record into (`trace`), opened for appending, if one is configured.
    ///
    /// # Errors
    /// The trace file cannot be opened.
    #[cfg_attr(not(feature = "fs"), allow(dead_code))] // only the fs store records
    pub(crate) fn trace_log(&self) -> Result<Option<std::sync::Arc<larder_core::trace::TraceLog>>> {
        let Some(path) = &self.trace.value else {
            return Ok(None);
        };
        let log = larder_core::trace::TraceLog::open(path)
            .with_context(|| format!("cannot record the trace (from {})", self.trace.source))?;
        Ok(Some(std::sync::Arc::new(log)))
    }
}

/// Resolve one setting from its winning raw value, or the default.
fn setting<T>(
    raw: &BTreeMap<&'static str, Raw>,
    name: &'static str,
    default: T,
    parse: impl Fn(&Raw) -> Result<T>,
) -> Result<Setting<T>> {
    match raw.get(name) {
        None => Ok(Setting {
            value: default,
            source: Source::Default,
        }),
        Some(r) => {
            let value = parse(r).with_context(|| match &r.source {
                Source::File(p) => format!("invalid `{name}` in {}", p.display()),
                Source::Env(var) => format!("invalid {var}"),
                Source::Flag(flag) => format!("invalid {flag}"),
                Source::Default => format!("invalid default `{name}`"),
            })?;
            Ok(Setting {
                value,
                source: r.source.clone(),
            })
        }
    }
}

/// The stores of a `store` value: one per line where it has several lines (a larder.toml list,
/// `--store` given again), else separated by spaces (`LARDER_STORE`). A word that starts no
/// store — neither a URL (`scheme://`) nor an absolute or `./` path — belongs to the one before
/// it, so a `cmd://` template with spaces stays one store.
fn store_list(value: &str) -> Vec<String> {
    if value.contains('\n') {
        return value
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let starts_a_store = |w: &str| w.contains("://") || w.starts_with('/') || w.starts_with("./");
    let mut out: Vec<String> = Vec::new();
    for word in value.split_whitespace() {
        match out.last_mut() {
            Some(last) if !starts_a_store(word) => {
                last.push(' ');
                last.push_str(word);
            }
            _ => out.push(word.to_owned()),
        }
    }
    out
}

/// A path (made absolute against its layer's directory); `none`/`off` for none.
fn path_value(r: &Raw) -> Result<Option<PathBuf>> {
    Ok((!is_none_word(&r.value)).then(|| r.base.join(&r.value)))
}

fn text_value(r: &Raw) -> Result<String> {
    Ok(r.value.clone())
}

fn show_size(v: &Option<u64>) -> (String, J) {
    match v {
        Some(b) => (format!("{} ({b} bytes)", format_size(*b)), J::from(*b)),
        None => ("none".to_owned(), J::Null),
    }
}

fn show_count(v: &Option<u64>) -> (String, J) {
    match v {
        Some(n) => (n.to_string(), J::from(*n)),
        None => ("none".to_owned(), J::Null),
    }
}

fn show_bool(v: &bool) -> (String, J) {
    (v.to_string(), J::from(*v))
}

fn show_text(v: &str) -> (String, J) {
    (v.to_owned(), J::from(v))
}

fn show_path(v: &Option<PathBuf>, none: &str) -> (String, J) {
    match v {
        Some(p) => (p.display().to_string(), J::from(p.display().to_string())),
        None => (none.to_owned(), J::Null),
    }
}

/// `$XDG_CACHE_HOME/larder`, else `~/.cache/larder`.
pub(crate) fn default_cache_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(x) = env("XDG_CACHE_HOME").map(PathBuf::from)
        && x.is_absolute()
    {
        return Some(x.join("larder"));
    }
    env("HOME").map(|h| PathBuf::from(h).join(".cache").join("larder"))
}

/// The store URL with a plain relative path made absolute against `base`.
fn absolute_store(value: &str, base: &Path) -> String {
    if value.contains("://") {
        if let Some(path) = value.strip_prefix("file://")
            && !path.starts_with('/')
        {
            return base.join(path).display().to_string();
        }
        return value.to_owned();
    }
    base.join(value).display().to_string()
}

/// `--config` / `LARDER_CONFIG` (must exist), else `larder.toml` upwards from the working
/// directory, else `$XDG_CONFIG_HOME/larder/larder.toml`.
fn find_config_file(
    inputs: &Inputs<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<PathBuf>> {
    let explicit = match inputs.config_flag {
        Some(p) => Some((inputs.cwd.join(p), "--config")),
        None => env("LARDER_CONFIG").map(|p| (inputs.cwd.join(p), "LARDER_CONFIG")),
    };
    if let Some((path, from)) = explicit {
        if !path.is_file() {
            bail!(
                "config file {} (from {from}) does not exist or is not a file",
                path.display()
            );
        }
        return Ok(Some(path));
    }
    for dir in inputs.cwd.ancestors() {
        let candidate = dir.join(CONFIG_FILE_NAME);
        if candidate.is_file() {
            return Ok(Some(candidate));
        }
    }
    let config_home = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = config_home {
        let candidate = dir.join("larder").join(CONFIG_FILE_NAME);
        if candidate.is_file() {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

/// Read `larder.toml` into (key, raw value) pairs, rejecting unknown keys.
fn read_config_file(path: &Path) -> Result<Vec<(&'static str, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("cannot parse config file {}", path.display()))?;
    let mut out = Vec::new();
    let mut flat: Vec<(String, toml::Value)> = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            // `[policy]`: eviction = "x.wasm", eviction_config = "...", admission, normalize
            // (each with its _config), trace = "file".
            ("policy", toml::Value::Table(t)) => {
                for (sub, v) in t {
                    let name = match sub.as_str() {
                        "eviction" | "admission" | "normalize" => format!("{sub}_policy"),
                        "eviction_config" | "admission_config" | "normalize_config" | "trace" => {
                            sub.clone()
                        }
                        other => bail!(
                            "unknown key `policy.{other}` in {} (known: {})",
                            path.display(),
                            POLICY_KEYS.join(", ")
                        ),
                    };
                    flat.push((name, v));
                }
            }
            // `[trust]`: signing_key = "FILE", require = ["ed25519:...", ...].
            ("trust", toml::Value::Table(t)) => {
                for (sub, v) in t {
                    let Some((_, name)) = TRUST_KEYS.iter().find(|(k, _)| *k == sub) else {
                        let known: Vec<String> = TRUST_KEYS
                            .iter()
                            .map(|(k, _)| format!("trust.{k}"))
                            .collect();
                        bail!(
                            "unknown key `trust.{sub}` in {} (known: {})",
                            path.display(),
                            known.join(", ")
                        );
                    };
                    flat.push(((*name).to_owned(), v));
                }
            }
            (_, value) => flat.push((key, value)),
        }
    }
    for (key, value) in flat {
        // `local = false` reads better in a file than `no_local = true`.
        let (key, value) = match (key.as_str(), &value) {
            ("local", toml::Value::Boolean(b)) => ("no_local".to_owned(), toml::Value::Boolean(!b)),
            _ => (key, value),
        };
        let Some(k) = KEYS.iter().find(|k| k.name == key) else {
            let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            bail!(
                "unknown key `{key}` in {} (known keys: {})",
                path.display(),
                known.join(", ")
            );
        };
        let raw = match value {
            toml::Value::String(s) => s,
            // A list (`store = ["/fast", "s3://b/p"]`): its strings, space-separated.
            toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => items
                .iter()
                .filter_map(toml::Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => bail!(
                "key `{key}` in {} must be a string, number or boolean, not {}",
                path.display(),
                other.type_str()
            ),
        };
        out.push((k.name, raw));
    }
    Ok(out)
}

fn is_none_word(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "none" | "off" | "unlimited"
    )
}

fn parse_opt_size(s: &str) -> Result<Option<u64>> {
    if is_none_word(s) {
        return Ok(None);
    }
    Ok(Some(parse_size(s)?))
}

fn parse_opt_count(s: &str) -> Result<Option<u64>> {
    if is_none_word(s) {
        return Ok(None);
    }
    s.trim()
        .parse::<u64>()
        .map(Some)
        .map_err(|_| anyhow!("expected a whole number of entries (or none), got {s:?}"))
}

fn parse_seconds(s: &str) -> Result<Duration> {
    let t = s.trim();
    let secs = t.strip_suffix('s').unwrap_or(t).trim();
    secs.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| anyhow!("expected a number of seconds above 0 (e.g. 10 or 2.5), got {s:?}"))
}

fn parse_bool(s: &str) -> Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("expected true or false (also 1/0, yes/no, on/off), got {s:?}"),
    }
}

/// Public keys, separated by spaces, commas or lines.
fn parse_public_keys(s: &str) -> Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    for word in s.split(|c: char| c.is_whitespace() || c == ',') {
        if word.is_empty() || is_none_word(word) {
            continue;
        }
        let key: PublicKey = word.parse()?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

fn parse_link(s: &str) -> Result<Placement> {
    match s.trim().to_ascii_lowercase().as_str() {
        "copy" | "reflink" => Ok(Placement::Copy),
        "hardlink" => Ok(Placement::Hardlink),
        _ => bail!("expected copy or hardlink, got {s:?}"),
    }
}

fn parse_compression(s: &str) -> Result<Compression> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "auto" => return Ok(Compression::Auto),
        "off" | "none" | "no" | "false" => return Ok(Compression::Off),
        "zstd" | "on" | "true" => return Ok(Compression::Level(3)),
        _ => {}
    }
    let level = t.strip_prefix("zstd:").unwrap_or(&t);
    match level.parse::<i32>() {
        Ok(l) if (-7..=22).contains(&l) && l != 0 => Ok(Compression::Level(l)),
        _ => {
            bail!("expected auto, off, or a zstd level from 1 to 22 (e.g. 3 or zstd:19), got {s:?}")
        }
    }
}

fn parse_inline_limit(s: &str) -> Result<u64> {
    let n = parse_size(s)?;
    if n > MAX_INLINE_LIMIT {
        bail!(
            "{} is over the largest inline limit, {}",
            format_size(n),
            format_size(MAX_INLINE_LIMIT)
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        cwd: &Path,
        vars: &[(&str, &str)],
        flags: Vec<(&'static str, String, &'static str)>,
    ) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| map.get(k).cloned();
        Config::resolve(&Inputs {
            cwd,
            config_flag: None,
            flags,
            env: &env,
        })
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let proj = dir.path().join("proj");
        std::fs::create_dir_all(proj.join("sub")).unwrap();
        std::fs::write(
            proj.join("larder.toml"),
            "store = \"cache\"\nmax_size = \"1G\"\nmax_entries = 10\nlink = \"hardlink\"\n",
        )
        .unwrap();
        let home = dir.path().join("home");
        let home = home.to_str().unwrap();
        let cwd = proj.join("sub");

        let c = resolve(&cwd, &[("HOME", home)], vec![]).unwrap();
        assert_eq!(
            c.store.value,
            vec![proj.join("cache").display().to_string()]
        );
        assert!(matches!(c.store.source, Source::File(_)));
        assert_eq!(c.max_size.value, Some(1 << 30));
        assert_eq!(c.link.value, Placement::Hardlink);
        assert!(!c.no_push.value);

        let c = resolve(
            &cwd,
            &[
                ("HOME", home),
                ("WAFCACHE", "/w"),
                ("WAFCACHE_EVICT_MAX_BYTES", "2000"),
                ("WAFCACHE_TRIM_MAX_FOLDER", "5"),
                ("WAFCACHE_NO_PUSH", "0"),
                ("LARDER_MAX_ENTRIES", "7"),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(c.store.value, vec!["/w"]);
        assert_eq!(c.store.source, Source::Env("WAFCACHE"));
        assert_eq!(c.max_size.value, Some(2000));
        assert_eq!(c.max_entries.value, Some(7));
        assert_eq!(c.max_entries.source, Source::Env("LARDER_MAX_ENTRIES"));
        // wafcache treats any non-empty value as "set".
        assert!(c.no_push.value);

        let c = resolve(
            &cwd,
            &[("HOME", home), ("WAFCACHE", "/w"), ("LARDER_STORE", "/l")],
            vec![("store", "/f".into(), "--store")],
        )
        .unwrap();
        assert_eq!(c.store.value, vec!["/f"]);
        assert_eq!(c.store.source, Source::Flag("--store"));
    }

    #[test]
    fn defaults_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve(dir.path(), &[("HOME", "/h")], vec![]).unwrap();
        assert_eq!(c.store.value, vec!["/h/.cache/larder"]);
        let c = resolve(
            dir.path(),
            &[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")],
            vec![],
        )
        .unwrap();
        assert_eq!(c.store.value, vec!["/x/larder"]);
        assert!(!c.has_budget());

        let err = resolve(
            dir.path(),
            &[("HOME", "/h"), ("LARDER_MAX_SIZE", "ten")],
            vec![],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("LARDER_MAX_SIZE"), "{err:#}");

        std::fs::write(dir.path().join("larder.toml"), "max_sise = 3\n").unwrap();
        let err = resolve(dir.path(), &[("HOME", "/h")], vec![]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("max_sise") && msg.contains("larder.toml"),
            "{msg}"
        );
    }

    #[test]
    fn trust_table_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let ci = larder_core::layer::SigningKey::generate()
            .unwrap()
            .public_key();
        let other = larder_core::layer::SigningKey::generate()
            .unwrap()
            .public_key();
        std::fs::write(
            dir.path().join("larder.toml"),
            format!("[trust]\nsigning_key = \"keys/ci.key\"\nrequire = [\"{ci}\", \"{other}\"]\n"),
        )
        .unwrap();
        let c = resolve(dir.path(), &[("HOME", "/h")], vec![]).unwrap();
        assert_eq!(c.signing_key.value, Some(dir.path().join("keys/ci.key")));
        assert_eq!(c.trust_require.value, vec![ci, other]);
        assert!(matches!(c.trust_require.source, Source::File(_)));

        let c = resolve(
            dir.path(),
            &[
                ("HOME", "/h"),
                ("LARDER_TRUST_REQUIRE", &format!("{other}, {other}")),
            ],
            vec![("signing_key", "none".into(), "--signing-key")],
        )
        .unwrap();
        assert_eq!(c.trust_require.value, vec![other]);
        assert_eq!(c.signing_key.value, None);

        let err = resolve(
            dir.path(),
            &[("HOME", "/h"), ("LARDER_TRUST_REQUIRE", "ssh-ed25519 AAAA")],
            vec![],
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("LARDER_TRUST_REQUIRE") && msg.contains("ed25519:BASE64"),
            "{msg}"
        );

        std::fs::write(dir.path().join("larder.toml"), "[trust]\nrequires = []\n").unwrap();
        let err = resolve(dir.path(), &[("HOME", "/h")], vec![]).unwrap_err();
        assert!(format!("{err:#}").contains("trust.requires"), "{err:#}");
    }

    #[test]
    fn policy_table_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("larder.toml"),
            "[policy]\nadmission = \"p/cap.wasm\"\nadmission_config = \"max-bytes=10\"\nnormalize = \"p/prefix.wasm\"\ntrace = \"t.trace\"\n",
        )
        .unwrap();
        let c = resolve(dir.path(), &[("HOME", "/h")], vec![]).unwrap();
        assert_eq!(
            c.admission_policy.value,
            Some(dir.path().join("p/cap.wasm"))
        );
        assert_eq!(c.admission_config.value, "max-bytes=10");
        assert_eq!(
            c.normalize_policy.value,
            Some(dir.path().join("p/prefix.wasm"))
        );
        assert_eq!(c.trace.value, Some(dir.path().join("t.trace")));
        assert!(matches!(c.trace.source, Source::File(_)));

        let c = resolve(
            dir.path(),
            &[
                ("HOME", "/h"),
                ("LARDER_NORMALIZE_POLICY", "none"),
                ("LARDER_TRACE", "/x/y.trace"),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(c.normalize_policy.value, None);
        assert_eq!(
            c.normalize_policy.source,
            Source::Env("LARDER_NORMALIZE_POLICY")
        );
        assert_eq!(c.trace.value, Some(PathBuf::from("/x/y.trace")));

        std::fs::write(dir.path().join("larder.toml"), "[policy]\nadmit = \"x\"\n").unwrap();
        let err = format!(
            "{:#}",
            resolve(dir.path(), &[("HOME", "/h")], vec![]).unwrap_err()
        );
        assert!(
            err.contains("policy.admit") && err.contains("policy.admission"),
            "{err}"
        );
    }

    #[test]
    fn rows_follow_the_key_table() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve(dir.path(), &[("HOME", "/h")], vec![]).unwrap();
        let shown: Vec<&str> = c.rows().iter().map(|r| r.0).collect();
        let keys: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(shown, keys);
    }

    #[test]
    fn store_lists() {
        assert_eq!(store_list("/a s3://b/p"), vec!["/a", "s3://b/p"]);
        assert_eq!(
            store_list("cmd:///r?put=cp %{SRC} %{TGT}&get=cp %{SRC} %{TGT} http://h:1"),
            vec![
                "cmd:///r?put=cp %{SRC} %{TGT}&get=cp %{SRC} %{TGT}",
                "http://h:1"
            ]
        );
        assert_eq!(store_list("a dir\nhttp://h"), vec!["a dir", "http://h"]);
        assert_eq!(store_list("relative"), vec!["relative"]);
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_compression("19").unwrap(), Compression::Level(19));
        assert_eq!(parse_compression("zstd:3").unwrap(), Compression::Level(3));
        assert_eq!(parse_compression("off").unwrap(), Compression::Off);
        assert!(parse_compression("99").is_err());
        assert_eq!(parse_opt_size("none").unwrap(), None);
        assert!(parse_inline_limit("2M").is_err());
        assert!(parse_bool("maybe").is_err());
    }
}
