//! reefd's entry point: parse flags, run the daemon, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // reefd re-executes itself as the per-container shim (see reef-runtime).
    if std::env::args().nth(1).as_deref() == Some(reefd::SHIM_ARG) {
        return reef_runtime::shim_main();
    }
    let flags = reefd::flags::Flags::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
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
