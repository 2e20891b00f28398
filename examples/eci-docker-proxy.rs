//! eci-docker-proxy: the Docker Engine socket with the settings' commandList enforced.
//!
//! ```text
//! cargo run --example eci-docker-proxy -- --listen /run/eci/docker.sock --settings settings.json
//! docker -H unix:///run/eci/docker.sock ps        # passed on to /var/run/docker.sock
//! docker -H unix:///run/eci/docker.sock push app  # refused, if the commandList says so
//! ```
//! It serves until SIGINT or SIGTERM, then removes its socket. Without `--settings` the default settings apply (an empty deny
//! list: every request the classifier knows passes, unknown endpoints are refused).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use eci::docker_proxy::{CreateRuntime, DockerProxy};

#[derive(Parser, Debug)]
#[command(about = "Serve the Docker Engine socket with eci's commandList enforced")]
struct Args {
    /// Where to listen (a Unix socket path; an old socket there is replaced).
    #[arg(long)]
    listen: PathBuf,
    /// The engine's socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    upstream: PathBuf,
    /// The settings document whose dockerSocketMount.commandList applies.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// The runtime (the engine's name for eci-runc) that containers created through the proxy
    /// run with: a create naming another is refused, one naming none gets this one.
    #[arg(long, default_value = "eci")]
    runtime: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    // SIGINT and SIGTERM are taken below, by this thread alone (the proxy's threads inherit the
    // mask), so that the socket is removed on the way out.
    let mut stop = nix::sys::signal::SigSet::empty();
    stop.add(nix::sys::signal::Signal::SIGINT);
    stop.add(nix::sys::signal::Signal::SIGTERM);
    if let Err(err) = stop.thread_block() {
        eprintln!("eci-docker-proxy: blocking signals: {err}");
        return ExitCode::FAILURE;
    }
    let policy = match &args.settings {
        Some(path) => match eci::load_settings(path) {
            Ok(policy) => policy,
            Err(err) => {
                eprintln!("eci-docker-proxy: {err}");
                return ExitCode::FAILURE;
            }
        },
        None => eci::Policy::default(),
    };
    let proxy = match DockerProxy::start(
        &args.listen,
        &args.upstream,
        &policy,
        CreateRuntime::Named(args.runtime.clone()),
    ) {
        Ok(proxy) => proxy,
        Err(err) => {
            eprintln!("eci-docker-proxy: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "eci-docker-proxy: serving {} for {}",
        proxy.path().display(),
        args.upstream.display()
    );
    let signal = stop.wait();
    drop(proxy);
    eprintln!("eci-docker-proxy: stopped ({signal:?})");
    ExitCode::SUCCESS
}
