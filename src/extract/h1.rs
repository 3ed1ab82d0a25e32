//! Plain HTTP/1.1 exchanges with `http://` hosts, in the calling task.
//!
//! Why not reqwest for these: through reqwest a call went from the caller's task to
//! hyper's connection task and back, through tower layers and header maps, ~40 µs of CPU a
//! call here (12% of workload R, 2,742 calls of a few KB each). Here a call writes its
//! request in one write and reads its answer from a pooled connection in the task that
//! waits for it. Only where reqwest would add nothing: an `http://` URL and no proxy in
//! the environment (`http_proxy`, `all_proxy`, upper or lower case). Calls to `https://`
//! hosts, data or token, and proxied ones go through reqwest.
//!
//! What it speaks: HTTP/1.1 requests; answers framed by Content-Length, chunked, or (no
//! length) by the end of the connection; 1xx answers skipped; `accept-encoding: identity`
//! sent (loopback and LAN hosts gain nothing from compression), a gzip body sent anyway
//! decoded, any other coding refused. A connection goes back to the pool only after a
//! whole answer that does not ask to close it; one idle for a minute, or closed by its
//! peer (a peek, a real syscall), is dropped when taken. A request on a kept connection
//! that the peer closed before any byte of an answer (the close crossed the request) is
//! sent once more at once on a new connection: a peer closing an idle connection has not
//! read it (one that read it and closed without a word gets it again, as a retry would
//! send it, without the backoff). A host name's
//! addresses are tried in turn, each with its share of the connect time; a host that
//! cannot be connected to within it is `Unreachable` (a failover candidate), and the
//! connect time is kept under the request's own timeout so that rule holds for token
//! calls too. No redirect is followed (the caller refuses 3xx, see `client`). URLs with
//! a user name or password go through reqwest (Basic auth). Errors name the host, never
//! the URL, whose query holds the access token.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::Call;
use super::errors::FetchError;

/// Idle connections kept, all hosts together (reqwest kept 64 per host).
const MAX_IDLE: usize = 64;
/// The most an answer's status line and headers may take, and hold (hyper's limit).
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 100;
/// The most a chunk-size line or trailer line may take.
const MAX_LINE: usize = 4 << 10;
/// Idle longer, a connection may have been forgotten by a NAT or firewall on the way.
const IDLE_MAX: Duration = Duration::from_secs(60);
/// A connection's read buffer past this is not kept in the pool.
const KEEP_BUF: usize = 64 << 10;

pub(super) struct H1 {
    idle: std::sync::Mutex<Vec<Conn>>,
    connect_timeout: Duration,
    idle_max: Duration,
    /// A proxy is configured: reqwest sends everything.
    proxied: bool,
}

struct Conn {
    /// `host[:port]` as the Host header names it.
    authority: String,
    stream: TcpStream,
    /// Bytes read and not yet used: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes read during the exchange under way.
    got: usize,
    idle_since: Instant,
}

/// An answer's status, and its body when the status is a success.
pub(super) struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: Option<Bytes>,
}

/// How an answer's body ends.
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// A body's content coding.
#[derive(Clone, Copy, PartialEq)]
enum Coding {
    Identity,
    Gzip,
}

/// An exchange that failed: `Stale` if the connection was closed before any byte of an
/// answer came (the request may be sent again on a new one).
enum Failed {
    Stale(FetchError),
    Other(FetchError),
}

fn proxy_in_env() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

impl H1 {
    pub(super) fn new(connect_timeout: Duration) -> Self {
        H1 {
            idle: Default::default(),
            connect_timeout,
            idle_max: IDLE_MAX,
            proxied: proxy_in_env(),
        }
    }

    /// Whether this client sends a request to `url` (else reqwest does).
    pub(super) fn serves(&self, url: &reqwest::Url) -> bool {
        !self.proxied
            && url.scheme() == "http"
            && url.host().is_some()
            && url.username().is_empty()
            && url.password().is_none()
    }

    /// Sends `req` (a request to a URL `serves` accepts) and reads its answer, the body
    /// only for a 2xx status and up to `cap` bytes (`too_large` past it), all within
    /// `timeout`.
    pub(super) async fn send(
        &self,
        req: &Call,
        cap: usize,
        timeout: Duration,
        too_large: impl Fn() -> FetchError,
    ) -> Result<Answer, FetchError> {
        let url = &req.url;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let head = request_head(req, &authority);
        // Connecting ends before the request's own deadline, so a host that cannot be
        // reached is always reported as such.
        let connect_within = self.connect_timeout.min(timeout.mul_f64(0.75));
        let exchange = async {
            let conn = match self.take(&authority) {
                Some(c) => match c.exchange(&head, req, cap, &too_large).await {
                    Err(Failed::Stale(_)) => self.connect(url, &authority, connect_within).await?,
                    done => return self.finish(done),
                },
                None => self.connect(url, &authority, connect_within).await?,
            };
            let done = conn.exchange(&head, req, cap, &too_large).await;
            self.finish(done)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Transient(format!(
                "timeout: {authority} did not answer within {timeout:?}"
            ))),
        }
    }

    fn finish(&self, done: Result<(Answer, Option<Conn>), Failed>) -> Result<Answer, FetchError> {
        match done {
            Ok((answer, keep)) => {
                if let Some(conn) = keep {
                    self.put(conn);
                }
                Ok(answer)
            }
            Err(Failed::Stale(e) | Failed::Other(e)) => Err(e),
        }
    }

    /// An idle connection to `authority`, not idle too long, its peer has not closed.
    fn take(&self, authority: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(i) = idle.iter().rposition(|c| c.authority == authority) {
            let c = idle.swap_remove(i);
            if c.idle_since.elapsed() > self.idle_max {
                continue;
            }
            // A peek asks the socket itself (tokio's try_read answers from readiness it
            // may not have polled yet). Open and quiet: WouldBlock. Closed (0) or talking
            // out of turn: dropped. Through `try_io` where tokio holds the socket readable
            // (the last answer's read left it so): its WouldBlock clears that, and the
            // answer's first read then waits for the poller instead of failing a recv.
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
            let mut peeked = false;
            let mut r = c.stream.try_io(tokio::io::Interest::READABLE, || {
                peeked = true;
                socket2::SockRef::from(&c.stream).peek(&mut probe)
            });
            if !peeked {
                r = socket2::SockRef::from(&c.stream).peek(&mut probe);
            }
            if r.is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock) {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, mut conn: Conn) {
        if conn.buf.capacity() > KEEP_BUF {
            conn.buf = Vec::with_capacity(16 << 10);
        }
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() >= MAX_IDLE {
                idle.remove(0);
            }
            idle.push(conn);
        }
    }

    /// A new connection to the URL's host: its addresses in turn, each with its share
    /// of `within`.
    async fn connect(
        &self,
        url: &reqwest::Url,
        authority: &str,
        within: Duration,
    ) -> Result<Conn, FetchError> {
        let port = url.port_or_known_default().unwrap_or(80);
        let unreachable = |e: &dyn std::fmt::Display| {
            FetchError::Unreachable(format!("cannot connect to {authority}: {e}"))
        };
        let deadline = Instant::now() + within;
        // An IPv6 literal keeps its brackets in the URL.
        let host = url.host_str().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![(ip, port).into()],
            Err(_) => {
                match tokio::time::timeout(within, tokio::net::lookup_host((host, port))).await {
                    Ok(Ok(a)) => a.collect(),
                    Ok(Err(e)) => return Err(unreachable(&e)),
                    Err(_) => return Err(unreachable(&format!("no address within {within:?}"))),
                }
            }
        };
        let mut last = String::from("no address");
        for (k, addr) in addrs.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / u32::try_from(addrs.len() - k).unwrap_or(1);
            match tokio::time::timeout(share, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // Requests are written whole: nothing to gain from coalescing.
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn {
                        authority: authority.to_string(),
                        stream,
                        buf: Vec::with_capacity(16 << 10),
                        pos: 0,
                        got: 0,
                        idle_since: Instant::now(),
                    });
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {share:?}"),
            }
        }
        Err(unreachable(&last))
    }
}

/// The request line and headers (and the body, if any, goes after them in the same write).
fn request_head(req: &Call, authority: &str) -> Vec<u8> {
    let url = &req.url;
    let body = req.json.as_deref().unwrap_or_default();
    let mut h = Vec::with_capacity(256 + body.len());
    h.extend_from_slice(req.method.as_str().as_bytes());
    h.push(b' ');
    h.extend_from_slice(url.path().as_bytes());
    if let Some(q) = url.query() {
        h.push(b'?');
        h.extend_from_slice(q.as_bytes());
    }
    h.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    h.extend_from_slice(authority.as_bytes());
    h.extend_from_slice(b"\r\naccept: */*\r\naccept-encoding: identity\r\n");
    if req.json.is_some() {
        h.extend_from_slice(b"content-type: application/json\r\n");
    }
    if !body.is_empty() || req.method == reqwest::Method::POST {
        h.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    h.extend_from_slice(b"\r\n");
    h.extend_from_slice(body);
    h
}

impl Conn {
    fn broken(&self, what: &str) -> FetchError {
        FetchError::Transient(format!("{}: {what}", self.authority))
    }

    fn io(&self, e: std::io::Error) -> FetchError {
        FetchError::Transient(format!("{}: {e}", self.authority))
    }

    /// Reads more bytes into `buf` (what was used before is dropped first); false at the
    /// end of the connection.
    async fn fill(&mut self) -> Result<bool, FetchError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(16 << 10);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.got += n;
                Ok(true)
            }
            Err(e) => Err(self.io(e)),
        }
    }

    /// One request and its answer, with the connection if it may carry another.
    async fn exchange(
        mut self,
        head: &[u8],
        req: &Call,
        cap: usize,
        too_large: &impl Fn() -> FetchError,
    ) -> Result<(Answer, Option<Conn>), Failed> {
        self.got = 0;
        // Closed or reset before any byte of an answer: the peer closed the connection
        // as the request went out.
        let stale = |c: &Conn, e: FetchError| match c.got {
            0 => Failed::Stale(e),
            _ => Failed::Other(e),
        };
        if let Err(e) = self.stream.write_all(head).await {
            return Err(Failed::Stale(self.io(e)));
        }
        loop {
            let h = match self.head().await {
                Ok(h) => h,
                Err(e) => return Err(stale(&self, e)),
            };
            if (100..200).contains(&h.status) {
                continue;
            }
            let mut answer = Answer {
                status: h.status,
                location: h.location,
                body: None,
            };
            if !(200..300).contains(&h.status) {
                // Its body is not read: the connection goes.
                return Ok((answer, None));
            }
            let other = |e| Err(Failed::Other(e));
            if let Some(bad) = h.bad {
                return other(self.broken(bad));
            }
            let no_body = h.status == 204 || h.status == 304 || req.method == reqwest::Method::HEAD;
            let body = match (no_body, h.framing) {
                (true, _) => Bytes::new(),
                (false, Framing::Length(n)) if n > cap => return other(too_large()),
                (false, Framing::Length(n)) => match self.exact(n).await {
                    Ok(b) => b,
                    Err(e) => return other(e),
                },
                (false, Framing::Chunked) => match self.chunked(cap).await {
                    Ok(Some(b)) => b,
                    Ok(None) => return other(too_large()),
                    Err(e) => return other(e),
                },
                (false, Framing::Close) => match self.until_closed(cap).await {
                    Ok(Some(b)) => b,
                    Ok(None) => return other(too_large()),
                    Err(e) => return other(e),
                },
            };
            answer.body = Some(match h.coding {
                Coding::Identity => body,
                Coding::Gzip => match gunzip(&body, cap) {
                    None => return other(too_large()),
                    Some(Ok(b)) => b,
                    Some(Err(e)) => return other(self.broken(&format!("invalid gzip body ({e})"))),
                },
            });
            // Bytes past the answer were never asked for: the connection goes.
            let keep = h.keep && self.pos == self.buf.len();
            return Ok((answer, keep.then_some(self)));
        }
    }

    /// Status line and headers.
    async fn head(&mut self) -> Result<Head, FetchError> {
        loop {
            if self.pos < self.buf.len() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut r = httparse::Response::new(&mut headers);
                match r.parse(&self.buf[self.pos..]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let parsed = parse_head(&r);
                        self.pos += n;
                        return parsed.map_err(|m| self.broken(m));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(self.broken(&format!("malformed answer ({e})"))),
                }
                if self.buf.len() - self.pos > MAX_HEAD {
                    return Err(self.broken("answer headers larger than 64 KiB"));
                }
            }
            if !self.fill().await? {
                return Err(self.broken("connection closed before an answer"));
            }
        }
    }

    /// The next `n` bytes.
    async fn exact(&mut self, n: usize) -> Result<Bytes, FetchError> {
        let have = self.buf.len() - self.pos;
        if have >= n {
            let b = Bytes::copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(b);
        }
        // Read into the spare capacity, not zeroed first, never past the answer's end.
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(&self.buf[self.pos..]);
        self.pos = self.buf.len();
        while out.len() < n {
            let missing = (n - out.len()) as u64;
            match (&mut self.stream).take(missing).read_buf(&mut out).await {
                Ok(0) => return Err(self.broken("connection closed before the answer's end")),
                Ok(_) => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(out.into())
    }

    /// A CRLF-ended line (without its CRLF).
    async fn line(&mut self) -> Result<Vec<u8>, FetchError> {
        loop {
            let rest = &self.buf[self.pos..];
            if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                let l = rest[..i].to_vec();
                self.pos += i + 2;
                return Ok(l);
            }
            if rest.len() > MAX_LINE {
                return Err(self.broken("chunk line longer than 4 KiB"));
            }
            if !self.fill().await? {
                return Err(self.broken("connection closed inside a chunked answer"));
            }
        }
    }

    /// A chunked body; None past `cap`.
    async fn chunked(&mut self, cap: usize) -> Result<Option<Bytes>, FetchError> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await?;
            let size = l.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size)
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| self.broken("malformed chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(Some(out.into()));
            }
            // `out` never holds more than `cap`: no overflow, however large the size.
            if size > cap - out.len() {
                return Ok(None);
            }
            let chunk = self.exact(size).await?;
            out.extend_from_slice(&chunk);
            if !self.line().await?.is_empty() {
                return Err(self.broken("malformed chunk end"));
            }
        }
    }

    /// The rest of the connection; None past `cap`.
    async fn until_closed(&mut self, cap: usize) -> Result<Option<Bytes>, FetchError> {
        let mut out = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        loop {
            if out.len() > cap {
                return Ok(None);
            }
            out.reserve(16 << 10);
            match self.stream.read_buf(&mut out).await {
                Ok(0) => return Ok(Some(out.into())),
                Ok(_) => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }
}

/// What an answer's status line and headers say.
struct Head {
    status: u16,
    framing: Framing,
    /// The connection may carry another request after this answer.
    keep: bool,
    location: Option<String>,
    coding: Coding,
    /// Why its body cannot be read (conflicting lengths, a coding not asked for): an
    /// error for a success only, as no other body is read.
    bad: Option<&'static str>,
}

/// Only the headers it acts on are read as text: another header that is not UTF-8 (a
/// Latin-1 `Server`) does not fail the answer.
fn text(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(v).map(str::trim).ok()
}

fn parse_head(r: &httparse::Response) -> Result<Head, &'static str> {
    let status = r.code.ok_or("answer without a status")?;
    let mut keep = r.version == Some(1);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut location = None;
    let mut coding = Coding::Identity;
    let mut bad = None;
    for h in r.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            match text(h.value).and_then(|v| v.parse::<usize>().ok()) {
                Some(n) if length.is_none_or(|m| m == n) => length = Some(n),
                Some(_) => bad = Some("conflicting content-length headers"),
                None => bad = Some("malformed content-length"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding; any other coding is refused.
            let v = text(h.value).unwrap_or_default();
            let codings: Vec<&str> = v.split(',').map(str::trim).collect();
            match codings.as_slice() {
                [c] if c.eq_ignore_ascii_case("chunked") => chunked = true,
                [c] if c.eq_ignore_ascii_case("identity") => {}
                _ => bad = Some("unsupported transfer-encoding"),
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for t in text(h.value).unwrap_or_default().split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("close") {
                    keep = false;
                } else if t.eq_ignore_ascii_case("keep-alive") {
                    keep = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-encoding") {
            match text(h.value) {
                Some(c) if c.eq_ignore_ascii_case("identity") || c.is_empty() => {}
                Some(c) if c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip") => {
                    coding = Coding::Gzip
                }
                _ => bad = Some("answer in a content-encoding that was not asked for"),
            }
        } else if name.eq_ignore_ascii_case("location") {
            location = text(h.value).map(str::to_string);
        }
    }
    let framing = match (chunked, length) {
        (true, l) => {
            // Both framings at once: the chunks decide, and the connection goes after.
            if l.is_some() {
                keep = false;
            }
            Framing::Chunked
        }
        (false, Some(n)) => Framing::Length(n),
        (false, None) => {
            keep = false;
            Framing::Close
        }
    };
    Ok(Head {
        status,
        framing,
        keep,
        location,
        coding,
        bad,
    })
}

/// A gzip body, decoded; None past `cap`.
fn gunzip(body: &[u8], cap: usize) -> Option<std::io::Result<Bytes>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(body.len() * 4);
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    match flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
    {
        Ok(n) if n > cap => None,
        Ok(_) => Some(Ok(out.into())),
        Err(e) => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    /// A server answering each request with the next reply (split at `|` into separate
    /// writes, closing the connection after a reply that ends in `#`); an empty reply
    /// closes the connection instead. Counts connections and keeps the requests.
    struct Server {
        port: u16,
        accepts: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<String>>>,
    }

    async fn read_request(s: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < i + 4 + len {
                    let mut b = [0u8; 4096];
                    let n = s.read(&mut b).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&b[..n]);
                }
                return Some(String::from_utf8_lossy(&buf).to_string());
            }
            let mut b = [0u8; 4096];
            let n = s.read(&mut b).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&b[..n]);
        }
    }

    async fn server(replies: Vec<&'static [u8]>) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (Arc::clone(&accepts), Arc::clone(&requests));
        let replies = Arc::new(Mutex::new(replies.into_iter()));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (r, replies) = (Arc::clone(&r), Arc::clone(&replies));
                tokio::spawn(async move {
                    while let Some(req) = read_request(&mut s).await {
                        r.lock().unwrap().push(req);
                        let reply = replies.lock().unwrap().next().unwrap_or(b"");
                        if reply.is_empty() {
                            return;
                        }
                        let (reply, close) = match reply.strip_suffix(b"#") {
                            Some(r) => (r, true),
                            None => (reply, false),
                        };
                        for part in reply.split(|&b| b == b'|') {
                            s.write_all(part).await.unwrap();
                            s.flush().await.unwrap();
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            port,
            accepts,
            requests,
        }
    }

    fn post(port: u16) -> Call {
        let url = format!("http://127.0.0.1:{port}/datacube/getusersummary");
        Call::post(
            url.parse().unwrap(),
            &serde_json::json!({"begin_date": "2024-01-01"}),
        )
        .with_query(&[("access_token", "tok en")])
    }

    async fn send(h: &H1, port: u16, cap: usize) -> Result<Answer, FetchError> {
        h.send(&post(port), cap, Duration::from_secs(5), || {
            FetchError::TooLarge {
                what: "a response body",
                limit: cap,
            }
        })
        .await
    }

    fn body(a: Result<Answer, FetchError>) -> String {
        let a = a.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.status, 200);
        String::from_utf8(a.body.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn answers_framed_by_length_chunks_or_the_end_of_the_connection() {
        let s = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\":|1234}",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\n{\"b\"|\r\n3\r\n:12\r\n1\r\n}\r\n0\r\nX-T: 1\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\n{\"c\":|3}#",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ])
        .await;
        let h = H1::new(Duration::from_secs(5));
        assert_eq!(body(send(&h, s.port, 1 << 20).await), "{\"a\":1234}");
        assert_eq!(body(send(&h, s.port, 1 << 20).await), "{\"b\":12}");
        // No length: the body ends with the connection, which is not kept.
        assert_eq!(body(send(&h, s.port, 1 << 20).await), "{\"c\":3}");
        let a = send(&h, s.port, 10).await.unwrap();
        assert_eq!((a.status, a.body.map(|b| b.len())), (204, Some(0)));
        assert_eq!(s.accepts.load(Ordering::SeqCst), 2);
        let req = s.requests.lock().unwrap()[0].clone();
        assert!(
            req.starts_with(
                "POST /datacube/getusersummary?access_token=tok+en HTTP/1.1\r\nhost: 127.0.0.1:"
            ),
            "{req}"
        );
        assert!(
            req.contains("\r\ncontent-type: application/json\r\n"),
            "{req}"
        );
        assert!(
            req.ends_with("content-length: 27\r\n\r\n{\"begin_date\":\"2024-01-01\"}"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn a_connection_is_kept_only_after_a_whole_answer_that_does_not_close_it() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let s = server(vec![
            ok,
            ok,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            // Closed by the server while idle: the next request opens another.
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}#",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/x?access_token=t\r\n\r\n",
            ok,
        ])
        .await;
        let h = H1::new(Duration::from_secs(5));
        let n = || s.accepts.load(Ordering::SeqCst);
        body(send(&h, s.port, 10).await);
        body(send(&h, s.port, 10).await);
        assert_eq!(n(), 1);
        body(send(&h, s.port, 10).await);
        body(send(&h, s.port, 10).await);
        assert_eq!(n(), 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a = send(&h, s.port, 10).await.unwrap();
        assert_eq!((a.status, a.body.is_none()), (503, true));
        assert_eq!(n(), 3);
        // An error status's body is not read: the connection goes with it.
        let a = send(&h, s.port, 10).await.unwrap();
        assert_eq!(a.status, 302);
        assert_eq!(
            a.location.as_deref(),
            Some("http://elsewhere/x?access_token=t")
        );
        assert_eq!(n(), 4);
        body(send(&h, s.port, 10).await);
        assert_eq!(n(), 5);
    }

    #[tokio::test]
    async fn bodies_past_the_cap_broken_answers_and_silent_hosts_fail() {
        let s = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"a\":1|\r\n6\r\n234567\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"a\":#",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\nFFFFFFFFFFFFFFFF\r\n",
            b"HTTP/1.1 200 OK\r\nServer: Caf\xe9\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 404 Not Found\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}{}",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
        ])
        .await;
        let h = H1::new(Duration::from_secs(5));
        let err = |r: Result<Answer, FetchError>| match r {
            Ok(a) => panic!("status {} accepted", a.status),
            Err(e) => e,
        };
        assert!(matches!(
            err(send(&h, s.port, 10).await),
            FetchError::TooLarge { .. }
        ));
        assert!(matches!(
            err(send(&h, s.port, 10).await),
            FetchError::TooLarge { .. }
        ));
        let e = err(send(&h, s.port, 10).await);
        assert!(
            matches!(&e, FetchError::Transient(m) if m.contains("closed before the answer's end")),
            "{e}"
        );
        for want in [
            "invalid gzip body",
            "content-encoding",
            "conflicting content-length",
            "malformed answer",
        ] {
            let e = err(send(&h, s.port, 10).await);
            assert!(
                matches!(&e, FetchError::Transient(m) if m.contains(want)),
                "{e}"
            );
            assert!(!e.to_string().contains("tok"), "{e}");
        }
        // A chunk size past any cap (or a usize): refused, no overflow.
        assert!(matches!(
            err(send(&h, s.port, 10).await),
            FetchError::TooLarge { .. }
        ));
        // A header it does not read may hold any bytes.
        body(send(&h, s.port, 10).await);
        // A coding not asked for only matters for a body that is read.
        assert_eq!(send(&h, s.port, 10).await.unwrap().status, 404);
        // Bytes past the answer: taken, and the connection dropped.
        let before = s.accepts.load(Ordering::SeqCst);
        body(send(&h, s.port, 10).await);
        let t = std::time::Instant::now();
        let e = h
            .send(&post(s.port), 10, Duration::from_millis(200), || {
                FetchError::Transient("cap".into())
            })
            .await;
        let e = err(e);
        assert!(
            matches!(&e, FetchError::Transient(m) if m.starts_with("timeout")),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(s.accepts.load(Ordering::SeqCst), before + 2);
        // Nothing listening: unreachable (a failover candidate), naming the host only.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = err(send(&h, port, 10).await);
        assert!(
            matches!(&e, FetchError::Unreachable(m) if m.contains("127.0.0.1:")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_gzip_body_sent_unasked_is_decoded_within_the_cap() {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(br#"{"list":[1,2,3]}"#).unwrap();
        let gz = z.finish().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let gz = gz.clone();
                tokio::spawn(async move {
                    while read_request(&mut s).await.is_some() {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                            gz.len()
                        );
                        s.write_all(head.as_bytes()).await.unwrap();
                        s.write_all(&gz).await.unwrap();
                    }
                });
            }
        });
        let h = H1::new(Duration::from_secs(5));
        assert_eq!(body(send(&h, port, 1 << 10).await), r#"{"list":[1,2,3]}"#);
        // Decoded, it is larger than the cap (16 bytes): refused, though 30-odd bytes came.
        assert!(matches!(
            send(&h, port, 15).await,
            Err(FetchError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_request_crossing_the_peers_close_goes_again_on_a_new_connection() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        // The server closes after its first answer without saying so.
        let s = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}#",
            ok,
            ok,
            ok,
        ])
        .await;
        let h = H1::new(Duration::from_secs(5));
        body(send(&h, s.port, 10).await);
        body(send(&h, s.port, 10).await);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 2);
        // Each request reached the server once.
        assert_eq!(s.requests.lock().unwrap().len(), 2);
        // A connection idle past the limit is not used again.
        let mut h = H1::new(Duration::from_secs(5));
        h.idle_max = Duration::ZERO;
        body(send(&h, s.port, 10).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
        body(send(&h, s.port, 10).await);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 4);
    }

    /// Plain http without credentials or a proxy is ours; the rest goes to reqwest, built
    /// as reqwest builds it (JSON type, timeout, Basic auth from the URL).
    #[test]
    fn which_requests_go_where_and_how_reqwest_gets_the_rest() {
        let h = H1::new(Duration::from_secs(1));
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let ours = !h.proxied;
        assert_eq!(h.serves(&url("http://127.0.0.1:9/x")), ours);
        assert!(!h.serves(&url("https://api.weixin.qq.com/x")));
        assert!(!h.serves(&url("http://u:p@relay:8080/x")));
        let proxied = H1 {
            proxied: true,
            ..H1::new(Duration::from_secs(1))
        };
        assert!(!proxied.serves(&url("http://127.0.0.1:9/x")));
        let req = Call::post(url("http://u:p@relay:8080/x"), &serde_json::json!({"a": 1}))
            .with_query(&[("access_token", "t")])
            .timeout(Duration::from_secs(3))
            .into_builder(&reqwest::Client::new())
            .build()
            .unwrap();
        assert_eq!(req.method(), reqwest::Method::POST);
        assert_eq!(req.url().query(), Some("access_token=t"));
        assert_eq!(req.headers()["content-type"], "application/json");
        assert!(req.headers()["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Basic "));
        assert_eq!(req.timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(
            req.body().and_then(|b| b.as_bytes()),
            Some(&b"{\"a\":1}"[..])
        );
    }
}
