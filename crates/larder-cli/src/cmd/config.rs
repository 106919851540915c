//! `larder config`: the resolved configuration, and where each value came from.

use anyhow::Result;

use super::{Ctx, EXIT_OK};

const EXAMPLES: &str = "\
Examples:
  larder config
  LARDER_MAX_SIZE=20G larder --store /tmp/cache config --json

Precedence, lowest to highest: defaults, larder.toml, WAFCACHE_* variables, LARDER_* variables,
flags. larder.toml is the file LARDER_CONFIG (or --config) names, else ./larder.toml found from
the working directory upwards, else $XDG_CONFIG_HOME/larder/larder.toml. Its keys are the
setting names below, e.g.:

  store = \"/var/cache/larder\"
  max_size = \"50G\"
  max_entries = 1000000
  link = \"copy\"";

/// Show the resolved configuration and where each value came from.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
}

/// Run `larder config`.
pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<u8> {
    let config = ctx.config(Vec::new())?;
    let rows = config.rows();
    if args.json {
        let mut settings = serde_json::Map::new();
        for (name, _, value, source) in &rows {
            settings.insert(
                (*name).to_owned(),
                serde_json::json!({ "value": value, "source": source.to_string() }),
            );
        }
        let v = serde_json::json!({
            "config_file": config.file.as_ref().map(|p| p.display().to_string()),
            "settings": settings,
        });
        println!("{v:#}");
    } else {
        match &config.file {
            Some(f) => println!("# config file: {}", f.display()),
            None => println!("# config file: none"),
        }
        for (name, shown, _, source) in &rows {
            println!("{name:<16} {shown:<40} ({source})");
        }
    }
    Ok(EXIT_OK)
}
