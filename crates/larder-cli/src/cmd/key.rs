//! `larder key`: the ed25519 keys of trusted writers.
//!
//! A machine that pushes (CI) signs every entry it stores with a private key
//! (`[trust] signing_key`); readers list the public keys they trust (`[trust] require`) and
//! take only entries those keys signed (see `larder_core::layer::trust`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use larder_core::layer::trust::SigningKey;

use super::{Ctx, EXIT_OK};

const EXAMPLES: &str = "\
Examples:
  larder key generate --out ci-signing.key     # prints ed25519:BASE64, the public key
  larder key public ci-signing.key

Then, on the machines that push (CI), in larder.toml or the environment:
  [trust]
  signing_key = \"/secrets/ci-signing.key\"        # or LARDER_SIGNING_KEY
and on every machine that reads (developers), and on the server to refuse other pushes:
  [trust]
  require = [\"ed25519:...\"]                     # or LARDER_TRUST_REQUIRE, --trust-require

A signature proves who wrote an entry under its key, not that the build was correct.";

/// Create and inspect the ed25519 keys that sign cache entries.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeyCommand {
    /// Write a new private key to a file (mode 0600) and print its public key
    Generate {
        /// Where to write the private key (default: $XDG_CONFIG_HOME/larder/signing.key)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace the file if it exists
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a private key file
    Public {
        /// The private key file
        file: PathBuf,
    },
}

/// Run `larder key`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    match args.command {
        KeyCommand::Generate { out, force } => {
            let path = match out {
                Some(p) => ctx.cwd.join(p),
                None => default_key_path()?,
            };
            let key = SigningKey::generate()?;
            write_private(&path, &key.to_file_text(), force)?;
            super::print_stdout(format!("{}\n", key.public_key()).as_bytes())?;
            ctx.ui.note(format_args!(
                "wrote the private key to {} (keep it secret: it goes in the pushing machine's [trust] signing_key); readers trust it with [trust] require = [\"{}\"]",
                path.display(),
                key.public_key()
            ));
        }
        KeyCommand::Public { file } => {
            let key = SigningKey::read_file(&ctx.cwd.join(file))?;
            super::print_stdout(format!("{}\n", key.public_key()).as_bytes())?;
        }
    }
    Ok(EXIT_OK)
}

/// `$XDG_CONFIG_HOME/larder/signing.key`, else `~/.config/larder/signing.key`.
fn default_key_path() -> Result<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let config_home = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")));
    match config_home {
        Some(dir) => Ok(dir.join("larder").join("signing.key")),
        None => bail!("no place for the key: pass --out FILE (or set HOME)"),
    }
}

/// Write `text` to `path`, readable by its owner only. The file is created with mode 0600, so
/// the key is never readable by others, not even for a moment.
fn write_private(path: &Path, text: &str, force: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).with_context(|| {
        if !force && path.exists() {
            format!(
                "{} exists: pass --force to replace it (readers that trust its public key will stop trusting what is signed with the new one)",
                path.display()
            )
        } else {
            format!("cannot create {}", path.display())
        }
    })?;
    // A replaced file keeps its old mode: tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_are_written_for_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ci.key");
        let key = SigningKey::generate().unwrap();
        write_private(&path, &key.to_file_text(), false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            SigningKey::read_file(&path).unwrap().public_key(),
            key.public_key()
        );

        // Not replaced without --force; replaced with it, and its mode tightened.
        let other = SigningKey::generate().unwrap();
        let err = write_private(&path, &other.to_file_text(), false).unwrap_err();
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, &other.to_file_text(), true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            SigningKey::read_file(&path).unwrap().public_key(),
            other.public_key()
        );
    }
}
