//! nftables through libnftables, in-process.
//!
//! Each call hands one script to `nft_run_cmd_from_buffer`, which the kernel applies as a
//! single atomic transaction. Doing this in-process (instead of spawning `nft -f`, as
//! netavark does) saves the fork/exec and the library start-up on every container start:
//! the script is tiny (a few `add element` lines), so what remains is parsing plus one
//! netlink round trip. The context's netlink socket belongs to the network namespace of the
//! thread that created it, so reefd creates it once, in the host namespace.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, CStr, CString};

use crate::KernelError;

#[repr(C)]
struct NftCtx {
    _private: [u8; 0],
}

#[link(name = "nftables")]
extern "C" {
    fn nft_ctx_new(flags: c_uint) -> *mut NftCtx;
    fn nft_ctx_free(ctx: *mut NftCtx);
    fn nft_ctx_buffer_output(ctx: *mut NftCtx) -> c_int;
    fn nft_ctx_get_output_buffer(ctx: *mut NftCtx) -> *const c_char;
    fn nft_ctx_buffer_error(ctx: *mut NftCtx) -> c_int;
    fn nft_ctx_get_error_buffer(ctx: *mut NftCtx) -> *const c_char;
    fn nft_run_cmd_from_buffer(ctx: *mut NftCtx, buf: *const c_char) -> c_int;
}

/// A libnftables context bound to the network namespace it was created in.
pub struct Nft {
    ctx: *mut NftCtx,
}

// SAFETY: the context is only ever used through `&mut self`, so never from two threads at
// once; libnftables keeps no thread-local state tied to the creating thread (its netlink
// socket stays in the namespace it was opened in, whichever thread uses it).
unsafe impl Send for Nft {}
// SAFETY: every method takes `&mut self`; a shared `&Nft` gives access to nothing.
unsafe impl Sync for Nft {}

impl Nft {
    /// A context for the calling thread's network namespace.
    pub fn new() -> Result<Nft, KernelError> {
        // SAFETY: plain constructor; NULL is checked below.
        let ctx = unsafe { nft_ctx_new(0) };
        if ctx.is_null() {
            return Err(KernelError::Invalid {
                op: "nft_ctx_new".into(),
                reason: "libnftables could not create a context".into(),
            });
        }
        // SAFETY: ctx is a valid, exclusively owned context.
        unsafe {
            nft_ctx_buffer_output(ctx);
            nft_ctx_buffer_error(ctx);
        }
        Ok(Nft { ctx })
    }

    /// Apply `script` as one transaction; returns what nft printed. On failure nothing of
    /// the script is applied and the error carries nft's own message.
    pub fn run(&mut self, script: &str) -> Result<String, KernelError> {
        let c = CString::new(script).map_err(|_| KernelError::Invalid {
            op: "nft".into(),
            reason: "script contains a NUL byte".into(),
        })?;
        // SAFETY: ctx is valid and exclusively borrowed; c outlives the call. The returned
        // buffers are owned by ctx and valid until the next call, and we copy them at once.
        let (rc, out, err) = unsafe {
            let rc = nft_run_cmd_from_buffer(self.ctx, c.as_ptr());
            (
                rc,
                buffer_text(nft_ctx_get_output_buffer(self.ctx)),
                buffer_text(nft_ctx_get_error_buffer(self.ctx)),
            )
        };
        if rc != 0 {
            return Err(KernelError::Invalid {
                op: format!("nft -f - <<'EOF'\n{}EOF", script),
                reason: err.trim().to_string(),
            });
        }
        Ok(out)
    }
}

/// Copy a NUL-terminated buffer owned by the context (NULL reads as empty).
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for the duration of the call.
unsafe fn buffer_text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed exactly once.
        unsafe { nft_ctx_free(self.ctx) }
    }
}
