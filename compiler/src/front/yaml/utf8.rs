//! Texts arrive as bytes: YAML streams are UTF-8, and a file that is not is
//! reported at the line and byte where it stops being UTF-8.

use super::Pos;

/// Where a text stops being UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8 {
    /// Line and column (in characters) of the first invalid byte.
    pub pos: Pos,
    /// Its offset in the file, from 0.
    pub offset: usize,
    /// Its value.
    pub byte: u8,
}

/// `bytes` as a string, without a copy when they are UTF-8.
pub fn decode(bytes: Vec<u8>) -> Result<String, InvalidUtf8> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let valid = std::str::from_utf8(&bytes[..offset]).expect("valid up to here");
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        let line = valid.bytes().filter(|b| *b == b'\n').count() + 1;
        let col = valid[line_start..].chars().count() + 1;
        InvalidUtf8 {
            pos: Pos { line: u32::try_from(line).unwrap_or(u32::MAX), col: u32::try_from(col).unwrap_or(u32::MAX) },
            offset,
            byte: bytes[offset],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_the_first_invalid_byte() {
        assert_eq!(decode(b"a: \xc3\xa9\n".to_vec()).unwrap(), "a: é\n");
        let e = decode(b"a: 1\nb: \xc3\xa9\xff\n".to_vec()).unwrap_err();
        assert_eq!(e, InvalidUtf8 { pos: Pos { line: 2, col: 5 }, offset: 10, byte: 0xff });
    }
}
