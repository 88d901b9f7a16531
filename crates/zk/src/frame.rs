//! Framing: every message in both directions is a 4-byte big-endian length, then that many
//! bytes. A frame longer than the limit (`jute.maxbuffer`) is refused: ZooKeeper closes the
//! connection without an answer, and so does ballot.

/// What the next frame of a connection's buffered bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A whole frame: its payload is `buffer[4..4 + len]`; drop `4 + len` bytes after use.
    Frame {
        /// Payload bytes.
        len: usize,
    },
    /// More bytes are needed (at least this many in all).
    Need(usize),
    /// The length is negative or over the limit: close the connection.
    TooLong(i64),
}

/// Looks at the start of `buffer` for a frame of at most `max` payload bytes.
pub fn next(buffer: &[u8], max: usize) -> Next {
    let Some(prefix) = buffer.get(..4) else { return Next::Need(4) };
    let len = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    if len < 0 || len as usize > max {
        return Next::TooLong(i64::from(len));
    }
    let len = len as usize;
    if buffer.len() < 4 + len {
        return Next::Need(4 + len);
    }
    Next::Frame { len }
}

/// Prefixes `payload` with its length.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The four-letter word (`ruok`, `srvr`, `mntr`, …) a connection's first four bytes spell,
/// if they are one: ZooKeeper answers those on the client port instead of a handshake.
pub fn four_letter_word(first: &[u8]) -> Option<&'static str> {
    const WORDS: [&str; 18] = [
        "ruok", "stat", "srvr", "mntr", "conf", "cons", "crst", "srst", "envi", "dump", "wchs", "wchc", "wchp", "dirs",
        "isro", "gtmk", "stmk", "hash",
    ];
    let first = first.get(..4)?;
    WORDS.into_iter().find(|word| word.as_bytes() == first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_whole_or_asked_for() {
        let frame = framed(b"hello");
        assert_eq!(next(&frame, 100), Next::Frame { len: 5 });
        assert_eq!(next(&frame[..6], 100), Next::Need(9));
        assert_eq!(next(&frame[..2], 100), Next::Need(4));
        assert_eq!(next(&frame, 4), Next::TooLong(5));
        assert_eq!(next(&(-3i32).to_be_bytes(), 100), Next::TooLong(-3));
    }

    #[test]
    fn four_letter_words_are_told_from_a_handshake() {
        assert_eq!(four_letter_word(b"ruok"), Some("ruok"));
        assert_eq!(four_letter_word(b"mntr\n"), Some("mntr"));
        // A handshake starts with its length (45 for a 3.8 client): never letters.
        assert_eq!(four_letter_word(&45i32.to_be_bytes()), None);
        assert_eq!(four_letter_word(b"ru"), None);
    }
}
