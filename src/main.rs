use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

// jemalloc, its background threads on: they hand freed memory back to the system a few seconds
// after a burst (glibc kept it: docs/benchmarks.md, "Memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Copy a node on SQLite, while it runs, into a new directory that a server started on it
    /// (as its data directory) restores: the database and the file blob stores. The secret key
    /// is not put there (a copy of the database alone reveals no secret): `--key-to` copies it
    /// elsewhere.
    Backup {
        /// The directory to create (or an empty one).
        #[arg(long)]
        to: PathBuf,
        /// Where to copy the secret key, to keep apart from the backup (a restore needs it).
        #[arg(long)]
        key_to: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make a local CA (once) and a server certificate for the given names, and say where
    /// docker, pip and npm want the CA: HTTPS without `insecure-registries`.
    Cert {
        /// A DNS name or IP address clients use to reach wharf (repeat for several).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where to write ca.crt, ca.key, server.crt, server.key; default `<data dir>/tls`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity of the server certificate, in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Log lines on standard output, as `[log] format` says (see `wharf::log_output`). Keep the
/// guard until the process ends: it writes out the lines still queued.
fn init_logging(format: wharf::config::LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    // Docker clients told `--tls-verify=false` first try TLS on plain-HTTP ports; actix logs
    // each such handshake as an unparsable request at error level. That is noise, not news.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,actix_http::h1::dispatcher=off"));
    let (output, guard) = wharf::log_output::LogOutput::stdout();
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(output);
    match format {
        // The request's span (its id) goes with every line; `current_span` alone, not the list
        // of every enclosing span, keeps a line short.
        wharf::config::LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).init(),
        // Colour codes only for a terminal: a log file or journald gets plain text.
        wharf::config::LogFormat::Text => fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).init(),
    }
    guard
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let cfg = wharf::config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let _log = init_logging(cfg.log.format);
            let exit_on_eof = std::env::var("WHARF_EXIT_ON_STDIN_EOF").is_ok_and(|v| v == "1");
            actix_web::rt::System::new().block_on(wharf::run(cfg, exit_on_eof))
        }
        Command::Backup { to, key_to, config } => {
            let cfg = wharf::config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let r = wharf::backup::run(&cfg, &to, key_to.as_deref())?;
            println!("Backed up the database and {} blob file(s), {} bytes, into {}", r.blobs, r.bytes, to.display());
            if let Some(db) = &r.database_elsewhere {
                println!("The database was at {}, outside the data directory: restore wharf.db there, or point database_url at the copy", db.display());
            }
            for (name, from, copy) in &r.moved_stores {
                println!("Blob store {name} is at an absolute path ({}): its copy is {}; put it back there to restore", from.display(), copy.display());
            }
            for name in &r.s3_stores {
                println!("Blob store {name} is in S3 and was not copied: copy its bucket after this backup (docs/deploy.md)");
            }
            match &r.key_copy {
                Some(p) => println!("The secret key ({}) is copied to {}: keep it apart from the backup; a restore puts it back", r.secret_key, p.display()),
                None => println!("The secret key is not in the backup: a restore needs it ({}); keep a copy apart, or use --key-to", r.secret_key),
            }
            println!(
                "To restore: stop wharf, put the key back (as secret.key in the data directory, unless the configuration names another file) and start wharf with {} as its data directory (or its content copied into an empty one)",
                to.display()
            );
            Ok(())
        }
        Command::Cert { names, out, days, config } => {
            let _log = init_logging(wharf::config::LogFormat::Text);
            let cfg = wharf::config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            let dir = out.unwrap_or_else(|| cfg.data_dir.join("tls"));
            let g = wharf::tls::generate(&dir, &names, days)?;
            let abs = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
            let (ca, cert, key) = (abs(&g.ca_cert), abs(&g.cert), abs(&g.key));
            let port = cfg.listen.rsplit(':').next().unwrap_or("8081").to_string();
            println!("{} the CA {ca} (its key beside it: keep it private)", if g.ca_created { "Created" } else { "Reused" });
            println!("Wrote the server certificate {cert} and key {key} for {}", names.join(", "));
            println!();
            println!("Serve HTTPS: put this in wharf's configuration file (or set WHARF_TLS__CERT_FILE / WHARF_TLS__KEY_FILE):");
            println!("  [tls]\n  cert_file = \"{cert}\"\n  key_file = \"{key}\"");
            println!();
            println!("Make clients trust the CA (no insecure-registries, no --trusted-host):");
            for n in &names {
                println!("  docker:        sudo mkdir -p /etc/docker/certs.d/{n}:{port} && sudo cp {ca} /etc/docker/certs.d/{n}:{port}/ca.crt");
                println!("  podman/skopeo: sudo mkdir -p /etc/containers/certs.d/{n}:{port} && sudo cp {ca} /etc/containers/certs.d/{n}:{port}/ca.crt");
            }
            println!("                 (the same for each repository port: certs.d/<host>:<docker.httpsPort>)");
            println!("  pip:           pip install --cert {ca} ...   or   export PIP_CERT={ca}");
            println!("  uv:            export SSL_CERT_FILE={ca}");
            println!("  twine:         twine upload --cert {ca} ...");
            println!("  npm:           npm config set cafile {ca}");
            Ok(())
        }
        Command::Config { config } => {
            let mut cfg = wharf::config::Config::load(config.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
            for secret in [&mut cfg.admin_password, &mut cfg.s3.secret_access_key] {
                if !secret.is_empty() {
                    *secret = "********".into();
                }
            }
            for s in &mut cfg.ldap {
                if s.auth_password.is_some() {
                    s.auth_password = Some("********".into());
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
