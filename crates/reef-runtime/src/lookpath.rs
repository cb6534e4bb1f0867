//! Finding the program to run on the container's PATH, with Go's `exec.LookPath` rules and
//! wording (Docker's error messages come from there).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use nix::errno::Errno;

use crate::error::{io_error_text, StartErrorKind};

/// A program that cannot be run, with Docker's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LookError {
    pub kind: StartErrorKind,
    pub message: String,
}

/// Resolve `name` on `path_var` (a PATH value). Names containing `/` are used as they are.
pub(crate) fn look_path(name: &str, path_var: &str) -> Result<String, LookError> {
    if name.contains('/') {
        return match find_executable(name) {
            Ok(()) => Ok(name.to_string()),
            Err((errno, text)) => Err(LookError {
                kind: StartErrorKind::from_exec_errno(errno),
                message: format!("exec: {name:?}: {text}"),
            }),
        };
    }
    if !name.is_empty() {
        for dir in path_var.split(':') {
            // Unix shell semantics: an empty element means the current directory.
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = format!("{dir}/{name}");
            if find_executable(&candidate).is_ok() {
                return Ok(candidate);
            }
        }
    }
    Err(LookError {
        kind: StartErrorKind::NotFound,
        message: format!("exec: {name:?}: executable file not found in $PATH"),
    })
}

/// Go's `findExecutable`: exists, is not a directory, has an execute bit.
fn find_executable(path: &str) -> Result<(), (Errno, String)> {
    match fs::metadata(path) {
        Err(e) => {
            let errno = e.raw_os_error().map_or(Errno::EIO, Errno::from_raw);
            Err((errno, format!("stat {path}: {}", io_error_text(&e))))
        }
        Ok(m) if !m.is_dir() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err((Errno::EACCES, "permission denied".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_PATH;

    #[test]
    fn finds_sh_on_default_path() {
        let p = look_path("sh", DEFAULT_PATH).unwrap();
        assert!(p.ends_with("/sh"), "{p}");
    }

    #[test]
    fn docker_wording_for_missing_command() {
        let e = look_path("nosuchcmd", DEFAULT_PATH).unwrap_err();
        assert_eq!(e.kind, StartErrorKind::NotFound);
        assert_eq!(
            e.message,
            r#"exec: "nosuchcmd": executable file not found in $PATH"#
        );
        assert_eq!(
            look_path("", DEFAULT_PATH).unwrap_err().kind,
            StartErrorKind::NotFound
        );
    }

    #[test]
    fn docker_wording_for_paths() {
        let e = look_path("/no/such/prog", DEFAULT_PATH).unwrap_err();
        assert_eq!(e.kind, StartErrorKind::NotFound);
        assert_eq!(
            e.message,
            r#"exec: "/no/such/prog": stat /no/such/prog: no such file or directory"#
        );
        let e = look_path("/", DEFAULT_PATH).unwrap_err();
        assert_eq!(e.kind, StartErrorKind::CannotExecute);
        assert_eq!(e.message, r#"exec: "/": permission denied"#);
        assert_eq!(look_path("/bin/sh", "").unwrap(), "/bin/sh");
    }

    #[test]
    fn only_uses_the_given_path() {
        assert!(look_path("sh", "/nonexistent-dir").is_err());
    }
}
