//! `reef-lab up N [--etcd M] [--no-reefd] [--cluster] [--reefd-arg ARG]...`: bring a lab
//! up, print how to use it, tear it down on SIGINT/SIGTERM/SIGHUP.
//! `reef-lab sweep`: remove labs left by processes that are gone.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use reef_lab::{Lab, LabConfig};

/// The reef multi-host test bed (network namespaces only; needs root).
#[derive(Debug, Parser)]
#[command(name = "reef-lab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bring a lab of N hosts up and keep it until Ctrl-C or SIGTERM.
    Up {
        /// Number of hosts.
        hosts: usize,
        /// Number of etcd members (0, 1 or 3).
        #[arg(long, default_value_t = 1)]
        etcd: usize,
        /// Do not start reefd on the hosts.
        #[arg(long)]
        no_reefd: bool,
        /// Point every reefd at the lab's etcd (--cluster-store, --cluster-advertise).
        #[arg(long)]
        cluster: bool,
        /// An argument for every reefd (repeatable; {ip}, {nic}, {name}, {ns},
        /// {cluster_store} and {etcd_endpoints} are replaced per host).
        #[arg(long = "reefd-arg", value_name = "ARG", allow_hyphen_values = true)]
        reefd_arg: Vec<String>,
        /// Directory of the built reefd and reef (default: next to this binary).
        #[arg(long, env = "REEF_BIN_DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Remove labs left behind by processes that are gone.
    Sweep,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Sweep => {
            for p in reef_lab::sweep_stale() {
                println!("removed stale lab {p}");
            }
            ExitCode::SUCCESS
        }
        Cmd::Up {
            hosts,
            etcd,
            no_reefd,
            cluster,
            reefd_arg,
            bin_dir,
        } => {
            let mut cfg = LabConfig::new(hosts).etcd(etcd);
            cfg.start_reefd = !no_reefd;
            cfg.new_process_groups = true;
            if let Some(d) = bin_dir {
                cfg.bin_dir = d;
            }
            if cluster {
                cfg = cfg.with_cluster();
            }
            cfg.reefd_args.extend(reefd_arg);
            up(cfg)
        }
    }
}

fn up(cfg: LabConfig) -> ExitCode {
    // Blocked before any thread or child exists; a signal during `Lab::up` stays pending
    // and ends the wait below at once. (Children get an empty mask from std's spawn.)
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("reef-lab: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let lab = match Lab::up(cfg) {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("reef-lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", lab.describe());
    println!(
        "Ctrl-C (or SIGTERM to pid {}) tears it all down.",
        std::process::id()
    );
    let sig = signals.wait();
    eprintln!(
        "reef-lab: {}, tearing down {}",
        sig.map_or("signal".to_string(), |s| s.to_string()),
        lab.prefix()
    );
    match lab.down() {
        Ok(()) => {
            eprintln!("reef-lab: down, nothing left");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reef-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
