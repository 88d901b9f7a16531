//! The jute binary encoding ZooKeeper's records use: big-endian integers, one byte for a
//! boolean, length-prefixed byte buffers and UTF-8 strings (length −1 for null), count-prefixed
//! vectors, and records as their fields in order with no tags.
//!
//! Null and empty differ for buffers (a znode created without data reads back as null), so a
//! buffer is `Option<Vec<u8>>`. A null string or vector is read as empty: no request of the
//! client protocol gives null a meaning of its own for them.

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a field.
    #[error("truncated: {needed} more bytes needed at offset {at}")]
    Truncated {
        /// Where the field began.
        at: usize,
        /// How many bytes it still needed.
        needed: usize,
    },
    /// A length below −1.
    #[error("invalid length {len} at offset {at}")]
    BadLength {
        /// Where the length was.
        at: usize,
        /// The length read.
        len: i32,
    },
    /// A string that is not UTF-8.
    #[error("a string at offset {at} is not UTF-8")]
    NotUtf8 {
        /// Where the string began.
        at: usize,
    },
    /// A value outside what its field allows (an unknown mode, type or flag).
    #[error("{0}")]
    Invalid(String),
}

/// Reads jute values from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// True once everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { at: self.at, needed: n - self.remaining() });
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    /// A 4-byte signed integer.
    pub fn int(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// An 8-byte signed integer.
    pub fn long(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A boolean (any non-zero byte is true, as Java's `readBoolean`).
    pub fn boolean(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length prefix: `None` for −1 (null).
    fn length(&mut self) -> Result<Option<usize>, DecodeError> {
        let at = self.at;
        match self.int()? {
            -1 => Ok(None),
            len if len < 0 => Err(DecodeError::BadLength { at, len }),
            len => {
                // A length past the end is refused before anything is allocated for it.
                let len = len as usize;
                if len > self.remaining() {
                    return Err(DecodeError::Truncated { at: self.at, needed: len - self.remaining() });
                }
                Ok(Some(len))
            }
        }
    }

    /// A buffer: `None` for null.
    pub fn buffer(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        Ok(match self.length()? {
            Some(len) => Some(self.take(len)?.to_vec()),
            None => None,
        })
    }

    /// A string (null reads as empty).
    pub fn ustring(&mut self) -> Result<String, DecodeError> {
        let at = self.at;
        match self.length()? {
            Some(len) => String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError::NotUtf8 { at }),
            None => Ok(String::new()),
        }
    }

    /// A vector (null reads as empty).
    pub fn vector<T: Jute>(&mut self) -> Result<Vec<T>, DecodeError> {
        let at = self.at;
        let count = match self.int()? {
            -1 => return Ok(Vec::new()),
            count if count < 0 => return Err(DecodeError::BadLength { at, len: count }),
            count => count as usize,
        };
        // Every element takes at least one byte: a count past the remaining bytes is garbage,
        // refused before it sizes an allocation.
        if count > self.remaining() {
            return Err(DecodeError::Truncated { at: self.at, needed: count - self.remaining() });
        }
        (0..count).map(|_| T::read(self)).collect()
    }
}

/// Writes jute values into a growing buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A 4-byte signed integer.
    pub fn int(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// An 8-byte signed integer.
    pub fn long(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// A boolean as one byte.
    pub fn boolean(&mut self, value: bool) {
        self.bytes.push(u8::from(value));
    }

    /// A buffer (`None` as null).
    pub fn buffer(&mut self, value: Option<&[u8]>) {
        match value {
            Some(bytes) => {
                self.int(bytes.len() as i32);
                self.bytes.extend_from_slice(bytes);
            }
            None => self.int(-1),
        }
    }

    /// A string.
    pub fn ustring(&mut self, value: &str) {
        self.buffer(Some(value.as_bytes()));
    }

    /// A vector.
    pub fn vector<T: Jute>(&mut self, values: &[T]) {
        self.int(values.len() as i32);
        for value in values {
            value.write(self);
        }
    }
}

/// A value with a jute encoding.
pub trait Jute: Sized {
    /// Reads one value.
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;
    /// Writes it.
    fn write(&self, writer: &mut Writer);

    /// Decodes a value that must take all of `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = Self::read(&mut reader)?;
        if !reader.is_empty() {
            return Err(DecodeError::Invalid(format!("{} bytes after the record", reader.remaining())));
        }
        Ok(value)
    }

    /// Encodes the value alone.
    fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        self.write(&mut writer);
        writer.into_bytes()
    }
}

impl Jute for i32 {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        reader.int()
    }
    fn write(&self, writer: &mut Writer) {
        writer.int(*self)
    }
}

impl Jute for i64 {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        reader.long()
    }
    fn write(&self, writer: &mut Writer) {
        writer.long(*self)
    }
}

impl Jute for bool {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        reader.boolean()
    }
    fn write(&self, writer: &mut Writer) {
        writer.boolean(*self)
    }
}

impl Jute for String {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        reader.ustring()
    }
    fn write(&self, writer: &mut Writer) {
        writer.ustring(self)
    }
}

impl Jute for Option<Vec<u8>> {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        reader.buffer()
    }
    fn write(&self, writer: &mut Writer) {
        writer.buffer(self.as_deref())
    }
}

impl<T: Jute> Jute for Vec<T> {
    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        reader.vector()
    }
    fn write(&self, writer: &mut Writer) {
        writer.vector(self)
    }
}

/// Declares a record: a struct whose jute encoding is its fields in order.
#[macro_export]
macro_rules! record {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $crate::jute::Jute for $name {
            fn read(reader: &mut $crate::jute::Reader<'_>) -> Result<Self, $crate::jute::DecodeError> {
                Ok($name { $($field: <$ty as $crate::jute::Jute>::read(reader)?,)* })
            }
            #[allow(unused_variables)]
            fn write(&self, writer: &mut $crate::jute::Writer) {
                $($crate::jute::Jute::write(&self.$field, writer);)*
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_big_endian_and_null_differs_from_empty() {
        let mut w = Writer::new();
        w.int(-2);
        w.long(0x0102_0304_0506_0708);
        w.boolean(true);
        w.buffer(None);
        w.buffer(Some(b""));
        w.ustring("/a");
        let bytes = w.into_bytes();
        assert_eq!(&bytes[..4], &[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(&bytes[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[12], 1);
        assert_eq!(&bytes[13..17], &[0xff; 4], "null buffer: length -1");
        assert_eq!(&bytes[17..21], &[0; 4], "empty buffer: length 0");
        assert_eq!(&bytes[21..], &[0, 0, 0, 2, b'/', b'a']);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.int().unwrap(), -2);
        assert_eq!(r.long().unwrap(), 0x0102_0304_0506_0708);
        assert!(r.boolean().unwrap());
        assert_eq!(r.buffer().unwrap(), None);
        assert_eq!(r.buffer().unwrap(), Some(Vec::new()));
        assert_eq!(r.ustring().unwrap(), "/a");
        assert!(r.is_empty());
    }

    #[test]
    fn bad_lengths_and_short_input_are_errors_not_allocations() {
        // A length of 2^31-1 with nothing after it must not allocate 2 GiB.
        let huge = [0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(Reader::new(&huge).buffer(), Err(DecodeError::Truncated { .. })));
        assert!(matches!(Reader::new(&huge).vector::<i32>(), Err(DecodeError::Truncated { .. })));
        let negative = (-5i32).to_be_bytes();
        assert!(matches!(Reader::new(&negative).buffer(), Err(DecodeError::BadLength { len: -5, .. })));
        assert!(matches!(Reader::new(&negative).vector::<i32>(), Err(DecodeError::BadLength { len: -5, .. })));
        assert!(matches!(Reader::new(&[0, 0]).int(), Err(DecodeError::Truncated { at: 0, needed: 2 })));
        let not_utf8 = [0, 0, 0, 1, 0xff];
        assert!(matches!(Reader::new(&not_utf8).ustring(), Err(DecodeError::NotUtf8 { at: 0 })));
        assert!(matches!(i32::decode(&[0, 0, 0, 1, 9]), Err(DecodeError::Invalid(_))), "trailing bytes");
    }

    #[test]
    fn null_vectors_and_strings_read_as_empty() {
        let null = (-1i32).to_be_bytes();
        assert_eq!(Reader::new(&null).vector::<String>().unwrap(), Vec::<String>::new());
        assert_eq!(Reader::new(&null).ustring().unwrap(), "");
        let strings = vec!["a".to_string(), "bc".to_string()];
        assert_eq!(Vec::<String>::decode(&strings.encode()).unwrap(), strings);
    }
}
