//! `tally`: parse arguments, run a command, map the result to an exit code
//! (0 ok, 1 ran but found problems, 2 error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tally::config::{self, Overrides};
use tally::{app, cli, telemetry, test_conversion};
use tally_store::{QuarantineFilter, QuarantineStatus, ReplayFilter};

// The ingest path allocates many small strings per event; mimalloc's thread-local free lists
// cut that cost measurably against glibc malloc (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Server-side conversion tracking: collect, deduplicate, deliver, prove."
)]
struct Args {
    /// Config file (TOML); without one tally runs on its built-in defaults.
    #[arg(long, global = true, env = "TALLY_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector and a dispatcher per destination.
    Serve {
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Write a commented starter config.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "tally.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Config commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Apply the store's migrations (as `serve` does on start) and print the schema version.
    Migrate,
    /// Show what happened to one event: merged event, every copy, consent, dedup decisions.
    Ledger {
        /// The event ID.
        event_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List quarantined events.
    Quarantine {
        /// Only this reason code.
        #[arg(long)]
        code: Option<String>,
        /// Only this event name.
        #[arg(long)]
        event: Option<String>,
        /// Include replayed rows.
        #[arg(long)]
        all: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-run quarantined events through the current plan, or re-send stopped deliveries.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["quarantine", "dead_letters"])))]
    Replay {
        /// Replay quarantined events through the current tracking plan.
        #[arg(long)]
        quarantine: bool,
        /// Put dead-lettered and needs-fix deliveries back in the queue (after a fix).
        #[arg(long)]
        dead_letters: bool,
        /// Quarantine: only this reason code.
        #[arg(long, requires = "quarantine")]
        code: Option<String>,
        /// Quarantine: only this event name.
        #[arg(long, requires = "quarantine")]
        event: Option<String>,
        /// Dead letters: only this destination.
        #[arg(long, requires = "dead_letters")]
        destination: Option<String>,
        /// Dead letters: only this event ID.
        #[arg(long, requires = "dead_letters")]
        event_id: Option<String>,
        /// Dead letters: only events from this time (RFC 3339 or Unix time).
        #[arg(long, requires = "dead_letters")]
        since: Option<String>,
        /// Dead letters: only events before this time.
        #[arg(long, requires = "dead_letters")]
        until: Option<String>,
        /// Dead letters: also deliveries withheld for consent.
        #[arg(long, requires = "dead_letters")]
        include_withheld: bool,
    },
    /// Right to erasure: remove a person's events, identifiers and deliveries from the running
    /// tally (through its admin API), found by any identifier and their identify calls. Email
    /// and phone are hashed here; only their SHA-256 is sent. Exit 1 when the search stopped at
    /// its round limit.
    #[command(group(clap::ArgGroup::new("who").required(true).multiple(true)
        .args(["email", "phone", "anonymous_id", "external_id"])))]
    Erase {
        /// Email address (or its SHA-256).
        #[arg(long)]
        email: Option<String>,
        /// Phone number (or its SHA-256, digits form).
        #[arg(long)]
        phone: Option<String>,
        /// Country for a phone number given without its country code.
        #[arg(long, requires = "phone")]
        country: Option<String>,
        /// The browser's anonymous ID.
        #[arg(long)]
        anonymous_id: Option<String>,
        /// The advertiser's customer ID (`external_id`, `userId`).
        #[arg(long, alias = "user-id")]
        external_id: Option<String>,
        /// Count what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// The running tally (default: http://<listen>).
        #[arg(long)]
        url: Option<String>,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// A browser source's tag container, through the running tally's admin API: draft get|set
    /// FILE, diff, publish [--note], versions, show N, rollback N, preview.
    Container(tally::container::ContainerArgs),
    /// Send a browser and a server copy of one synthetic purchase through the running tally in
    /// each destination's test mode and report, per destination, whether it arrived once with
    /// the right value, deduplicated, and under which consent. Exit 1 on any failure.
    TestConversion {
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// The running tally (default: http://<listen> from the config).
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the deliveries.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Report every problem in the config, with the key it concerns.
    Check,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(args: Args) -> anyhow::Result<i32> {
    let mut overrides = Overrides {
        listen: None,
        data_dir: args.data_dir,
    };
    let file = args.config.as_deref();
    let load = |overrides: &Overrides| config::load(file, overrides).map_err(anyhow::Error::new);
    match args.command {
        Command::Init { path, force } => cli::init(&path, force),
        Command::Config {
            command: ConfigCommand::Check,
        } => Ok(cli::config_check(file, &overrides)),
        Command::Serve { listen } => {
            overrides.listen = listen;
            let config = load(&overrides)?;
            telemetry::init(&config.log);
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if config.workers > 0 {
                runtime.worker_threads(config.workers);
            }
            runtime.enable_all().build()?.block_on(app::run(config))?;
            Ok(0)
        }
        Command::Migrate => {
            let config = load(&overrides)?;
            current_thread()?.block_on(cli::migrate(&config))
        }
        Command::Ledger { event_id, json } => {
            let config = load(&overrides)?;
            current_thread()?.block_on(cli::ledger(&config, &event_id, json))
        }
        Command::Quarantine {
            code,
            event,
            all,
            limit,
            json,
        } => {
            let config = load(&overrides)?;
            let filter = QuarantineFilter {
                status: (!all).then_some(QuarantineStatus::Open),
                code,
                event_name: event,
                after_id: None,
                limit: Some(limit),
            };
            current_thread()?.block_on(cli::quarantine(&config, filter, json))
        }
        Command::Replay {
            quarantine,
            dead_letters: _,
            code,
            event,
            destination,
            event_id,
            since,
            until,
            include_withheld,
        } => {
            let config = load(&overrides)?;
            telemetry::init(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            if quarantine {
                let filter = QuarantineFilter {
                    code,
                    event_name: event,
                    ..Default::default()
                };
                return runtime.block_on(cli::replay_quarantine(&config, filter));
            }
            let filter = ReplayFilter {
                destination,
                event_id,
                since: since.as_deref().map(cli::parse_time).transpose()?,
                until: until.as_deref().map(cli::parse_time).transpose()?,
                include_withheld,
            };
            runtime.block_on(cli::replay_dead_letters(&config, filter))
        }
        Command::Erase {
            email,
            phone,
            country,
            anonymous_id,
            external_id,
            dry_run,
            url,
            json,
        } => {
            let config = load(&overrides)?;
            let cmd = tally::erase::EraseCommand {
                url: url.unwrap_or_else(|| format!("http://{}", config.listen)),
                anonymous_id,
                external_id,
                email,
                phone,
                country,
                dry_run,
                json,
            };
            current_thread()?.block_on(tally::erase::run(
                &config,
                &cmd,
                &mut std::io::stdout().lock(),
            ))
        }
        Command::Container(container) => {
            let config = load(&overrides)?;
            current_thread()?.block_on(tally::container::run(
                &config,
                container,
                &mut std::io::stdout().lock(),
            ))
        }
        Command::TestConversion {
            destination,
            url,
            timeout,
        } => {
            let config = load(&overrides)?;
            let test = test_conversion::TestConversion {
                url: url.unwrap_or_else(|| format!("http://{}", config.listen)),
                destination,
                timeout: std::time::Duration::from_secs(timeout),
            };
            current_thread()?.block_on(test_conversion::run(
                &config,
                &test,
                &mut std::io::stdout().lock(),
            ))
        }
    }
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
