//! An HTTP/2 client's frames after its preface, followed just far enough to tell when a request
//! head is arriving.

/// RFC 9113, section 4.1: a frame's length (3 bytes), type, flags, stream (4 bytes).
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;

/// Where an HTTP/2 client's bytes are in its frames: enough to tell whether a request head is
/// arriving. hyper bounds none (an HTTP/2 connection is closed only when its pings go
/// unanswered), so a client that had earned the idle timeout could trickle one HEADERS frame for
/// that long, and hold a shutdown's drain for its whole grace.
#[derive(Debug, Default)]
pub(super) struct Frames {
    /// The frame header being read, and how much of it has come.
    header: [u8; FRAME_HEADER_LEN],
    header_read: usize,
    /// Bytes of the current frame's payload still to come.
    payload_left: usize,
    /// A header block (HEADERS, then CONTINUATIONs) began and has not ended.
    in_block: bool,
    /// The current frame ends its header block (`END_HEADERS`).
    ends_block: bool,
}

impl Frames {
    /// A request head is arriving: a header block is begun and not whole, or a frame header is
    /// (its type, which says whether a head begins, is its fourth byte).
    pub(super) fn head_arriving(&self) -> bool {
        self.in_block || self.header_read > 0
    }

    pub(super) fn read(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let taken = if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                if self.payload_left == 0 {
                    self.frame_read();
                }
                n
            } else {
                let n = (FRAME_HEADER_LEN - self.header_read).min(bytes.len());
                self.header[self.header_read..self.header_read + n].copy_from_slice(&bytes[..n]);
                self.header_read += n;
                if self.header_read == FRAME_HEADER_LEN {
                    self.header_read = 0;
                    self.frame_begun();
                }
                n
            };
            bytes = &bytes[taken..];
        }
    }

    fn frame_begun(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        if kind == FRAME_HEADERS {
            self.in_block = true;
        }
        self.ends_block =
            matches!(kind, FRAME_HEADERS | FRAME_CONTINUATION) && flags & FLAG_END_HEADERS != 0;
        self.payload_left = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        if self.payload_left == 0 {
            self.frame_read();
        }
    }

    fn frame_read(&mut self) {
        if self.ends_block {
            self.in_block = false;
            self.ends_block = false;
        }
    }
}
