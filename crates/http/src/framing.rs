//! Splitting a streamed HTTP body into its frames: NDJSON lines ([`LineBuffer`], Ollama)
//! or server-sent events ([`SseBuffer`], OpenAI-compatible servers).
//!
//! HTTP chunk boundaries are neither line nor event boundaries, and a multi-byte UTF-8
//! character can be split between two chunks: bytes are buffered, and a frame comes out
//! only once complete. Frames are handed out as bytes, decoded (and UTF-8 checked) only
//! once whole. [`Frames`] reads an opened body frame by frame with the cap of
//! [`check_pending`] applied after each chunk, as every backend
//! does; [`frames_of`] does the same over chunks in memory (tests, fuzzing).

use optillm_core::BackendError;

use crate::{Opened, check_pending};

/// A buffer that turns body bytes into frames.
pub trait Framer: Default {
    /// One complete frame.
    type Frame;
    /// What a frame is called in [`BackendError::TooLarge`] ("a line", "an event").
    const WHAT: &'static str;
    /// Appends a chunk of the body.
    fn push(&mut self, bytes: &[u8]);
    /// The next complete frame, if any.
    fn next_frame(&mut self) -> Option<Self::Frame>;
    /// At the end of the body: the last frame, left without its terminator, if any.
    fn finish(&mut self) -> Option<Self::Frame>;
    /// Bytes buffered for frames not complete yet.
    fn pending(&self) -> usize;
}

/// Buffers body bytes and yields complete lines (NDJSON).
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
        let rest = self.take_rest();
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

    /// Everything buffered, emptying the buffer.
    fn take_rest(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }
}

impl Framer for LineBuffer {
    type Frame = Vec<u8>;
    const WHAT: &'static str = "a line";
    fn push(&mut self, bytes: &[u8]) {
        LineBuffer::push(self, bytes);
    }
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.next_line()
    }
    fn finish(&mut self) -> Option<Vec<u8>> {
        LineBuffer::finish(self)
    }
    fn pending(&self) -> usize {
        LineBuffer::pending(self)
    }
}

/// One server-sent event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: Vec<u8>,
}

/// Buffers body bytes and yields complete server-sent events.
#[derive(Debug, Default, Clone)]
pub struct SseBuffer {
    lines: LineBuffer,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
}

impl SseBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.lines.push(bytes);
    }

    /// Bytes buffered for the event not complete yet: its unterminated line and the data
    /// of its earlier lines.
    pub fn pending(&self) -> usize {
        self.lines.pending() + self.data.len()
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(line) = self.lines.next_line() {
            if let Some(event) = self.field(&line) {
                return Some(event);
            }
        }
        None
    }

    /// At the end of the body: an event whose blank line never came (a last line
    /// without `\n` included), if it carried data.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = self.lines.take_rest();
        if !rest.is_empty() {
            let rest = rest.strip_suffix(b"\r").unwrap_or(&rest).to_vec();
            if let Some(event) = self.field(&rest) {
                return Some(event);
            }
        }
        self.take_event()
    }

    /// Handles one line; a blank line dispatches the event gathered so far.
    fn field(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.take_event();
        }
        if line.first() == Some(&b':') {
            return None; // a comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let (name, rest) = line.split_at(i);
                let value = rest.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        None
    }

    fn take_event(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
        })
    }
}

impl Framer for SseBuffer {
    type Frame = SseEvent;
    const WHAT: &'static str = "an event";
    fn push(&mut self, bytes: &[u8]) {
        SseBuffer::push(self, bytes);
    }
    fn next_frame(&mut self) -> Option<SseEvent> {
        self.next_event()
    }
    fn finish(&mut self) -> Option<SseEvent> {
        SseBuffer::finish(self)
    }
    fn pending(&self) -> usize {
        SseBuffer::pending(self)
    }
}

/// An opened body read frame by frame.
#[derive(Debug)]
pub struct Frames<F> {
    opened: Opened,
    framer: F,
    limit: usize,
    ended: bool,
}

impl<F: Framer> Frames<F> {
    /// `opened`'s frames; a frame still incomplete past `limit` bytes is an error.
    pub fn new(opened: Opened, limit: usize) -> Self {
        Self {
            opened,
            framer: F::default(),
            limit,
            ended: false,
        }
    }

    /// The next frame, `None` at the end of the body. Errors: the body broke off or
    /// stalled, or a frame grew past the limit ([`BackendError::TooLarge`]). Dropping
    /// the reader closes the connection, which cancels the request upstream.
    pub async fn next(&mut self) -> Result<Option<F::Frame>, BackendError> {
        loop {
            if let Some(frame) = self.framer.next_frame() {
                return Ok(Some(frame));
            }
            if self.ended {
                return Ok(None);
            }
            check_pending(self.framer.pending(), self.limit, F::WHAT)?;
            match self.opened.chunk().await? {
                Some(bytes) => self.framer.push(&bytes),
                None => {
                    self.ended = true;
                    return Ok(self.framer.finish());
                }
            }
        }
    }
}

/// The frames of a body arriving as `chunks`, read as [`Frames`] reads them (the cap
/// checked after each chunk): the frames and the error that stopped the reading, if any.
pub fn frames_of<F: Framer>(
    chunks: &[&[u8]],
    limit: usize,
) -> (Vec<F::Frame>, Option<BackendError>) {
    let mut framer = F::default();
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame() {
            out.push(frame);
        }
        if let Err(e) = check_pending(framer.pending(), limit, F::WHAT) {
            return (out, Some(e));
        }
    }
    out.extend(framer.finish());
    (out, None)
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
        let e_at = text.find('\u{e9}').map_or(0, |i| i + 1);
        let emoji_at = text.find('\u{1F600}').map_or(0, |i| i + 2);
        let (a, rest) = bytes.split_at(e_at);
        let (b, c) = rest.split_at(emoji_at - e_at);
        let (lines, _) = lines_of(&[a, b, c]);
        let decoded: Vec<_> = lines.iter().map(|l| std::str::from_utf8(l).ok()).collect();
        assert_eq!(decoded, vec![Some(text.trim_end())]);
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
        let (lines, rest) = lines_of(&[b"{}\n  \t"]);
        assert_eq!((lines, rest), (vec![b"{}".to_vec()], None));
    }

    fn events_of(chunks: &[&[u8]]) -> Vec<SseEvent> {
        frames_of::<SseBuffer>(chunks, usize::MAX).0
    }

    fn data(s: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let body = "data: {\"a\":\"caf\u{e9} \u{1F600}\"}\n\ndata: [DONE]\n\n";
        let want = vec![data("{\"a\":\"caf\u{e9} \u{1F600}\"}"), data("[DONE]")];
        // Every possible single cut, and byte by byte.
        for cut in 0..=body.len() {
            let (a, b) = body.as_bytes().split_at(cut);
            assert_eq!(events_of(&[a, b]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        assert_eq!(events_of(&bytes), want);
    }

    #[test]
    fn crlf_comments_multiline_data_and_event_names() {
        let body = b": keep-alive\r\n\r\nevent: error\r\ndata: line one\r\ndata:line two\r\n\r\n";
        assert_eq!(
            events_of(&[body]),
            vec![SseEvent {
                event: Some("error".into()),
                data: b"line one\nline two".to_vec()
            }]
        );
    }

    #[test]
    fn an_event_without_its_blank_line_is_returned_at_the_end() {
        assert_eq!(events_of(&[b"data: {\"x\":1}\n"]), vec![data("{\"x\":1}")]);
        assert_eq!(events_of(&[b"data: {\"x\":1}"]), vec![data("{\"x\":1}")]);
        assert_eq!(events_of(&[b"\n\n: only a comment\n"]), vec![]);
    }

    #[test]
    fn a_frame_past_the_cap_stops_the_reading_with_its_name() {
        let (lines, e) = frames_of::<LineBuffer>(&[b"ok\nxxxxxxxx", b"xx"], 8);
        assert_eq!(lines, vec![b"ok".to_vec()]);
        assert!(
            matches!(&e, Some(BackendError::TooLarge { what, limit: 8 }) if what == "a line"),
            "{e:?}"
        );
        let (_, e) = frames_of::<SseBuffer>(&[b"data: 123456789"], 8);
        assert!(
            matches!(&e, Some(BackendError::TooLarge { what, .. }) if what == "an event"),
            "{e:?}"
        );
    }
}
