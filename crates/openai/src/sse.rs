//! A byte buffer that splits an HTTP body into server-sent events.
//!
//! HTTP chunk boundaries are neither line nor event boundaries, and a multi-byte UTF-8
//! character can be split between two chunks: bytes are buffered, and an event comes out
//! only once its terminating blank line has arrived. Its data is handed out as bytes.

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: Vec<u8>,
}

/// Buffers body bytes and yields complete events.
#[derive(Debug, Default, Clone)]
pub struct SseBuffer {
    buf: Vec<u8>,
    scanned: usize,
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
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered for the event not complete yet: its unterminated line and the data
    /// of its earlier lines.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.data.len()
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(line) = self.next_line() {
            if let Some(event) = self.field(&line) {
                return Some(event);
            }
        }
        None
    }

    /// At the end of the body: an event whose blank line never came (a last line
    /// without `\n` included), if it carried data.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        if !rest.is_empty() {
            let rest = rest.strip_suffix(b"\r").unwrap_or(&rest).to_vec();
            if let Some(event) = self.field(&rest) {
                return Some(event);
            }
        }
        self.take_event()
    }

    fn next_line(&mut self) -> Option<Vec<u8>> {
        let p = self
            .buf
            .get(self.scanned..)?
            .iter()
            .position(|&b| b == b'\n');
        match p {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut b = SseBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            b.push(c);
            while let Some(e) = b.next_event() {
                out.push(e);
            }
        }
        out.extend(b.finish());
        out
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
        // Every possible single cut, and byte-by-byte.
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
}
