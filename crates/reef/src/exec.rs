//! `reef exec`: run a command inside a running container's network, UTS and mount
//! namespaces. The CLI enters them itself (in the forked child, before exec), so the command
//! gets this terminal directly, as `nsenter` would.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::Context;
use nix::sched::CloneFlags;

/// Run `argv` in the namespaces of process `pid`, with `env` added; returns its exit code.
pub fn exec_in(pid: i64, argv: &[String], env: &[String]) -> anyhow::Result<ExitCode> {
    let open = |kind: &str| {
        File::open(format!("/proc/{pid}/ns/{kind}")).with_context(|| {
            format!("cannot open the container's {kind} namespace (are you root?)")
        })
    };
    let (net, uts, mnt) = (open("net")?, open("uts")?, open("mnt")?);
    let mut cmd = Command::new(&argv[0]);
    // The container's environment only, as `docker exec` gives, not this shell's.
    cmd.args(&argv[1..]).env_clear().env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    for kv in env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // SAFETY: the closure runs in the forked child before exec and only makes the setns(2)
    // and chdir(2) system calls, which are async-signal-safe; the files are opened before
    // the fork so nothing allocates there.
    unsafe {
        cmd.pre_exec(move || {
            for (f, kind) in [
                (&net, CloneFlags::CLONE_NEWNET),
                (&uts, CloneFlags::CLONE_NEWUTS),
                (&mnt, CloneFlags::CLONE_NEWNS),
            ] {
                nix::sched::setns(f.as_fd(), kind).map_err(std::io::Error::from)?;
            }
            nix::unistd::chdir("/").map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let status = cmd
        .status()
        .with_context(|| format!("exec {:?} in the container", argv[0]))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
