//! etcd's clients send some requests with an HTTP/2 `:authority` that is a whole URL: etcdctl
//! 3.4 dials a member's client URL as given (`endpoint status --cluster` and the like), and
//! grpc-go then sends `:authority: http://127.0.0.1:2379`. etcd's Go server does not look at
//! it; the h2 crate under tonic refuses the request (PROTOCOL_ERROR), and offers no switch to
//! relax that. So the client port reads HTTP/2 through this filter, which finds a literal
//! `:authority` of that form in a request's header block and rewrites it before h2 sees it.
//!
//! The rewrite keeps the value's length (`http://host:port` becomes `httpxx@host:port`, a
//! valid authority whose user part is ignored): HPACK decoders size their dynamic tables by
//! the octets of what they insert, and the client's encoder and h2's decoder must keep
//! agreeing on which entry an index names. Everything else passes through as it came; a
//! connection that does not open with the HTTP/2 preface (HTTP/1.1) is not touched.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_BYTES: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload a server accepts before it says otherwise (h2's default).
const FRAME_PAYLOAD_MAX: usize = 16_384;
/// A header block larger than this is passed on untouched (h2 refuses it anyway).
const HEADER_BLOCK_MAX: usize = 1 << 20;

/// Where the filter is in the byte stream.
#[derive(Debug)]
enum State {
    /// Reading the first bytes: the preface, or not HTTP/2.
    Start,
    /// Not HTTP/2: bytes pass through.
    Passthrough,
    /// At a frame boundary.
    FrameHeader,
    /// In the payload of a frame that passes through: bytes left.
    Payload(usize),
    /// Collecting a header block: the HEADERS frame's header, its priority fields, and the
    /// fragments so far (padding dropped).
    HeaderBlock { header: [u8; FRAME_HEADER_BYTES], priority: Option<[u8; 5]>, block: Vec<u8> },
}

/// A reader that rewrites URL-shaped `:authority` values of HTTP/2 requests (see the module
/// docs); writes pass through.
pub struct AuthorityFix<S> {
    inner: S,
    state: State,
    /// Bytes read from `inner` and not yet processed.
    input: Vec<u8>,
    /// Processed bytes not yet handed to the reader.
    output: Vec<u8>,
    output_at: usize,
}

impl<S> AuthorityFix<S> {
    /// Filters `inner`.
    pub fn new(inner: S) -> Self {
        AuthorityFix { inner, state: State::Start, input: Vec::new(), output: Vec::new(), output_at: 0 }
    }

    /// The filtered stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves processed bytes from `input` to `output` as far as they go.
    fn process(&mut self) {
        loop {
            match &mut self.state {
                State::Passthrough => {
                    self.output.append(&mut self.input);
                    return;
                }
                State::Start => {
                    let known = self.input.len().min(PREFACE.len());
                    if self.input[..known] != PREFACE[..known] {
                        self.state = State::Passthrough;
                        continue;
                    }
                    if known < PREFACE.len() {
                        return;
                    }
                    self.output.extend(self.input.drain(..PREFACE.len()));
                    self.state = State::FrameHeader;
                }
                State::FrameHeader => {
                    if self.input.len() < FRAME_HEADER_BYTES {
                        return;
                    }
                    let header: [u8; FRAME_HEADER_BYTES] =
                        self.input[..FRAME_HEADER_BYTES].try_into().expect("nine bytes");
                    let length = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
                    if header[3] != HEADERS || length > HEADER_BLOCK_MAX {
                        self.output.extend(self.input.drain(..FRAME_HEADER_BYTES));
                        self.state = State::Payload(length);
                        continue;
                    }
                    if self.input.len() < FRAME_HEADER_BYTES + length {
                        return;
                    }
                    let payload: Vec<u8> =
                        self.input.drain(..FRAME_HEADER_BYTES + length).skip(FRAME_HEADER_BYTES).collect();
                    match split_headers_payload(header[4], &payload) {
                        Some((priority, fragment)) => {
                            self.state = State::HeaderBlock { header, priority, block: fragment.to_vec() };
                            if header[4] & END_HEADERS != 0 {
                                self.finish_header_block();
                            }
                        }
                        None => {
                            // Malformed: h2 will say so; pass it on as it came.
                            self.output.extend_from_slice(&header);
                            self.output.extend_from_slice(&payload);
                        }
                    }
                }
                State::Payload(left) => {
                    let take = (*left).min(self.input.len());
                    self.output.extend(self.input.drain(..take));
                    *left -= take;
                    if *left > 0 {
                        return;
                    }
                    self.state = State::FrameHeader;
                }
                State::HeaderBlock { block, .. } => {
                    // Waiting for CONTINUATION frames of the same block.
                    if self.input.len() < FRAME_HEADER_BYTES {
                        return;
                    }
                    let length =
                        usize::from(self.input[0]) << 16 | usize::from(self.input[1]) << 8 | usize::from(self.input[2]);
                    let (kind, flags) = (self.input[3], self.input[4]);
                    if kind != CONTINUATION || block.len() + length > HEADER_BLOCK_MAX {
                        // Not what HTTP/2 allows here: hand on what was held and let h2 judge.
                        self.flush_header_block_unchanged();
                        continue;
                    }
                    if self.input.len() < FRAME_HEADER_BYTES + length {
                        return;
                    }
                    block.extend(self.input.drain(..FRAME_HEADER_BYTES + length).skip(FRAME_HEADER_BYTES));
                    if flags & END_HEADERS != 0 {
                        self.finish_header_block();
                    }
                }
            }
        }
    }

    /// A complete header block: rewritten if it needs it, then out as HEADERS (and
    /// CONTINUATION) frames.
    fn finish_header_block(&mut self) {
        let State::HeaderBlock { header, priority, block } = std::mem::replace(&mut self.state, State::FrameHeader)
        else {
            return;
        };
        let block = rewrite_authority(&block).unwrap_or(block);
        write_header_block(&mut self.output, &header, priority, &block);
    }

    /// A header block cut short by a frame HTTP/2 does not allow there: out as it is.
    fn flush_header_block_unchanged(&mut self) {
        let State::HeaderBlock { header, priority, block } = std::mem::replace(&mut self.state, State::FrameHeader)
        else {
            return;
        };
        let mut header = header;
        header[4] &= !END_HEADERS;
        write_frames(&mut self.output, &header, priority, &block, false);
    }
}

/// The priority fields and the header block fragment of a HEADERS frame's payload.
fn split_headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        padding = usize::from(*rest.first()?);
        rest = &rest[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(rest.get(..5)?.try_into().ok()?);
        rest = &rest[5..];
    }
    let end = rest.len().checked_sub(padding)?;
    Some((priority, &rest[..end]))
}

/// Writes a header block as a HEADERS frame (flags and stream of `header`, no padding) and
/// CONTINUATION frames as needed.
fn write_header_block(out: &mut Vec<u8>, header: &[u8; FRAME_HEADER_BYTES], priority: Option<[u8; 5]>, block: &[u8]) {
    write_frames(out, header, priority, block, true);
}

fn write_frames(
    out: &mut Vec<u8>,
    header: &[u8; FRAME_HEADER_BYTES],
    priority: Option<[u8; 5]>,
    block: &[u8],
    end_headers: bool,
) {
    let stream = &header[5..9];
    let room = FRAME_PAYLOAD_MAX - priority.map_or(0, |p| p.len());
    let (first, mut rest) = block.split_at(block.len().min(room));
    let mut flags = header[4] & !(PADDED | END_HEADERS);
    if rest.is_empty() && end_headers {
        flags |= END_HEADERS;
    }
    let length = first.len() + priority.map_or(0, |p| p.len());
    push_frame_header(out, length, HEADERS, flags, stream);
    if let Some(priority) = priority {
        out.extend_from_slice(&priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(FRAME_PAYLOAD_MAX));
        rest = after;
        let flags = if rest.is_empty() && end_headers { END_HEADERS } else { 0 };
        push_frame_header(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

fn push_frame_header(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: &[u8]) {
    out.extend_from_slice(&[(length >> 16) as u8, (length >> 8) as u8, length as u8, kind, flags]);
    out.extend_from_slice(stream);
}

/// The header block with every literal `:authority` that holds `scheme://…` rewritten (same
/// length); `None` if there is none, or the block does not parse (h2 will judge it).
pub fn rewrite_authority(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len() + 16);
    let mut at = 0;
    let mut changed = false;
    while at < block.len() {
        let first = block[at];
        let start = at;
        if first & 0x80 != 0 {
            // Indexed field.
            at = skip_integer(block, at, 7)?;
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            at = skip_integer(block, at, 5)?;
        } else {
            // A literal: incremental indexing (01), or without / never indexed (0000, 0001).
            let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
            let (name_index, after_index) = read_integer(block, at, prefix)?;
            at = after_index;
            let is_authority = if name_index == 0 {
                let (name, after_name) = read_string(block, at)?;
                at = after_name;
                name == b":authority"
            } else {
                name_index == 1
            };
            let value_at = at;
            let (value, after_value) = read_string(block, at)?;
            at = after_value;
            if is_authority {
                if let Some(fixed) = same_length_authority(&value) {
                    out.extend_from_slice(&block[start..value_at]);
                    write_raw_string(&mut out, &fixed);
                    changed = true;
                    continue;
                }
            }
        }
        out.extend_from_slice(&block[start..at]);
    }
    changed.then_some(out)
}

/// `scheme://rest` as `schemexx@rest`: the same length, and a valid authority.
fn same_length_authority(value: &[u8]) -> Option<Vec<u8>> {
    let colon = value.windows(3).position(|window| window == b"://")?;
    let scheme = &value[..colon];
    if scheme.is_empty() || !scheme.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    Some([scheme, b"xx@", &value[colon + 3..]].concat())
}

/// Reads an HPACK integer with an `prefix`-bit prefix at `at`: its value and where it ends.
fn read_integer(block: &[u8], at: usize, prefix: u32) -> Option<(u64, usize)> {
    let mask = (1u16 << prefix) as u8 - 1;
    let mut value = u64::from(block.get(at)? & mask);
    let mut at = at + 1;
    if value < u64::from(mask) {
        return Some((value, at));
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(at)?;
        at += 1;
        value = value.checked_add(u64::from(byte & 0x7f).checked_shl(shift)?)?;
        shift += 7;
        if byte & 0x80 == 0 || shift > 56 {
            return (byte & 0x80 == 0).then_some((value, at));
        }
    }
}

fn skip_integer(block: &[u8], at: usize, prefix: u32) -> Option<usize> {
    read_integer(block, at, prefix).map(|(_, after)| after)
}

/// Reads an HPACK string (Huffman-coded or raw) at `at`: its octets and where it ends.
fn read_string(block: &[u8], at: usize) -> Option<(Vec<u8>, usize)> {
    let huffman = block.get(at)? & 0x80 != 0;
    let (length, start) = read_integer(block, at, 7)?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    let bytes = block.get(start..end)?;
    let value = if huffman { huffman_decode(bytes)? } else { bytes.to_vec() };
    Some((value, end))
}

/// Writes `value` as a raw (not Huffman-coded) HPACK string.
fn write_raw_string(out: &mut Vec<u8>, value: &[u8]) {
    write_integer(out, 0x00, 7, value.len() as u64);
    out.extend_from_slice(value);
}

fn write_integer(out: &mut Vec<u8>, flags: u8, prefix: u32, value: u64) {
    let mask = ((1u16 << prefix) - 1) as u64;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// The lengths of the HPACK Huffman codes of the octets 0–255 (RFC 7541, Appendix B). The code
/// is canonical, so the codes follow from the lengths.
const CODE_LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12,
    10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6,
    5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22,
    22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20,
    22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28,
    27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26,
];

/// The canonical codes: for each length, the first code and the symbols of that length in
/// order (a code of length `l` is symbol `symbols[l][code - first[l]]`).
struct Canonical {
    first: [u32; 31],
    symbols: Vec<Vec<u8>>,
}

fn canonical() -> &'static Canonical {
    static CODES: std::sync::OnceLock<Canonical> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        let mut symbols = vec![Vec::new(); 31];
        for (symbol, length) in CODE_LENGTHS.iter().enumerate() {
            symbols[usize::from(*length)].push(symbol as u8);
        }
        let mut first = [0u32; 31];
        let mut code = 0u32;
        for length in 1..31 {
            first[length] = code;
            // EOS (30 bits, all ones) is the 257th symbol; it follows the octets of length 30.
            let count = symbols[length].len() as u32 + u32::from(length == 30);
            code = (code + count) << 1;
        }
        Canonical { first, symbols }
    })
}

/// Decodes a Huffman-coded HPACK string; `None` if it is not one (a bad code, EOS inside, or
/// padding that is not a short run of ones).
pub fn huffman_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let codes = canonical();
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5);
    let (mut code, mut length) = (0u32, 0usize);
    for byte in bytes {
        for bit in (0..8).rev() {
            code = code << 1 | u32::from(byte >> bit & 1);
            length += 1;
            if length > 30 {
                return None;
            }
            let symbols = &codes.symbols[length];
            let offset = code.wrapping_sub(codes.first[length]);
            if code >= codes.first[length] && (offset as usize) < symbols.len() {
                out.push(symbols[offset as usize]);
                code = 0;
                length = 0;
            }
        }
    }
    // What is left must be padding: fewer than eight bits, all ones (a prefix of EOS).
    (length < 8 && code == (1 << length) - 1).then_some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if matches!(this.state, State::Passthrough) && this.output_at >= this.output.len() && this.input.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            if this.output_at < this.output.len() {
                let pending = &this.output[this.output_at..];
                let take = pending.len().min(buf.remaining());
                buf.put_slice(&pending[..take]);
                this.output_at += take;
                if this.output_at == this.output.len() {
                    this.output.clear();
                    this.output_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // The end: whatever was held goes on as it is.
                    if this.input.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.output.append(&mut this.input);
                    this.state = State::Passthrough;
                }
                Poll::Ready(Ok(())) => {
                    this.input.extend_from_slice(read.filled());
                    this.process();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    #[test]
    fn huffman_strings_of_rfc_7541_decode() {
        // RFC 7541 C.4.1 to C.4.3, and C.6.1's longer values.
        assert_eq!(huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")).unwrap(), b"www.example.com");
        assert_eq!(huffman_decode(&hex("a8eb 1064 9cbf")).unwrap(), b"no-cache");
        assert_eq!(huffman_decode(&hex("25a8 49e9 5ba9 7d7f")).unwrap(), b"custom-key");
        assert_eq!(huffman_decode(&hex("25a8 49e9 5bb8 e8b4 bf")).unwrap(), b"custom-value");
        assert_eq!(
            huffman_decode(&hex("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff")).unwrap(),
            b"Mon, 21 Oct 2013 20:13:21 GMT"
        );
        assert_eq!(
            huffman_decode(&hex("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3")).unwrap(),
            b"https://www.example.com"
        );
        assert!(huffman_decode(&hex("ff ff ff ff")).is_none(), "EOS inside a string");
        assert!(huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f400")).is_none(), "padding that is not ones");
    }

    /// A literal `:authority` with incremental indexing, its value Huffman-coded as grpc-go
    /// writes it, between other fields.
    fn block_with_authority(value_huffman: &[u8]) -> Vec<u8> {
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        block.push(0x41); // literal, incremental indexing, name = static 1 (:authority)
        block.push(0x80 | value_huffman.len() as u8);
        block.extend_from_slice(value_huffman);
        block.extend_from_slice(&[0x44, 0x03]); // :path, raw "/ab"
        block.extend_from_slice(b"/ab");
        block
    }

    #[test]
    fn a_url_shaped_authority_becomes_a_valid_one_of_the_same_length() {
        let https_url = hex("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"); // https://www.example.com
        let rewritten = rewrite_authority(&block_with_authority(&https_url)).expect("rewritten");
        let mut expected = vec![0x83, 0x86, 0x41, 23];
        expected.extend_from_slice(b"httpsxx@www.example.com");
        expected.extend_from_slice(&[0x44, 0x03]);
        expected.extend_from_slice(b"/ab");
        assert_eq!(rewritten, expected);
        assert_eq!("https://www.example.com".len(), "httpsxx@www.example.com".len());
        assert!("httpsxx@www.example.com".parse::<axum::http::uri::Authority>().is_ok());
        // A plain authority, or a block that does not parse, is left alone.
        let plain = hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff");
        assert_eq!(rewrite_authority(&block_with_authority(&plain)), None);
        assert_eq!(rewrite_authority(&[0x41, 0x85, 0xff]), None);
    }

    #[tokio::test]
    async fn the_filter_rewrites_across_frames_and_reads_and_passes_the_rest() {
        let https_url = hex("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3");
        let block = block_with_authority(&https_url);
        let mut input = PREFACE.to_vec();
        // A SETTINGS frame, then HEADERS without END_HEADERS (and padded), a CONTINUATION,
        // then a DATA frame.
        input.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3, 0, 0, 0, 100]);
        let (part1, part2) = block.split_at(5);
        let padding = 3;
        let length = 1 + part1.len() + padding;
        input.extend_from_slice(&[0, 0, length as u8, HEADERS, PADDED, 0, 0, 0, 1, padding as u8]);
        input.extend_from_slice(part1);
        input.extend_from_slice(&[0; 3]);
        input.extend_from_slice(&[0, 0, part2.len() as u8, CONTINUATION, END_HEADERS, 0, 0, 0, 1]);
        input.extend_from_slice(part2);
        input.extend_from_slice(&[0, 0, 4, 0x0, 0x1, 0, 0, 0, 1, b'd', b'a', b't', b'a']);
        // Fed in small pieces, as a socket may deliver them.
        let mut builder = tokio_test_io(&input);
        let mut fix = AuthorityFix::new(&mut builder);
        let mut output = Vec::new();
        fix.read_to_end(&mut output).await.unwrap();
        let mut expected = PREFACE.to_vec();
        expected.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x3, 0, 0, 0, 100]);
        let rewritten = rewrite_authority(&block).unwrap();
        expected.extend_from_slice(&[0, 0, rewritten.len() as u8, HEADERS, END_HEADERS, 0, 0, 0, 1]);
        expected.extend_from_slice(&rewritten);
        expected.extend_from_slice(&[0, 0, 4, 0x0, 0x1, 0, 0, 0, 1, b'd', b'a', b't', b'a']);
        assert_eq!(output, expected);
    }

    #[tokio::test]
    async fn http1_passes_through_untouched() {
        let input = b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n\r\n{}".to_vec();
        let mut source = tokio_test_io(&input);
        let mut output = Vec::new();
        AuthorityFix::new(&mut source).read_to_end(&mut output).await.unwrap();
        assert_eq!(output, input);
    }

    /// A reader that yields `bytes` three at a time.
    fn tokio_test_io(bytes: &[u8]) -> impl AsyncRead + Unpin {
        struct Pieces(std::collections::VecDeque<Vec<u8>>);
        impl AsyncRead for Pieces {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                if let Some(piece) = self.0.pop_front() {
                    buf.put_slice(&piece);
                }
                Poll::Ready(Ok(()))
            }
        }
        Pieces(bytes.chunks(3).map(<[u8]>::to_vec).collect())
    }
}
