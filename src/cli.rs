//! The command line (SPEC 1): clap derive definitions of the subcommands
//! and global flags, and [`execute`], which turns a parsed command line into
//! the one call it stands for. Clap itself prints `--help`/`--version` and
//! exits 2 on usage errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::balance;
use crate::config;
use crate::demo;
use crate::error::Error;
use crate::logging;
use crate::net;
use crate::runtime;

/// The reference of both config formats, printed by `--help-config`. It is
/// `docs/config.md` itself, so the help and the docs never drift apart.
pub const CONFIG_REFERENCE: &str = include_str!("../docs/config.md");

/// The usage line of `--help` and of clap's errors: a CONFIG or a
/// subcommand, never both (see [`Cli`]).
const USAGE: &str = "balancer [OPTIONS] <CONFIG>\n       balancer [OPTIONS] <COMMAND>";

/// balancer: a fast TCP and HTTP load balancer.
///
/// Reads the native TOML config (CONFIG ending in .toml) or the seed
/// project's INI `setup.cfg` (any other name).
//
// A bare CONFIG and a subcommand exclude each other, but not through
// clap's `args_conflicts_with_subcommands`: that setting counts every flag
// before the subcommand as a conflicting argument, global ones included,
// so `balancer --log-format json run x.toml` would be refused although
// SPEC 1 accepts global flags on either side. `execute` refuses the pair
// instead, with exit 2 like clap's own usage errors.
#[derive(Debug, Parser)]
#[command(
    name = "balancer",
    version,
    about,
    override_usage = USAGE,
    arg_required_else_help = true
)]
pub struct Cli {
    /// What to do; without one, CONFIG is run.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Run with this config (same as `balancer run CONFIG`).
    #[arg(value_name = "CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the reference of both config formats and exit.
    #[arg(long)]
    pub help_config: bool,

    /// How much to log (to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// How logs are written.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the balancer with CONFIG.
    Run {
        /// The config file (.toml: native format; otherwise the seed's INI).
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Validate CONFIG and print a summary of what would run (exit 0 or 2).
    Check {
        /// The config file to validate.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Print the TOML equivalent of a seed-style INI file.
    Convert {
        /// The INI (setup.cfg) file to convert.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
    },
    /// Run demo backends and a balancer in front of them, no file needed.
    Demo,
    /// Run one demo HTTP backend.
    Backend(BackendArgs),
}

/// Arguments of `balancer backend`.
#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Name shown in the X-Backend header and the answers (default: the
    /// listen address).
    #[arg(long)]
    pub name: Option<String>,
    /// Only answer clients from this network (repeatable); others get 403.
    #[arg(long = "allow-from", value_name = "CIDR", value_parser = net::addr::cidr)]
    pub allow_from: Vec<IpNet>,
    /// Serve files from this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Delay each answer by this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delay: u64,
}

/// `--log-level` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Lifecycle events (the default).
    Info,
    /// Per-connection events.
    Debug,
    /// Everything.
    Trace,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr as the global flags say.
pub fn init_logging(level: LogLevel, format: LogFormat) -> Option<logging::LogGuard> {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Trace => tracing::Level::TRACE,
    };
    logging::init(level, format == LogFormat::Json)
}

/// Does what the command line asks. Output meant for the user (summaries,
/// TOML, the reference) goes to stdout; logs go to stderr.
pub fn execute(cli: Cli) -> Result<(), Error> {
    if cli.help_config {
        return print_out(CONFIG_REFERENCE);
    }
    if let (Some(_), Some(config)) = (&cli.command, &cli.config) {
        return Err(Error::Usage(format!(
            "\"{}\" cannot be given together with a subcommand: \
             run a config with `balancer CONFIG` or `balancer run CONFIG` (see --help)",
            config.display()
        )));
    }
    // Held until the command is done, so queued log lines are written.
    let _log = init_logging(cli.log_level, cli.log_format);
    match (cli.command, cli.config) {
        (Some(Command::Run { config: path }), _) | (None, Some(path)) => {
            let config = config::load(&path)?;
            runtime::serve(config, path)
        }
        (Some(Command::Check { config: path }), _) => {
            let config = config::load(&path)?;
            let summary = config::summary_with(&config, |listener| {
                balance::table_of(listener).map(|table| table.to_string())
            });
            print_out(&format!("{}: ok\n{summary}", path.display()))
        }
        (Some(Command::Convert { config: path }), _) => {
            let config = config::load(&path)?;
            print_out(&config::to_toml(&config))
        }
        (Some(Command::Demo), _) => demo::run(|instructions| {
            // Best effort: a closed stdout must not stop the demo.
            let _ = print_out(instructions);
        }),
        (Some(Command::Backend(args)), _) => demo::run_backend(
            demo::backend::BackendOptions {
                name: args.name.unwrap_or_else(|| args.listen.to_string()),
                allow_from: args.allow_from,
                dir: args.dir,
                delay: Duration::from_millis(args.delay),
            },
            args.listen,
        ),
        (None, None) => Err(Error::Usage(
            "a CONFIG or a subcommand is needed (see --help)".into(),
        )),
    }
}

/// Writes `text` to stdout. A closed pipe (`balancer convert x | head`) is
/// not an error: the reader has what it wanted.
pub fn print_out(text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Runtime(format!(
            "cannot write to stdout: {}",
            crate::net::io_reason(&e)
        ))),
        _ => Ok(()),
    }
}
