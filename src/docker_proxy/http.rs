//! Just enough HTTP/1.1 to tell where each message ends: heads parsed by httparse, bodies
//! delimited by Content-Length or chunks, and whatever the engine could read differently from
//! the proxy refused.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// Longest request or response head accepted.
pub(super) const MOST_HEAD: usize = 64 * 1024;
/// Most headers in a head.
pub(super) const MOST_HEADERS: usize = 100;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProxyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
}

pub(super) type ProxyResult<T> = std::result::Result<T, ProxyError>;

/// One side of the proxy: a stream and what has been read from it but not yet passed on.
pub(super) struct Side {
    pub(super) stream: UnixStream,
    buf: Vec<u8>,
    start: usize,
}

impl Side {
    pub(super) fn new(stream: UnixStream) -> Side {
        Side {
            stream,
            buf: Vec::new(),
            start: 0,
        }
    }

    pub(super) fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads more; false at the end of the stream.
    pub(super) fn fill(&mut self) -> ProxyResult<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Passes `n` bytes on to `to`.
    pub(super) fn copy(&mut self, mut n: u64, to: &mut impl Write) -> ProxyResult<()> {
        while n > 0 {
            if self.pending().is_empty() && !self.fill()? {
                return Err(ProxyError::Malformed("the stream ended inside a body"));
            }
            let take = self
                .pending()
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            to.write_all(&self.pending()[..take])?;
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Takes a line ending in CRLF, which holds no other CR or LF (a bare one could end the
    /// line for the engine but not for us).
    pub(super) fn take_line(&mut self) -> ProxyResult<Vec<u8>> {
        loop {
            if let Some(end) = self.pending().windows(2).position(|w| w == b"\r\n") {
                let line = self.pending()[..end + 2].to_vec();
                if line[..end].iter().any(|b| matches!(b, b'\r' | b'\n')) {
                    return Err(ProxyError::Malformed("a bare CR or LF in a chunk line"));
                }
                self.start += end + 2;
                return Ok(line);
            }
            if self.pending().len() > MOST_HEAD {
                return Err(ProxyError::Malformed("a chunk line is too long"));
            }
            if !self.fill()? {
                return Err(ProxyError::Malformed("the stream ended inside a chunk"));
            }
        }
    }

    /// Passes a chunked body on to `to`, chunk by chunk, trailers included; each line is
    /// checked before it is passed on.
    pub(super) fn copy_chunked(&mut self, to: &mut impl Write) -> ProxyResult<()> {
        loop {
            let line = self.take_line()?;
            // httparse reads an empty line as size 0; the engine may not.
            if !line[0].is_ascii_hexdigit() {
                return Err(ProxyError::Malformed("a chunk size"));
            }
            let size = match httparse::parse_chunk_size(&line) {
                Ok(httparse::Status::Complete((_, size))) => size,
                _ => return Err(ProxyError::Malformed("a chunk size")),
            };
            to.write_all(&line)?;
            if size == 0 {
                // No trailers: nothing the engine might take for the next request.
                if self.take_line()? != b"\r\n" {
                    return Err(ProxyError::Malformed("trailers after a chunked body"));
                }
                to.write_all(b"\r\n")?;
                return Ok(());
            }
            self.copy(size, to)?;
            if self.take_line()? != b"\r\n" {
                return Err(ProxyError::Malformed("a chunk without its CRLF"));
            }
            to.write_all(b"\r\n")?;
        }
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Neither: for a response, the body runs until the connection closes.
    Unframed,
}

/// `head` (a request head, as received) with `body` as its body: every Content-Length it had
/// replaced by the body's. Lines may end in LF alone (httparse takes them); they leave in CRLF.
pub(super) fn head_with_body(head: &[u8], body: &[u8]) -> Vec<u8> {
    const NAME: &[u8] = b"content-length:";
    let mut out = Vec::with_capacity(head.len() + body.len() + 32);
    let lines = head
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty());
    for line in lines {
        let named = line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME);
        if !named {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// `head` (a request head, as received) with `target` in its request line; `None` for a head
/// without one (never, once httparse took it).
pub(super) fn head_with_target(head: &[u8], target: &str) -> Option<Vec<u8>> {
    let line_end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
    let line = &head[..line_end];
    let (Some(first), Some(last)) = (
        line.iter().position(|b| *b == b' '),
        line.iter().rposition(|b| *b == b' '),
    ) else {
        return None;
    };
    if first == last {
        return None;
    }
    let mut out = Vec::with_capacity(head.len() + target.len());
    out.extend_from_slice(&line[..=first]);
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(&line[last..]);
    out.extend_from_slice(&head[line_end..]);
    Some(out)
}

/// What a head says, once parsed.
pub(super) struct Head {
    /// The whole head, as received.
    pub(super) bytes: Vec<u8>,
    pub(super) method: String,
    pub(super) target: String,
    pub(super) framing: Framing,
    /// A response switching to another protocol (`101`): raw bytes from here.
    pub(super) upgrade: bool,
    /// The connection ends after this exchange (`Connection: close`, or HTTP/1.0).
    pub(super) close: bool,
    /// An interim response (1xx other than 101): the final one follows.
    pub(super) interim: bool,
    /// A response's status code; 0 for a request.
    pub(super) status: u16,
}

/// Whether a head asks for the connection to end after this exchange.
pub(super) fn closes(headers: &[httparse::Header<'_>], version: Option<u8>) -> bool {
    let named = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("connection")
            && std::str::from_utf8(h.value).is_ok_and(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"))
            })
    });
    named || version == Some(0)
}

pub(super) fn framing(headers: &[httparse::Header<'_>]) -> ProxyResult<Framing> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in headers {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| ProxyError::Malformed("a header value is not text"))?
            .trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            // Digits only: Rust would also take a sign, which the engine refuses.
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            let n = value
                .parse::<u64>()
                .ok()
                .filter(|_| digits)
                .ok_or(ProxyError::Malformed("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ProxyError::Malformed(
                    "two different Content-Length headers",
                ));
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case("chunked") {
                return Err(ProxyError::Malformed(
                    "a transfer coding other than chunked",
                ));
            }
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(ProxyError::Malformed(
            "both Content-Length and chunked transfer coding",
        )),
        (Some(n), false) => Ok(Framing::Length(n)),
        (None, true) => Ok(Framing::Chunked),
        (None, false) => Ok(Framing::Unframed),
    }
}

/// What the engine could read differently from the proxy, or wait on forever, refused.
pub(super) fn check_request(
    headers: &[httparse::Header<'_>],
    version: Option<u8>,
    framing: Framing,
) -> ProxyResult<()> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    // A client waiting for `100 Continue` before it sends its body would wait for the proxy
    // while the proxy waits for the body.
    if named("expect").next().is_some() {
        return Err(ProxyError::Malformed(
            "an Expect header (send the body without waiting for 100 Continue)",
        ));
    }
    // The engine ignores a transfer coding on HTTP/1.0, so a chunked body would be read as
    // the next request.
    if version == Some(0) && framing == Framing::Chunked {
        return Err(ProxyError::Malformed("chunked transfer coding in HTTP/1.0"));
    }
    // The engine reads its parameters from a form body as well as from the query, which is
    // all the decision saw (`/images/create` is a pull or an import by its parameters, a build
    // uses BuildKit or the host's network by them): Go's FormValue parses a URL-encoded body,
    // and a multipart/form-data one, appending their values to the query's.
    let form = named("content-type").any(|h| is_form(h.value));
    if form && framing != Framing::None && framing != Framing::Length(0) {
        return Err(ProxyError::Malformed(
            "a form body (the engine would read parameters the decision did not see)",
        ));
    }
    Ok(())
}

/// Whether a Content-Type may name a form the engine would read parameters from: its media
/// type, trimmed and in any case as Go's mime.ParseMediaType reads it, is URL-encoded or any
/// multipart type. Go trims Unicode spaces and lowercases Unicode letters (U+0130 'İ' becomes
/// 'i'), so any byte outside ASCII counts as a form too; so does a vertical tab, which Go
/// trims and trim_ascii does not.
fn is_form(content_type: &[u8]) -> bool {
    if !content_type.is_ascii() || content_type.contains(&0x0b) {
        return true;
    }
    let media = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    media == b"application/x-www-form-urlencoded" || media.starts_with(b"multipart/")
}

/// Reads a request head; `None` when the client closed the connection between requests.
pub(super) fn read_request(side: &mut Side) -> ProxyResult<Option<Head>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MOST_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(side.pending()) {
            Ok(httparse::Status::Complete(len)) => {
                let framing = framing(request.headers)?;
                let head = Head {
                    bytes: side.pending()[..len].to_vec(),
                    method: request.method.unwrap_or_default().to_string(),
                    target: request.path.unwrap_or_default().to_string(),
                    // A request without a length has no body.
                    framing: if framing == Framing::Unframed {
                        Framing::None
                    } else {
                        framing
                    },
                    upgrade: false,
                    close: closes(request.headers, request.version),
                    interim: false,
                    status: 0,
                };
                check_request(request.headers, request.version, head.framing)?;
                side.start += len;
                return Ok(Some(head));
            }
            Ok(httparse::Status::Partial) if side.pending().len() > MOST_HEAD => {
                return Err(ProxyError::Malformed("the request head is too long"))
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(ProxyError::Malformed("the request head")),
        }
        let empty = side.pending().is_empty();
        if !side.fill()? {
            return if empty {
                Ok(None)
            } else {
                Err(ProxyError::Malformed(
                    "the client closed inside a request head",
                ))
            };
        }
    }
}

pub(super) fn read_response(side: &mut Side, request: &Head) -> ProxyResult<Head> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MOST_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(side.pending()) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or_default();
                let framing = framing(response.headers)?;
                let bodiless = request.method.eq_ignore_ascii_case("HEAD")
                    || (100..200).contains(&status) && status != 101
                    || status == 204
                    || status == 304;
                let head = Head {
                    bytes: side.pending()[..len].to_vec(),
                    method: String::new(),
                    target: String::new(),
                    framing: if bodiless { Framing::None } else { framing },
                    upgrade: status == 101,
                    close: closes(response.headers, response.version),
                    interim: (100..200).contains(&status) && status != 101,
                    status,
                };
                side.start += len;
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if side.pending().len() > MOST_HEAD => {
                return Err(ProxyError::Malformed("the response head is too long"))
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(ProxyError::Malformed("the response head")),
        }
        if !side.fill()? {
            return Err(ProxyError::Malformed(
                "the engine closed inside a response head",
            ));
        }
    }
}
