//! The `strata` command-line tool (feature `cli`): the argument grammar, exit codes and
//! output conventions, and the dispatch to the commands. `src/bin/strata.rs` only calls
//! [`main`].
//!
//! Local commands open a store directory (and refuse with exit code 4 while another
//! process, such as a server, holds it); with `--endpoint` the key commands talk to a
//! server over its HTTP API instead. `--json` prints machine-readable output.

mod dump;
mod inspect;
mod local;
mod progress;
mod remote;
mod secure;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use dump::{DumpSummary, dump, load};
pub use secure::{Access, read_token_file};

/// Exit codes scripts can rely on.
pub mod exit {
    /// Success (and, for `verify`, a healthy store).
    pub const OK: u8 = 0;
    /// The key (or version) asked for is absent.
    pub const NOT_FOUND: u8 = 1;
    /// The command line is wrong.
    pub const USAGE: u8 = 2;
    /// The store is damaged (`verify` found damage, or an operation met corruption).
    pub const DAMAGED: u8 = 3;
    /// The store is open in another process (a running server?).
    pub const LOCKED: u8 = 4;
    /// Any other failure (I/O, bad input files, ...).
    pub const FAILED: u8 = 5;
    /// No server answered, a server failed (5xx), or the server lacks the feature asked for.
    pub const UNAVAILABLE: u8 = 6;
    /// The server refused the request (4xx other than 404; 409 for a version conflict).
    pub const REJECTED: u8 = 7;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (verify: the store is healthy)
  1  the key or version is absent
  2  bad command line
  3  the store is damaged
  4  the store is open in another process (use --endpoint to go through its server)
  5  any other failure
  6  no server answered, a server error, or a feature the server lacks
  7  the server refused the request (409: version conflict)";

/// Operate strata stores: read and write keys, verify, inspect, back up and restore.
#[derive(Debug, Parser)]
#[command(name = "strata", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Talk to these servers (comma-separated base URLs, e.g. http://127.0.0.1:9001)
    /// instead of opening a local directory; leader hints are followed
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        value_name = "URL[,URL...]"
    )]
    pub endpoint: Vec<String>,
    /// Print JSON (one object, or one object per line for listings)
    #[arg(long, global = true)]
    pub json: bool,
    /// Read KEY and VALUE arguments as hex, and print keys and values as hex
    #[arg(long, global = true)]
    pub hex: bool,
    /// With --endpoint: trust the server certificates this PEM CA file signed (https://)
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// With --endpoint: present this PEM client certificate (with --client-key)
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// With --endpoint: the PEM private key of --client-cert
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// With --endpoint: send the bearer token in FILE's first line (default: the
    /// STRATA_TOKEN environment variable, if set)
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The command
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a store's tables per level, WAL, counters and last sequence number
    Stats {
        /// The store directory
        dir: PathBuf,
    },
    /// Read every file of a closed store and check every checksum and invariant
    /// (exit 0 when healthy, 3 on damage)
    Verify {
        /// The store directory
        dir: PathBuf,
    },
    /// Print the value of a key alone (exit 1 when absent)
    #[command(override_usage = "strata get DIR KEY [--version N]\n       \
                                strata --endpoint URL get KEY [--version N]")]
    Get {
        /// The store directory (or, with --endpoint, the key)
        #[arg(value_name = "DIR")]
        first: String,
        /// The key
        #[arg(value_name = "KEY")]
        key: Option<String>,
        /// Read the value as of this version (sequence number) instead of the newest
        #[arg(long)]
        version: Option<u64>,
    },
    /// Store a value under a key; prints the write's version
    #[command(override_usage = "strata put DIR KEY VALUE\n       \
                                strata --endpoint URL put KEY VALUE [--json-value] [--expect-version N]")]
    Put {
        /// The store directory (or, with --endpoint, the key)
        #[arg(value_name = "DIR")]
        first: String,
        /// The key (or, with --endpoint, the value)
        #[arg(value_name = "KEY")]
        second: String,
        /// The value
        #[arg(value_name = "VALUE")]
        third: Option<String>,
        /// With --endpoint: send VALUE as a JSON value rather than a string
        #[arg(long)]
        json_value: bool,
        /// With --endpoint: refuse (exit 7) unless this is newer than the key's version
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// Delete a key; prints the delete's version (with --endpoint: exit 1 when absent)
    #[command(override_usage = "strata delete DIR KEY\n       strata --endpoint URL delete KEY")]
    Delete {
        /// The store directory (or, with --endpoint, the key)
        #[arg(value_name = "DIR")]
        first: String,
        /// The key
        #[arg(value_name = "KEY")]
        key: Option<String>,
    },
    /// Print the retained versions of a key, newest first (exit 1 when it has none)
    #[command(override_usage = "strata history DIR KEY\n       strata --endpoint URL history KEY")]
    History {
        /// The store directory (or, with --endpoint, the key)
        #[arg(value_name = "DIR")]
        first: String,
        /// The key
        #[arg(value_name = "KEY")]
        key: Option<String>,
    },
    /// Print the live entries of a store in key order, one tab-separated key and value a line
    Scan {
        /// The store directory
        dir: PathBuf,
        /// Only keys starting with this
        #[arg(long, conflicts_with_all = ["start", "end"])]
        prefix: Option<String>,
        /// First key (inclusive)
        #[arg(long)]
        start: Option<String>,
        /// Last key (exclusive)
        #[arg(long)]
        end: Option<String>,
        /// At most this many entries
        #[arg(long)]
        limit: Option<usize>,
        /// Newest key first
        #[arg(long)]
        reverse: bool,
        /// Print keys only
        #[arg(long)]
        keys_only: bool,
    },
    /// With --endpoint: the live entries from START (inclusive) to END (exclusive)
    Range {
        /// First key
        start: String,
        /// End key (exclusive; none = no upper bound)
        end: Option<String>,
        /// At most this many entries
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Flush the memtable and merge every table into one sorted run
    Compact {
        /// The store directory
        dir: PathBuf,
    },
    /// Write a consistent, openable copy of a store into DEST (which must not exist)
    Checkpoint {
        /// The store directory
        dir: PathBuf,
        /// The new directory
        dest: PathBuf,
    },
    /// Write every retained version of every key as JSON lines (see docs/format.md, "Dump")
    Dump {
        /// The store directory
        dir: PathBuf,
        /// Write here instead of standard output
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Build a new store in DIR from a dump, keeping every version number
    Load {
        /// The new store directory (must not exist)
        dir: PathBuf,
        /// Read from here instead of standard input
        #[arg(long, short)]
        input: Option<PathBuf>,
    },
    /// Print every record or block of one file, with offsets and checksums
    Inspect {
        /// What to inspect
        #[command(subcommand)]
        what: InspectWhat,
    },
    /// With --endpoint: download a consistent backup of a running server's store to DEST
    Backup {
        /// The archive file to write (must not exist)
        dest: PathBuf,
    },
    /// Turn a backup archive into a new store directory (a single node, or the first node
    /// of a new cluster)
    Restore {
        /// The archive written by `strata backup`
        backup: PathBuf,
        /// The new store directory (must not exist)
        dir: PathBuf,
    },
    /// With --endpoint: cluster status and membership
    Cluster {
        /// The cluster command
        #[command(subcommand)]
        what: ClusterWhat,
    },
}

/// What `inspect` reads.
#[derive(Debug, Subcommand)]
pub enum InspectWhat {
    /// A WAL segment: header, chunks, and every record's batch
    Wal {
        /// The segment file (NNNNNN.wal)
        file: PathBuf,
        /// Print every operation of every batch
        #[arg(long)]
        ops: bool,
    },
    /// A table: footer, every block with its checksum, properties
    Sst {
        /// The table file (NNNNNN.sst)
        file: PathBuf,
        /// Print every entry of every data block
        #[arg(long)]
        entries: bool,
    },
    /// A manifest: header, chunks, and every edit
    Manifest {
        /// The manifest file (MANIFEST-NNNNNN)
        file: PathBuf,
    },
}

/// Cluster commands.
#[derive(Debug, Subcommand)]
pub enum ClusterWhat {
    /// Every endpoint's health, role, leader and last sequence number
    Status,
    /// The cluster's members (needs the replication feature; not available yet)
    Members,
    /// Add a non-voting member (needs the replication feature; not available yet)
    AddLearner {
        /// The new member's node id
        node_id: u64,
        /// Its address (host:port)
        addr: String,
    },
    /// Make a learner a voter (needs the replication feature; not available yet)
    Promote {
        /// The learner's node id
        node_id: u64,
    },
    /// Remove a member (needs the replication feature; not available yet)
    Remove {
        /// The member's node id
        node_id: u64,
    },
}

/// A failed command: the exit code and what to tell the user.
#[derive(Debug)]
pub struct CliError {
    /// One of the [`exit`] codes.
    pub code: u8,
    /// The message printed on standard error.
    pub message: String,
}

impl CliError {
    /// A failure with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::Error> for CliError {
    fn from(e: crate::Error) -> CliError {
        let code = match &e {
            crate::Error::Corruption { .. } => exit::DAMAGED,
            crate::Error::Locked(_) => exit::LOCKED,
            _ => exit::FAILED,
        };
        let message = match &e {
            crate::Error::Locked(p) => format!(
                "{} is open in another process (a running server?); stop it or use --endpoint",
                p.display()
            ),
            _ => e.to_string(),
        };
        CliError { code, message }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away (`strata scan ... | head`): stop quietly.
            return CliError::new(exit::OK, "");
        }
        CliError::new(exit::FAILED, e.to_string())
    }
}

/// The result of a command: the exit code on success (0, or 1 for "absent").
pub type CliResult = Result<u8, CliError>;

/// Output settings shared by every command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    pub json: bool,
    pub hex: bool,
}

/// Parses the process arguments, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    ExitCode::from(match run(cli) {
        Ok(code) => code,
        Err(e) if e.message.is_empty() => e.code,
        Err(e) => {
            eprintln!("strata: {}", e.message);
            e.code
        }
    })
}

/// Runs a parsed command line; output goes to standard output.
pub fn run(cli: Cli) -> CliResult {
    let style = Style {
        json: cli.json,
        hex: cli.hex,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = if cli.endpoint.is_empty() {
        local::run(cli.command, style, &mut out)
    } else {
        let token = match &cli.token_file {
            Some(path) => Some(read_token_file(path)?),
            None => std::env::var("STRATA_TOKEN")
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        };
        let access = Access {
            cacert: cli.cacert,
            cert: cli.client_cert,
            key: cli.client_key,
            token,
        };
        remote::run(&cli.endpoint, &access, cli.command, style, &mut out)
    };
    out.flush()?;
    result
}

/// Reads a KEY or VALUE argument (hex with `--hex`).
pub(crate) fn arg_bytes(s: &str, style: Style) -> Result<Vec<u8>, CliError> {
    if !style.hex {
        return Ok(s.as_bytes().to_vec());
    }
    let digits = s.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(CliError::new(exit::USAGE, format!("{s:?} is not hex")));
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CliError::new(exit::USAGE, format!("{s:?} is not hex")))
        })
        .collect()
}

/// Bytes for a human: hex with `--hex`; otherwise text, with `\\`, `\t`, `\n`, `\r`,
/// other control characters and invalid UTF-8 escaped as `\xNN`.
pub(crate) fn show(bytes: &[u8], style: Style) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len());
    if style.hex {
        for b in bytes {
            let _ = write!(s, "{b:02x}");
        }
        return s;
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\t' => s.push_str("\\t"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(s, "\\x{:02x}", c as u32);
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// Adds `bytes` to a JSON object as `name` (a string) when it is UTF-8, else as
/// `name_b64` (standard base64).
pub(crate) fn json_bytes(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    bytes: &[u8],
) {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(s) => obj.insert(name.to_string(), s.into()),
        Err(_) => obj.insert(
            format!("{name}_b64"),
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
        ),
    };
}

/// Writes one line of JSON.
pub(crate) fn print_json(out: &mut dyn Write, v: &serde_json::Value) -> Result<(), CliError> {
    writeln!(out, "{v}")?;
    Ok(())
}
