//! reefd's entry point: parse flags, run the daemon, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // reefd re-executes itself as the per-container shim (see reef-runtime).
    if std::env::args().nth(1).as_deref() == Some(reefd::SHIM_ARG) {
        return reef_runtime::shim_main();
    }
    let flags = reefd::flags::Flags::parse();
    // Engine calls run on the blocking pool but take one engine lock, so more than a few
    // threads add nothing but memory: a burst of 50 requests grew 50 threads and RSS from
    // 11 to 38 MiB (bench/scale.py). Every blocking call is short (waits are async).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reefd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(reefd::daemon::run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reefd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
