//! Sysctls, read before written (netavark's habit): a value already in place is not
//! rewritten, and the previous value is handed back for undo.
//!
//! `/proc/sys/net` resolves against the network namespace of the thread that opens the
//! file, so these act on the calling thread's namespace; run them through
//! [`Netns::run`](crate::netns::Netns::run) for another one. Keys use the dotted form
//! (`net.ipv4.ip_forward`); a key containing `/` is taken as a path already, which is how
//! interface names with dots (`eth0.100`) are written, as sysctl(8) allows.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::KernelError;

fn path_of(key: &str) -> Result<PathBuf, KernelError> {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    if rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(KernelError::Invalid {
            op: format!("sysctl {key}"),
            reason: "not a sysctl key".into(),
        });
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// The current value, without the trailing newline.
pub fn read(key: &str) -> Result<String, KernelError> {
    let path = path_of(key)?;
    let mut s =
        fs::read_to_string(&path).map_err(|e| KernelError::io(format!("sysctl {key}"), e))?;
    while s.ends_with('\n') {
        s.pop();
    }
    Ok(s)
}

/// Set `key` to `value` unless it has that value already (compared with whitespace
/// normalised, so `32768 60999` matches the kernel's `32768\t60999`). Returns the
/// previous value when it wrote, `None` when nothing changed.
pub fn ensure(key: &str, value: &str) -> Result<Option<String>, KernelError> {
    let current = read(key)?;
    if current.split_whitespace().eq(value.split_whitespace()) {
        return Ok(None);
    }
    let path = path_of(key)?;
    let op = || format!("sysctl -w {key}={value}");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| KernelError::io(op(), e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| KernelError::io(op(), e))?;
    Ok(Some(current))
}

/// `net.ipv6.conf.IFACE.disable_ipv6=1` in the calling thread's namespace, written
/// without reading first (it is on every start's path). A kernel without IPv6 has nothing
/// to turn off.
pub fn disable_ipv6(iface: &str) -> Result<(), KernelError> {
    let key = format!("net/ipv6/conf/{iface}/disable_ipv6");
    let path = path_of(&key)?;
    let op = || format!("sysctl -w {key}=1");
    match fs::OpenOptions::new().write(true).open(&path) {
        Ok(mut f) => f.write_all(b"1").map_err(|e| KernelError::io(op(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !ipv6_present() => Ok(()),
        Err(e) => Err(KernelError::io(op(), e)),
    }
}

fn ipv6_present() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys_paths() {
        assert_eq!(
            path_of("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path_of("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        for bad in ["", "/etc/passwd", "net/../../etc", "net..ipv4", "net/./x"] {
            assert!(path_of(bad).is_err(), "{bad:?}");
        }
    }
}
