//! The shared part of the commands that take several names (`start`, `stop`, `restart`,
//! `kill`, `rm` and `inspect` of containers; `network rm` and `network inspect`): go through
//! the names in turn, report each failure, and exit 1 if any failed. Used by `commands` and
//! `networks`, and uses neither.

use std::process::ExitCode;

use crate::client::{enc, Client};
use crate::format;

/// Docker's multi-container commands: print each name that worked, report each failure,
/// and exit 1 if any failed.
pub(crate) async fn each<F, Fut>(containers: &[String], f: F) -> anyhow::Result<ExitCode>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut failed = false;
    for c in containers {
        match f(enc(c)).await {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `inspect` of containers or networks (`kind` = `containers` | `networks`).
pub(crate) async fn inspect_many(
    client: &Client,
    kind: &str,
    fmt: Option<String>,
    containers: &[String],
) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    let mut failed = false;
    for c in containers {
        match client
            .get::<serde_json::Value>(&if kind == "containers" {
                format!("/containers/{}/json", enc(c))
            } else {
                format!("/{kind}/{}", enc(c))
            })
            .await
        {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    match fmt {
        Some(t) => {
            for v in &found {
                println!("{}", format::template(&t, v)?);
            }
        }
        None => println!("{}", format::pretty_json(&found)),
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
