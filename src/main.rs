use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "wharf", version, about = "A universal artifact repository: Docker/OCI, PyPI and npm")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML configuration file (see config/wharf.toml); WHARF_* variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration (defaults < file < environment), secrets masked.
    Config {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // Docker clients told `--tls-verify=false` first try TLS on plain-HTTP ports; actix logs
        // each such handshake as an unparsable request at error level. That is noise, not news.
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,actix_http::h1::dispatcher=off")))
        .with_target(false)
        // Colour codes only for a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    match cli.command {
        Command::Serve { config } => {
            let cfg = wharf::config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let exit_on_eof = std::env::var("WHARF_EXIT_ON_STDIN_EOF").is_ok_and(|v| v == "1");
            actix_web::rt::System::new().block_on(wharf::run(cfg, exit_on_eof))
        }
        Command::Config { config } => {
            let mut cfg = wharf::config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            for secret in [&mut cfg.admin_password, &mut cfg.s3.secret_access_key] {
                if !secret.is_empty() {
                    *secret = "********".into();
                }
            }
            if let Some((scheme, rest)) = cfg.database_url.split_once("://") {
                if let Some((creds, host)) = rest.rsplit_once('@') {
                    let user = creds.split(':').next().unwrap_or("");
                    cfg.database_url = format!("{scheme}://{user}:********@{host}");
                }
            }
            print!("{}", toml::to_string(&cfg)?);
            Ok(())
        }
    }
}
