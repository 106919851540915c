//! `larder man`: the manual page (roff), generated from the same clap definitions as `--help`
//! (global setting flags included); `--dir DIR` writes one page per subcommand.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::EXIT_OK;

const EXAMPLES: &str = "\
Examples:
  larder man | man -l -
  larder man --dir ~/.local/share/man/man1     # larder.1, larder-exec.1, ...; then man larder-exec";

/// Print the manual page (roff), or write one page per subcommand.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Write larder.1 and a page per subcommand (larder-exec.1, ...) into DIR instead of
    /// printing larder.1
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Run `larder man`.
pub(crate) fn run(args: Args) -> Result<u8> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(crate::command(), &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
        }
        None => super::print_stdout(&page()?)?,
    }
    Ok(EXIT_OK)
}

/// larder(1), in roff.
fn page() -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::command())
        .render(&mut out)
        .context("cannot render the manual page")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_subcommands_and_setting_flags() {
        let page = String::from_utf8(page().expect("renders")).expect("roff is UTF-8");
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(page.contains(".TH larder 1"), "{page}");
        for word in ["exec", "completions", "LARDER_STORE", "store", "no\\-local"] {
            assert!(page.contains(word), "no {word:?} in the page");
        }
    }

    #[test]
    fn dir_writes_a_page_per_subcommand() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("man1");
        run(Args {
            dir: Some(out.clone()),
        })
        .expect("writes the pages");
        for page in [
            "larder.1",
            "larder-exec.1",
            "larder-stats.1",
            "larder-man.1",
        ] {
            let text = std::fs::read_to_string(out.join(page)).expect(page);
            assert!(text.contains(".TH"), "{page}: {text}");
        }
        assert!(!out.join("larder-help.1").exists());
    }
}
