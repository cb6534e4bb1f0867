//! Where reefd keeps files, and writing a container's /etc files.
//!
//! data-root (persistent): `reef.db`, `containers/<id>/{hosts,hostname,resolv.conf,container.log}`.
//! exec-root (runtime, gone at reboot): `netns/<id>` sandboxes, `containers/<id>/` shim state.

use std::io::Write;
use std::path::{Path, PathBuf};

use reef_core::config::DaemonConfig;
use reef_runtime::EtcFiles;

use super::{io_err, Result};

/// The daemon's directories.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Persistent state.
    pub data_root: PathBuf,
    /// Runtime state.
    pub exec_root: PathBuf,
}

impl Paths {
    /// From the configuration.
    pub fn new(cfg: &DaemonConfig) -> Paths {
        Paths {
            data_root: cfg.data_root.clone(),
            exec_root: cfg.exec_root.clone(),
        }
    }

    /// Create the directories and make the sandbox directory a shared mount point.
    pub fn prepare(&self, kernel: &mut dyn reef_kernel::Kernel) -> Result<()> {
        for d in [
            self.data_root.join("containers"),
            self.exec_root.join("containers"),
        ] {
            std::fs::create_dir_all(&d).map_err(io_err(format!("mkdir {}", d.display())))?;
        }
        kernel.prepare_sandbox_dir(&self.netns_dir())?;
        Ok(())
    }

    /// The state database file.
    pub fn db(&self) -> PathBuf {
        self.data_root.join("reef.db")
    }

    /// Directory of sandbox bind mounts.
    pub fn netns_dir(&self) -> PathBuf {
        self.exec_root.join("netns")
    }

    /// A container's sandbox path.
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.netns_dir().join(id)
    }

    /// A container's shim state directory.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("containers").join(id)
    }

    /// A container's persistent directory.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }

    /// A container's log.
    pub fn log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    /// A container's /etc file paths on the host.
    pub fn etc_files(&self, id: &str) -> EtcFiles {
        let d = self.container_dir(id);
        EtcFiles {
            hosts: d.join("hosts"),
            hostname: d.join("hostname"),
            resolv_conf: d.join("resolv.conf"),
        }
    }

    /// Every directory a container has on disk (not its sandbox mount): its persistent one
    /// and its state directory.
    pub fn container_dirs(&self, id: &str) -> [PathBuf; 2] {
        [self.container_dir(id), self.state_dir(id)]
    }
}

/// Write `contents` to `path` through a temp file and rename, so a crash never leaves a
/// half-written file for a container to read.
pub fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let op = || format!("write {}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(io_err(op()))?;
    f.write_all(contents.as_bytes()).map_err(io_err(op()))?;
    std::fs::rename(&tmp, path).map_err(io_err(op()))?;
    Ok(())
}

/// The three rendered files of a container.
pub struct RenderedEtc {
    /// /etc/hosts.
    pub hosts: String,
    /// /etc/hostname.
    pub hostname: String,
    /// /etc/resolv.conf.
    pub resolv_conf: String,
}

/// Write a container's /etc files; the directory is created if needed.
pub fn write_etc(files: &EtcFiles, r: &RenderedEtc) -> Result<()> {
    if let Some(dir) = files.hosts.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("mkdir {}", dir.display())))?;
    }
    write_atomic(&files.hosts, &r.hosts)?;
    write_atomic(&files.hostname, &r.hostname)?;
    write_atomic(&files.resolv_conf, &r.resolv_conf)?;
    Ok(())
}
