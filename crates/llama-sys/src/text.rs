//! Turning token bytes into text: UTF-8 characters split across tokens, and stop
//! sequences that must not leak into the output even when split across tokens.

/// Collects token bytes and hands out only complete UTF-8 text.
#[derive(Debug, Default)]
pub(crate) struct Utf8Buffer {
    pending: Vec<u8>,
}

impl Utf8Buffer {
    /// Adds bytes; returns the text completed by them.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // An incomplete character at the end: keep it for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them, go on after them.
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + len);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left (an incomplete character becomes U+FFFD).
    pub(crate) fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

/// The generated text of one sequence, released as deltas that never contain
/// (part of) a stop sequence.
#[derive(Debug)]
pub(crate) struct StopScanner {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

/// What [`StopScanner::push`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Scan {
    /// Text safe to release now (may be empty).
    Delta(String),
    /// A stop sequence was produced: the last text to release; the sequence is over.
    Stopped(String),
}

impl StopScanner {
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            emitted: 0,
        }
    }

    pub(crate) fn push(&mut self, piece: &str) -> Scan {
        let search_from = self.floor_boundary(
            self.emitted
                .saturating_sub(self.stops.iter().map(String::len).max().unwrap_or(0)),
        );
        self.text.push_str(piece);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text
                    .get(search_from..)
                    .and_then(|t| t.find(s.as_str()))
                    .map(|i| i + search_from)
            })
            .min();
        if let Some(at) = hit {
            self.text.truncate(at);
            return Scan::Stopped(self.release(self.text.len()));
        }
        let hold = self.holdback();
        Scan::Delta(self.release(self.text.len() - hold))
    }

    /// Releases everything not yet released (at the end of generation).
    pub(crate) fn flush(&mut self) -> String {
        self.release(self.text.len())
    }

    /// The whole visible text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    fn release(&mut self, upto: usize) -> String {
        let upto = self.floor_boundary(upto.max(self.emitted));
        let out = self
            .text
            .get(self.emitted..upto)
            .unwrap_or_default()
            .to_string();
        self.emitted = upto;
        out
    }

    /// Bytes at the end of the text that could be the start of a stop sequence.
    fn holdback(&self) -> usize {
        let mut best = 0;
        for (i, _) in self.text.char_indices().rev().take(64) {
            let Some(suffix) = self.text.get(i..) else {
                continue;
            };
            if self
                .stops
                .iter()
                .any(|s| s.len() > suffix.len() && s.starts_with(suffix))
            {
                best = suffix.len();
            }
        }
        best
    }

    fn floor_boundary(&self, mut i: usize) -> usize {
        i = i.min(self.text.len());
        while i > 0 && !self.text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens() {
        let mut b = Utf8Buffer::default();
        let bytes = "é😀".as_bytes();
        assert_eq!(b.push(&bytes[..1]), "");
        assert_eq!(b.push(&bytes[1..3]), "é");
        assert_eq!(b.push(&bytes[3..]), "😀");
        assert_eq!(b.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(b.push(&[0xe2, 0x82]), "");
        assert_eq!(b.finish(), "\u{fffd}");
    }

    #[test]
    fn stop_sequence_split_across_pieces_never_leaks() {
        let mut s = StopScanner::new(&["END".to_string()]);
        assert_eq!(s.push("hello E"), Scan::Delta("hello ".into()));
        assert_eq!(s.push("N"), Scan::Delta("".into()));
        assert_eq!(s.push("Dx"), Scan::Stopped("".into()));
        assert_eq!(s.text(), "hello ");
    }

    #[test]
    fn false_start_is_released() {
        let mut s = StopScanner::new(&["END".to_string()]);
        assert_eq!(s.push("aE"), Scan::Delta("a".into()));
        assert_eq!(s.push("Nx"), Scan::Delta("ENx".into()));
        assert_eq!(s.flush(), "");
        assert_eq!(s.text(), "aENx");
    }

    #[test]
    fn multibyte_text_and_stops() {
        let mut s = StopScanner::new(&["ß!".to_string()]);
        assert_eq!(s.push("日本ß"), Scan::Delta("日本".into()));
        assert_eq!(s.push("x"), Scan::Delta("ßx".into()));
        assert_eq!(s.push("ß!"), Scan::Stopped("".into()));
        assert_eq!(s.text(), "日本ßx");
    }

    #[test]
    fn no_stops_releases_everything() {
        let mut s = StopScanner::new(&[]);
        assert_eq!(s.push("abc"), Scan::Delta("abc".into()));
    }
}
