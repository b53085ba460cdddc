//! A small HTTP proxy in front of a test registry that records every request and can answer
//! chosen requests with an error status instead of forwarding them (fault injection).
//!
//! ```ignore
//! let proxy = FaultProxy::start(&reg.addr());
//! proxy.fail("GET", "/blobs/", 500, 1);   // the next blob GET gets a 500
//! // ... use proxy.addr() as the registry ...
//! assert_eq!(proxy.count("GET", "/blobs/"), 2);
//! ```
//! Each request gets its own upstream connection (`Connection: close` is forced), so every
//! request passes the fault check. TLS handshakes are refused: the proxy speaks plain HTTP.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

struct Fault {
    method: String,
    path_contains: String,
    status: u16,
    remaining: usize,
}

type Hook = Box<dyn FnOnce() + Send>;

struct OnRequest {
    method: String,
    path_contains: String,
    hook: Option<Hook>,
}

/// A running fault-injecting proxy; stops when dropped.
pub struct FaultProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
    hooks: Arc<Mutex<Vec<OnRequest>>>,
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let proxy = FaultProxy {
            port,
            stop: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(Mutex::new(Vec::new())),
            faults: Arc::new(Mutex::new(Vec::new())),
            hooks: Arc::new(Mutex::new(Vec::new())),
        };
        let (stop, requests, faults, hooks) = (
            proxy.stop.clone(),
            proxy.requests.clone(),
            proxy.faults.clone(),
            proxy.hooks.clone(),
        );
        let upstream = upstream.to_string();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (requests, faults, hooks, upstream) = (
                    requests.clone(),
                    faults.clone(),
                    hooks.clone(),
                    upstream.clone(),
                );
                thread::spawn(move || {
                    let _ = handle(conn, &upstream, &requests, &faults, &hooks);
                });
            }
        });
        proxy
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Answers the next `times` requests with `method` whose path contains `path_contains`
    /// with `status`, without forwarding them.
    pub fn fail(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        self.faults.lock().unwrap().push(Fault {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            status,
            remaining: times,
        });
    }

    /// Runs `hook` once, when the first request with `method` and a path containing
    /// `path_contains` arrives, before it is forwarded (e.g. to stop the registry mid-push).
    pub fn on_request(
        &self,
        method: &str,
        path_contains: &str,
        hook: impl FnOnce() + Send + 'static,
    ) {
        self.hooks.lock().unwrap().push(OnRequest {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            hook: Some(Box::new(hook)),
        });
    }

    /// Every request line seen (`METHOD PATH`), faulted ones included.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests with `method` had a path containing `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.split_once(' ')
                    .is_some_and(|(m, p)| m == method && p.contains(path_contains))
            })
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    requests: &Mutex<Vec<String>>,
    faults: &Mutex<Vec<Fault>>,
    hooks: &Mutex<Vec<OnRequest>>,
) -> std::io::Result<()> {
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(()); // closed, or a TLS ClientHello: not for a plain HTTP proxy
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    requests.lock().unwrap().push(format!("{method} {path}"));
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let content_length: u64 = headers
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);

    let injected = {
        let mut faults = faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.contains(&f.path_contains))
            .map(|f| {
                f.remaining -= 1;
                f.status
            })
    };
    if let Some(status) = injected {
        std::io::copy(&mut (&client).take(content_length), &mut std::io::sink())?;
        let body = format!(
            "{{\"errors\":[{{\"code\":\"UNKNOWN\",\"message\":\"injected fault {status}\"}}]}}"
        );
        write!(
            client,
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return client.shutdown(Shutdown::Both);
    }

    let hook = hooks
        .lock()
        .unwrap()
        .iter_mut()
        .find(|h| h.hook.is_some() && h.method == method && path.contains(&h.path_contains))
        .and_then(|h| h.hook.take());
    if let Some(hook) = hook {
        hook();
    }
    // An unreachable upstream drops the client's connection, as a stopped registry would.
    let mut server = TcpStream::connect(upstream)?;
    let mut forwarded = format!("{request_line}\r\n");
    for h in headers {
        let name = h.split(':').next().unwrap_or_default();
        if !name.eq_ignore_ascii_case("connection") {
            forwarded.push_str(h);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    server.write_all(forwarded.as_bytes())?;
    let mut client_reader = client.try_clone()?;
    let mut server_writer = server.try_clone()?;
    let upload = thread::spawn(move || {
        let _ = std::io::copy(
            &mut (&mut client_reader).take(content_length),
            &mut server_writer,
        );
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = upload.join();
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}
