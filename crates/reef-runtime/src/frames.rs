//! Docker's multiplexed stream format, used for container logs and (without a tty) for attach
//! clients: frames of `[stream u8, 0, 0, 0, length u32 big-endian]` followed by the payload.

/// Stream byte of stdin frames (never written by reef, accepted by the decoder).
pub const STDIN: u8 = 0;
/// Stream byte of stdout frames (and of all tty output).
pub const STDOUT: u8 = 1;
/// Stream byte of stderr frames.
pub const STDERR: u8 = 2;
/// Length of a frame header.
pub const HEADER_LEN: usize = 8;

/// The header of a frame of `len` payload bytes on `stream`.
pub fn header(stream: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("frame payload larger than 4 GiB");
    let l = len.to_be_bytes();
    [stream, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// Append one frame (header and payload) to `out`.
pub fn encode_into(out: &mut Vec<u8>, stream: u8, payload: &[u8]) {
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(stream, payload.len()));
    out.extend_from_slice(payload);
}

/// One frame (header and payload).
pub fn encode(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(&mut out, stream, payload);
    out
}

/// Split `buf` into complete frames; returns them and the number of bytes they cover (a
/// trailing partial frame is left for the caller to complete).
pub fn decode(buf: &[u8]) -> (Vec<(u8, &[u8])>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= HEADER_LEN {
        let h = &buf[pos..pos + HEADER_LEN];
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if buf.len() - pos - HEADER_LEN < len {
            break;
        }
        let start = pos + HEADER_LEN;
        frames.push((h[0], &buf[start..start + len]));
        pos = start + len;
    }
    (frames, pos)
}

/// Concatenated payloads of the complete frames of `buf` on `stream`.
pub fn collect_stream(buf: &[u8], stream: u8) -> Vec<u8> {
    decode(buf)
        .0
        .into_iter()
        .filter(|(s, _)| *s == stream)
        .flat_map(|(_, p)| p.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_docker_layout() {
        assert_eq!(header(STDERR, 0x0102_0304), [2, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(encode(STDOUT, b"hi"), b"\x01\0\0\0\0\0\0\x02hi");
    }

    #[test]
    fn decode_keeps_partial_tail() {
        let mut buf = encode(STDOUT, b"out\n");
        encode_into(&mut buf, STDERR, b"err\n");
        encode_into(&mut buf, STDOUT, b"");
        let whole = buf.len();
        buf.extend_from_slice(&header(STDOUT, 10)[..5]);
        let (frames, used) = decode(&buf);
        assert_eq!(used, whole);
        assert_eq!(
            frames,
            vec![
                (STDOUT, &b"out\n"[..]),
                (STDERR, &b"err\n"[..]),
                (STDOUT, &b""[..])
            ]
        );
        assert_eq!(collect_stream(&buf, STDERR), b"err\n");
    }
}
