//! `reef network ...`: Docker's network commands and output.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;
use reef_api::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnect, NetworkCreate,
    NetworkCreateResponse, NetworkDisconnect, NetworkPruneResponse, NetworkResource,
};

use crate::args::NetworkCommand;
use crate::client::{enc, Client};
use crate::format;
use crate::multi::{each, inspect_many};

fn key_values(list: &[String], flag: &str) -> anyhow::Result<BTreeMap<String, String>> {
    list.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("invalid {flag} {kv:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// Run one `network` subcommand.
pub async fn run(client: &Client, cmd: NetworkCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCommand::Create {
            driver,
            subnet,
            ip_range,
            gateway,
            internal,
            attachable,
            label,
            opt,
            name,
        } => {
            let config = if subnet.is_some() || ip_range.is_some() || gateway.is_some() {
                vec![IpamConfig {
                    subnet: subnet.unwrap_or_default(),
                    ip_range: ip_range.unwrap_or_default(),
                    gateway: gateway.unwrap_or_default(),
                }]
            } else {
                vec![]
            };
            let body = NetworkCreate {
                name,
                driver,
                internal,
                labels: key_values(&label, "--label")?,
                options: key_values(&opt, "-o")?,
                ipam: Ipam {
                    driver: "default".into(),
                    config,
                    options: None,
                },
                check_duplicate: true,
                attachable,
                enable_ipv6: false,
            };
            let r: NetworkCreateResponse = client.post_json("/networks/create", &body).await?;
            println!("{}", r.id);
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Ls { quiet } => {
            let nets: Vec<NetworkResource> = client.get("/networks").await?;
            if quiet {
                for n in &nets {
                    println!("{}", &n.id[..12]);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| {
                    vec![
                        n.id[..12].to_string(),
                        n.name.clone(),
                        n.driver.clone(),
                        n.scope.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                format::table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
            );
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Inspect { format, networks } => {
            inspect_many(client, "networks", format, &networks).await
        }
        NetworkCommand::Rm { networks } => {
            each(&networks, |n| async move {
                client
                    .call(Method::DELETE, &format!("/networks/{n}"), None)
                    .await?
                    .ok()
            })
            .await
        }
        NetworkCommand::Prune { .. } => {
            let r: NetworkPruneResponse = client
                .post_json("/networks/prune", &serde_json::json!({}))
                .await?;
            if !r.networks_deleted.is_empty() {
                println!("Deleted Networks:");
                for n in &r.networks_deleted {
                    println!("{n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Connect {
            ip,
            alias,
            network,
            container,
        } => {
            let body = NetworkConnect {
                container,
                endpoint_config: Some(EndpointSettings {
                    ipam_config: ip.map(|ip| EndpointIpamConfig { ipv4_address: ip }),
                    aliases: alias,
                    ..Default::default()
                }),
            };
            let ans = client
                .call(
                    Method::POST,
                    &format!("/networks/{}/connect", enc(&network)),
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            ans.ok()?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Disconnect {
            force,
            network,
            container,
        } => {
            let body = NetworkDisconnect { container, force };
            let ans = client
                .call(
                    Method::POST,
                    &format!("/networks/{}/disconnect", enc(&network)),
                    Some(serde_json::to_vec(&body)?),
                )
                .await?;
            ans.ok()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
