//! `larder completions SHELL`: a completion script, generated from the same clap definitions
//! as `--help` (global setting flags included).

use anyhow::Result;
use clap_complete::Shell;

use super::EXIT_OK;

const EXAMPLES: &str = "\
Examples:
  larder completions bash > ~/.local/share/bash-completion/completions/larder
  larder completions zsh > ~/.zfunc/_larder     # with fpath+=(~/.zfunc) before compinit
  larder completions fish > ~/.config/fish/completions/larder.fish
  source <(larder completions bash)             # this shell only";

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The shell to complete for
    #[arg(value_enum, value_name = "SHELL")]
    shell: Shell,
}

/// Run `larder completions`.
pub(crate) fn run(args: Args) -> Result<u8> {
    super::print_stdout(&script(args.shell))?;
    Ok(EXIT_OK)
}

/// The completion script for `shell`. Generated into memory: clap_complete panics when a write
/// fails, and stdout may be a closed pipe.
fn script(shell: Shell) -> Vec<u8> {
    let mut command = crate::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "larder", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_completes_subcommands_and_setting_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(script(shell)).expect("a script is UTF-8");
            for word in [
                "exec",
                "stats",
                "completions",
                "store",
                "no-local",
                "read-only",
            ] {
                assert!(script.contains(word), "{shell}: no {word:?} in the script");
            }
        }
        let fish = String::from_utf8(script(Shell::Fish)).expect("UTF-8");
        assert!(fish.contains("-l store"), "{fish}");
        let bash = String::from_utf8(script(Shell::Bash)).expect("UTF-8");
        assert!(bash.contains("--store"), "{bash}");
    }
}
