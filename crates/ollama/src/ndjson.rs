//! A byte buffer that splits an HTTP body into NDJSON lines.
//!
//! HTTP chunk boundaries are not line boundaries, and a multi-byte UTF-8 character can
//! be split between two chunks, so bytes are buffered and only complete lines (ending in
//! `\n`) come out. Lines are handed out as bytes: they are decoded (and UTF-8 checked)
//! only once complete.

/// Buffers body bytes and yields complete lines.
#[derive(Debug, Default, Clone)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its `\n` (and without a `\r` before it), if any.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        let pos = self
            .buf
            .get(self.scanned..)?
            .iter()
            .position(|&b| b == b'\n');
        match pos {
            Some(p) => {
                let end = self.scanned + p;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.scanned = 0;
                Some(line)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// At the end of the body: what is left (a last line without `\n`), if anything
    /// but whitespace.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        if rest.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(rest)
        }
    }

    /// Bytes buffered and not yet returned.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        let mut b = LineBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            b.push(c);
            while let Some(l) = b.next_line() {
                out.push(l);
            }
        }
        let rest = b.finish();
        (out, rest)
    }

    #[test]
    fn a_line_split_across_chunks_comes_out_whole() {
        let (lines, rest) = lines_of(&[b"{\"a\":", b"1}\n{\"b\"", b":2}\n"]);
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        assert_eq!(rest, None);
    }

    #[test]
    fn a_utf8_character_split_across_chunks_survives() {
        let text = "{\"t\":\"caf\u{e9} \u{1F600}\"}\n";
        let bytes = text.as_bytes();
        // Split inside "é" (2 bytes) and inside the emoji (4 bytes).
        let e_at = text.find('\u{e9}').unwrap() + 1;
        let emoji_at = text.find('\u{1F600}').unwrap() + 2;
        let (lines, _) = lines_of(&[&bytes[..e_at], &bytes[e_at..emoji_at], &bytes[emoji_at..]]);
        assert_eq!(lines.len(), 1);
        assert_eq!(std::str::from_utf8(&lines[0]).unwrap(), text.trim_end());
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_lines() {
        let body = "{\"x\":\"\u{e9}\"}\r\n\n{\"y\":2}\n";
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        let (lines, rest) = lines_of(&chunks);
        assert_eq!(
            lines,
            vec![
                "{\"x\":\"\u{e9}\"}".as_bytes().to_vec(),
                Vec::new(),
                b"{\"y\":2}".to_vec()
            ]
        );
        assert_eq!(rest, None);
    }

    #[test]
    fn an_unterminated_last_line_is_returned_by_finish() {
        let (lines, rest) = lines_of(&[b"{\"a\":1}\n{\"done\":tr"]);
        assert_eq!(lines.len(), 1);
        assert_eq!(rest, Some(b"{\"done\":tr".to_vec()));
    }

    #[test]
    fn trailing_whitespace_is_not_a_line() {
        let (lines, rest) = lines_of(&[b"{}\n  \t"]);
        assert_eq!(lines, vec![b"{}".to_vec()]);
        assert_eq!(rest, None);
    }
}
