//! Loopback networking for tests: free ports, a tiny HTTP client, and a TCP proxy that injects
//! faults (refuse, cut, throttle, answer 503).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A free TCP port on 127.0.0.1, never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`). `path` includes the
/// query. Returns an error when nothing listens.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad HTTP response: {}", String::from_utf8_lossy(&raw)),
        )
    })
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// How a [`TcpProxy`] treats connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways.
    Forward,
    /// Accept, then close at once (the server is down).
    Refuse,
    /// Answer every request with `503 Service Unavailable` (an unhealthy HTTP server).
    ServiceUnavailable,
    /// Forward the next `n` connections; after them, forward HTTP/2 connection set-up
    /// (settings, pings) but withhold every answer (HEADERS, DATA, RST_STREAM frames): a
    /// gRPC server that accepts calls and never responds. Plain-text HTTP/2 only.
    SilentAnswersAfter(u32),
    /// Forward, but drop every `If-None-Match` header from HTTP/1.1 requests: an S3 server
    /// that ignores create-only puts (request heads must arrive whole in one read, as hyper
    /// writes them on loopback).
    StripIfNoneMatch,
}

struct ProxyState {
    mode: Mutex<ProxyMode>,
    /// Bytes per second from the server to the client; 0 is unlimited.
    throttle: AtomicU64,
    /// Bytes forwarded from the server to the client so far.
    downstream_bytes: AtomicU64,
    /// Every live connection, to cut them.
    connections: Mutex<Vec<TcpStream>>,
    /// While set, an HTTP/1.1 request whose request line starts with `.0` and contains `.1` is
    /// held (not forwarded) until this is cleared or the proxy stops.
    hold: Mutex<Option<(String, String)>>,
    /// Requests held so far.
    held: AtomicU64,
    stop: AtomicBool,
}

/// A TCP proxy on a free loopback port in front of `target`, for fault injection.
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

impl TcpProxy {
    /// Starts forwarding from a free port to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(ProxyState {
            mode: Mutex::new(ProxyMode::Forward),
            throttle: AtomicU64::new(0),
            downstream_bytes: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
            hold: Mutex::new(None),
            held: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let mode = {
                    let mut mode = accept_state.mode.lock().unwrap_or_else(|e| e.into_inner());
                    match *mode {
                        ProxyMode::SilentAnswersAfter(n) if n > 0 => {
                            *mode = ProxyMode::SilentAnswersAfter(n - 1);
                            ProxyMode::Forward
                        }
                        other => other,
                    }
                };
                match mode {
                    ProxyMode::Refuse => {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    ProxyMode::ServiceUnavailable => {
                        std::thread::spawn(move || answer_503(client));
                    }
                    ProxyMode::Forward
                    | ProxyMode::SilentAnswersAfter(_)
                    | ProxyMode::StripIfNoneMatch => {
                        let Ok(server) = TcpStream::connect(target) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        let silent = matches!(mode, ProxyMode::SilentAnswersAfter(_));
                        let strip = mode == ProxyMode::StripIfNoneMatch;
                        forward(client, server, &accept_state, silent, strip);
                    }
                }
            }
        });
        Self { addr, state }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets how new connections are treated (existing ones keep going; see [`Self::cut`]).
    pub fn set_mode(&self, mode: ProxyMode) {
        *self.state.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// Limits server→client bandwidth to `bytes_per_second` (0: unlimited).
    pub fn throttle(&self, bytes_per_second: u64) {
        self.state
            .throttle
            .store(bytes_per_second, Ordering::SeqCst);
    }

    /// Bytes forwarded from the server so far.
    pub fn downstream_bytes(&self) -> u64 {
        self.state.downstream_bytes.load(Ordering::SeqCst)
    }

    /// From now on, holds every HTTP/1.1 request whose request line starts with `method` and
    /// contains `pattern` (e.g. `POST`, `uploadId=`: S3's CompleteMultipartUpload) instead of
    /// forwarding it, until [`Self::release`]: a server that takes a request and never
    /// answers. Other requests pass.
    pub fn hold_requests(&self, method: &str, pattern: &str) {
        *self.state.hold.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((format!("{method} "), pattern.to_string()));
    }

    /// Forwards the held requests and holds no more.
    pub fn release(&self) {
        *self.state.hold.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How many requests were held so far.
    pub fn held_requests(&self) -> u64 {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Closes every live connection.
    pub fn cut(&self) {
        let mut connections = self
            .state
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for connection in connections.drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer_503(mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buffer = [0u8; 16 * 1024];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
    let body = b"<Error><Code>ServiceUnavailable</Code><Message>injected by the test proxy</Message></Error>";
    let _ = write!(
        client,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(body);
    let _ = client.shutdown(Shutdown::Both);
}

fn forward(
    client: TcpStream,
    server: TcpStream,
    state: &Arc<ProxyState>,
    silent: bool,
    strip_if_none_match: bool,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut connections = state.connections.lock().unwrap_or_else(|e| e.into_inner());
        for stream in [&client, &server] {
            if let Ok(clone) = stream.try_clone() {
                connections.push(clone);
            }
        }
    }
    let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up_state = state.clone();
    std::thread::spawn(move || {
        if strip_if_none_match {
            pump_without_if_none_match(client_read, server)
        } else {
            pump(client_read, server, &up_state, false)
        }
    });
    let down_state = state.clone();
    if silent {
        std::thread::spawn(move || pump_without_answers(server_read, client));
    } else {
        std::thread::spawn(move || pump(server_read, client, &down_state, true));
    }
}

/// Forwards a server's HTTP/2 frames to the client except those that answer a request
/// (DATA, HEADERS, RST_STREAM, CONTINUATION).
fn pump_without_answers(mut from: TcpStream, mut to: TcpStream) {
    const ANSWERS: [u8; 4] = [0x0, 0x1, 0x3, 0x9];
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        // Frames: 3-byte length, type, flags, 4-byte stream id, payload.
        while pending.len() >= 9 {
            let length = usize::from(pending[0]) << 16
                | usize::from(pending[1]) << 8
                | usize::from(pending[2]);
            if pending.len() < 9 + length {
                break;
            }
            let frame: Vec<u8> = pending.drain(..9 + length).collect();
            if !ANSWERS.contains(&frame[3]) && to.write_all(&frame).is_err() {
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Whether `chunk` starts a request the proxy holds now (its request line matches the hold).
fn is_held(state: &ProxyState, chunk: &[u8]) -> bool {
    let hold = state.hold.lock().unwrap_or_else(|e| e.into_inner());
    let Some((method, pattern)) = hold.as_ref() else {
        return false;
    };
    let line_end = chunk
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(chunk.len());
    let line = String::from_utf8_lossy(&chunk[..line_end]);
    line.starts_with(method.as_str()) && line.contains(pattern.as_str())
}

/// Forwards requests without their `If-None-Match` header lines.
fn pump_without_if_none_match(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&without_if_none_match(&buffer[..n])).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// `bytes` without any `\r\nIf-None-Match: …` line (case-insensitive name).
fn without_if_none_match(bytes: &[u8]) -> Vec<u8> {
    const NAME: &[u8] = b"\r\nif-none-match:";
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() >= NAME.len() && rest[..NAME.len()].eq_ignore_ascii_case(NAME) {
            // Skip to the CRLF that ends the line (kept: it starts the next line).
            let line_end = rest[2..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(rest.len(), |p| p + 2);
            at += line_end;
            continue;
        }
        out.push(bytes[at]);
        at += 1;
    }
    out
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: &ProxyState, downstream: bool) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let limit = if downstream {
            state.throttle.load(Ordering::SeqCst)
        } else {
            0
        };
        // Under a throttle, move small slices and sleep so the rate holds.
        let want = if limit > 0 {
            buffer.len().min((limit / 20).max(1) as usize)
        } else {
            buffer.len()
        };
        let n = match from.read(&mut buffer[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !downstream && is_held(state, &buffer[..n]) {
            state.held.fetch_add(1, Ordering::SeqCst);
            while is_held(state, &buffer[..n]) && !state.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
        if downstream {
            state.downstream_bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
        if limit > 0 {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / limit as f64));
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_if_none_match_lines() {
        let head =
            b"PUT /b/k HTTP/1.1\r\nhost: x\r\nIf-None-Match: *\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(
            without_if_none_match(head),
            b"PUT /b/k HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok"
        );
        let lower = b"GET / HTTP/1.1\r\nif-none-match: \"e\"\r\n\r\n";
        assert_eq!(without_if_none_match(lower), b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn parses_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let response = parse_response(raw).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"abcde");
    }
}
