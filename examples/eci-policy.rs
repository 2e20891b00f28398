//! eci-policy: checks a settings document and shows what eci would decide with it.
//!
//! ```text
//! cargo run --example eci-policy -- check settings.json
//! cargo run --example eci-policy -- classify POST '/v1.45/images/app/push?tag=1' --settings settings.json
//! ```
//! `check` prints the effective settings, or the error (JSON path, line and column) and exits
//! with status 1. `classify` names the docker command a raw Engine API request belongs to and,
//! with `--settings`, whether a container allowed to mount the Docker socket may send it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eci::eci_policy::docker_api::{classify_target, Reason};
use eci::eci_policy::{document, Policy};

#[derive(Parser, Debug)]
#[command(about = "Check eci settings documents and the decisions they make")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a settings document and print the effective settings.
    Check {
        /// The settings document (JSON).
        file: PathBuf,
    },
    /// Classify a Docker Engine API request into the docker command it belongs to.
    Classify {
        /// The HTTP method (GET, POST, ...).
        method: String,
        /// The request target: a path with an optional query (/v1.45/containers/json?all=1).
        target: String,
        /// Decide the request with this settings document's commandList.
        #[arg(long)]
        settings: Option<PathBuf>,
    },
}

fn load(file: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|err| format!("{}: cannot read it: {err}", file.display()))?;
    document::parse(&text).map_err(|err| format!("{}: {err}", file.display()))
}

fn check(file: &Path) -> Result<(), String> {
    let policy = load(file)?;
    println!("{}: valid\n", file.display());
    print!("{policy}");
    Ok(())
}

fn classify(method: &str, target: &str, settings: Option<&Path>) -> Result<(), String> {
    let Some(api) = classify_target(method, target) else {
        return Err(format!(
            "{method} {target} is not a Docker Engine API endpoint eci knows; it is always refused"
        ));
    };
    let endpoint = api.endpoint();
    let groups: Vec<&str> = endpoint.groups.iter().map(|g| g.name()).collect();
    println!("{endpoint}");
    println!("  commands: {}", endpoint.commands.join(", "));
    println!("  groups: {}", groups.join(", "));
    if let Some(file) = settings {
        let policy = load(file)?;
        let decision = policy.docker_socket.commands.decide_endpoint(api);
        let verdict = if decision.allowed {
            "allowed"
        } else {
            "refused"
        };
        let why = match decision.reason {
            Reason::Listed(rule) => format!("commandList entry {rule}"),
            Reason::NotListed => "no commandList entry names it".to_string(),
            Reason::Negotiation => "version negotiation is never refused".to_string(),
            Reason::Unclassified => "not an endpoint eci knows".to_string(),
        };
        println!("  {verdict}: {why}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Command::Check { file } => check(file),
        Command::Classify {
            method,
            target,
            settings,
        } => classify(method, target, settings.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("eci-policy: {message}");
            ExitCode::FAILURE
        }
    }
}
