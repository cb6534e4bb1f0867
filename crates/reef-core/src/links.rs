//! Legacy `--link NAME:ALIAS`: the environment variables Docker gives the linking container.

use core::net::Ipv4Addr;

use crate::ports::Proto;

/// `ALIAS` as an environment-variable prefix: upper case, anything else than A-Z0-9 as `_`.
fn prefix(alias: &str) -> String {
    alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Docker's link variables: `ALIAS_NAME=/linker/alias`, `ALIAS_PORT=proto://ip:port` (the
/// lowest exposed port), per port `ALIAS_PORT_80_TCP`, `_ADDR`, `_PORT`, `_PROTO`, and the
/// target's own environment as `ALIAS_ENV_KEY=VALUE`.
pub fn link_env(
    alias: &str,
    linker: &str,
    target_ip: Ipv4Addr,
    exposed: &[(u16, Proto)],
    target_env: &[String],
) -> Vec<String> {
    let p = prefix(alias);
    let mut env = vec![format!("{p}_NAME=/{linker}/{alias}")];
    let mut ports = exposed.to_vec();
    ports.sort();
    if let Some((port, proto)) = ports.first() {
        env.push(format!("{p}_PORT={proto}://{target_ip}:{port}"));
    }
    for (port, proto) in &ports {
        let up = proto.to_string().to_ascii_uppercase();
        let k = format!("{p}_PORT_{port}_{up}");
        env.push(format!("{k}={proto}://{target_ip}:{port}"));
        env.push(format!("{k}_ADDR={target_ip}"));
        env.push(format!("{k}_PORT={port}"));
        env.push(format!("{k}_PROTO={proto}"));
    }
    for kv in target_env {
        if let Some((k, v)) = kv.split_once('=') {
            // Docker leaves out the variables every container has.
            if !matches!(k, "HOME" | "HOSTNAME" | "PATH") {
                env.push(format!("{p}_ENV_{k}={v}"));
            }
        }
    }
    env
}

/// Parse `NAME[:ALIAS]`; the alias defaults to the name.
pub fn parse_link(s: &str) -> Result<(String, String), String> {
    let (name, alias) = match s.split_once(':') {
        Some((n, a)) => (n.trim_start_matches('/'), a),
        None => (s.trim_start_matches('/'), s.trim_start_matches('/')),
    };
    if name.is_empty() || alias.is_empty() {
        return Err(format!("invalid --link {s:?}: expected NAME or NAME:ALIAS"));
    }
    Ok((name.to_string(), alias.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_link_variables() {
        let env = link_env(
            "db-1",
            "web",
            "172.17.0.2".parse().unwrap(),
            &[(5432, Proto::Tcp), (80, Proto::Tcp)],
            &["PASSWORD=x".into(), "PATH=/bin".into()],
        );
        assert_eq!(
            env,
            vec![
                "DB_1_NAME=/web/db-1",
                "DB_1_PORT=tcp://172.17.0.2:80",
                "DB_1_PORT_80_TCP=tcp://172.17.0.2:80",
                "DB_1_PORT_80_TCP_ADDR=172.17.0.2",
                "DB_1_PORT_80_TCP_PORT=80",
                "DB_1_PORT_80_TCP_PROTO=tcp",
                "DB_1_PORT_5432_TCP=tcp://172.17.0.2:5432",
                "DB_1_PORT_5432_TCP_ADDR=172.17.0.2",
                "DB_1_PORT_5432_TCP_PORT=5432",
                "DB_1_PORT_5432_TCP_PROTO=tcp",
                "DB_1_ENV_PASSWORD=x",
            ]
        );
    }

    #[test]
    fn link_specs() {
        assert_eq!(parse_link("db:alias"), Ok(("db".into(), "alias".into())));
        assert_eq!(parse_link("/db"), Ok(("db".into(), "db".into())));
        assert!(parse_link("db:").is_err());
        assert!(parse_link("").is_err());
    }
}
