//! The client end of an attach: the terminal (or stdin) to the container, its output back
//! to stdout and stderr (split from Docker's multiplexed frames unless it has a tty).

use std::os::fd::AsFd;

use hyper_util::rt::TokioIo;
use nix::sys::termios::{self, SetArg, Termios};
use reef_api::stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Puts the local terminal in raw mode for a `-t` session and restores it when dropped.
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    /// Raw mode if stdin is a terminal; nothing otherwise.
    pub fn enter() -> RawTerminal {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(orig) = &saved {
            let mut raw = orig.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawTerminal { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(orig) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, orig);
        }
    }
}

/// Copy until the container's output ends. With `stdin_open`, local stdin goes to the
/// container and its end is passed on as a half-close.
pub async fn pump(
    io: TokioIo<hyper::upgrade::Upgraded>,
    tty: bool,
    stdin_open: bool,
) -> anyhow::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let input = stdin_open.then(|| {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let _ = tokio::io::copy(&mut stdin, &mut wr).await;
            let _ = wr.shutdown().await;
        })
    });
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = rd.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        if tty {
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        for (kind, payload) in stream::drain_frames(&mut pending) {
            if kind == stream::STDERR {
                stderr.write_all(&payload).await?;
                stderr.flush().await?;
            } else {
                stdout.write_all(&payload).await?;
                stdout.flush().await?;
            }
        }
    }
    if let Some(t) = input {
        t.abort();
    }
    Ok(())
}

/// Write a stored log (multiplexed frames) to stdout and stderr.
pub fn print_log(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut data = bytes.to_vec();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for (kind, payload) in stream::drain_frames(&mut data) {
        if kind == stream::STDERR {
            err.write_all(&payload)?;
        } else {
            out.write_all(&payload)?;
        }
    }
    out.flush()?;
    err.flush()
}
