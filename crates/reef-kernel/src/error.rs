//! The kernel layer's error type.
//!
//! Every failure keeps what the kernel said (the errno, and the extended-ack text when the
//! kernel gave one) next to the operation written the way a user would type it
//! (`ip link add reef0 type bridge`), so callers can `match` on the errno for idempotence
//! and users read a message like `ip link add reef0 type bridge: File exists (os error 17)`.

use std::fmt;
use std::io;

/// An error from the kernel layer.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel refused a netlink request.
    #[error("{op}: {}{}", io::Error::from_raw_os_error(*errno), Detail(detail))]
    Netlink {
        /// The request, in `ip` syntax.
        op: String,
        /// The positive errno the kernel answered with.
        errno: i32,
        /// The kernel's extended-ack message, when it sent one.
        detail: Option<String>,
    },
    /// A system call or file operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The underlying error (its `raw_os_error` is the errno).
        #[source]
        source: io::Error,
    },
    /// The kernel's reply could not be decoded.
    #[error("{op}: malformed netlink reply: {reason}")]
    Decode {
        /// The request, in `ip` syntax.
        op: String,
        /// What was wrong with the reply.
        reason: String,
    },
    /// The request was refused before reaching the kernel (e.g. an IPv6 gateway for an
    /// IPv4 route).
    #[error("{op}: {reason}")]
    Invalid {
        /// The request, in `ip` syntax.
        op: String,
        /// Why it was refused.
        reason: String,
    },
    /// A step failed and undoing the steps applied before it failed too.
    #[error("{cause} (rollback also failed: {})", List(undo_errors))]
    Undo {
        /// The error that started the rollback.
        cause: Box<KernelError>,
        /// Every undo op that failed, in the order they were tried.
        undo_errors: Vec<KernelError>,
    },
    /// A failure injected for rollback tests (`Executor::fail_after`).
    #[error("injected failure before step {step}")]
    Injected {
        /// Index of the step that was not executed.
        step: usize,
    },
}

/// A failed plan is its step's error, with the undo errors when there were any.
impl From<reef_core::plan::PlanFailure<KernelError>> for KernelError {
    fn from(f: reef_core::plan::PlanFailure<KernelError>) -> Self {
        if f.undo_errors.is_empty() {
            f.cause
        } else {
            KernelError::Undo {
                cause: Box::new(f.cause),
                undo_errors: f.undo_errors,
            }
        }
    }
}

struct Detail<'a>(&'a Option<String>);

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, " ({d})"),
            None => Ok(()),
        }
    }
}

struct List<'a>(&'a [KernelError]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl KernelError {
    /// The errno behind this error, if the kernel gave one. For `Undo`, the cause's.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { errno, .. } => Some(*errno),
            KernelError::Io { source, .. } => source.raw_os_error(),
            KernelError::Undo { cause, .. } => cause.errno(),
            KernelError::Decode { .. }
            | KernelError::Invalid { .. }
            | KernelError::Injected { .. } => None,
        }
    }

    /// True when the object the request named does not exist: no such device (`ENODEV`),
    /// file (`ENOENT`), route (`ESRCH`) or address (`EADDRNOTAVAIL` from `RTM_DELADDR`).
    pub fn is_not_found(&self) -> bool {
        match self {
            KernelError::Netlink { errno, .. } => matches!(
                *errno,
                libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL
            ),
            KernelError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOENT),
            KernelError::Undo { cause, .. } => cause.is_not_found(),
            _ => false,
        }
    }

    /// True when the object the request would create exists already (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        KernelError::Io {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn errno_io(op: impl Into<String>, errno: nix::errno::Errno) -> Self {
        KernelError::Io {
            op: op.into(),
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_error_reads_like_ip() {
        let e = KernelError::Netlink {
            op: "ip link add reef0 type bridge".into(),
            errno: libc::EEXIST,
            detail: None,
        };
        assert_eq!(
            e.to_string(),
            "ip link add reef0 type bridge: File exists (os error 17)"
        );
        assert!(e.is_exists());
        assert!(!e.is_not_found());
        let e = KernelError::Netlink {
            op: "ip route add default via 10.0.0.1 dev eth0".into(),
            errno: libc::ENETUNREACH,
            detail: Some("Nexthop has invalid gateway".into()),
        };
        assert!(e
            .to_string()
            .ends_with("(os error 101) (Nexthop has invalid gateway)"));
    }

    #[test]
    fn undo_keeps_cause_errno_and_lists_undo_errors() {
        let e = KernelError::Undo {
            cause: Box::new(KernelError::Netlink {
                op: "ip link set x master y".into(),
                errno: libc::ENODEV,
                detail: None,
            }),
            undo_errors: vec![
                KernelError::Injected { step: 1 },
                KernelError::Injected { step: 2 },
            ],
        };
        assert!(e.is_not_found());
        assert_eq!(e.errno(), Some(libc::ENODEV));
        let s = e.to_string();
        assert!(s.starts_with("ip link set x master y: No such device (os error 19)"));
        assert!(s.ends_with(
            "(rollback also failed: injected failure before step 1; injected failure before step 2)"
        ));
    }
}
