//! The container shim as a stand-alone program (reefd re-executes itself instead; tests use
//! this one). Reads a launch spec as JSON on stdin; see `reef_runtime::shim_main`.
fn main() -> std::process::ExitCode {
    reef_runtime::shim_main()
}
