//! The daemon's HTTP endpoint: `GET /metrics` (Prometheus text), `/healthz` (the process
//! answers), `/readyz` (models loaded, stores reachable, backlog under its limit, not
//! draining, every stream recorded within `daemon.stream_stale_secs`). A plain blocking
//! listener on one thread: requests are tiny and rare.
//!
//! Owns: the listening socket and request parsing. Must not touch: processing state other
//! than through [`Metrics`] and the readiness callback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::metrics::Metrics;

/// Why the daemon is not ready, or `None` when it is.
pub type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Serves until `stop` is set (checked between connections, at least every 200 ms).
pub fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    stop: Arc<AtomicBool>,
) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                let _ = conn.set_nonblocking(false);
                handle(conn, &metrics, &readiness);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn handle(mut conn: TcpStream, metrics: &Metrics, readiness: &Readiness) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut len = 0;
    // Read the request head (the first line is all that matters); at most 4 KiB.
    while len < buf.len() {
        match conn.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n")
                    || buf[..len].windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
            }
            Err(_) => return,
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        )
    } else {
        match path.split('?').next().unwrap_or("") {
            "/metrics" => {
                let ready = readiness().is_none();
                ("200 OK", "text/plain; version=0.0.4", metrics.render(ready))
            }
            "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
            "/readyz" => match readiness() {
                None => ("200 OK", "text/plain", "ready\n".to_string()),
                Some(why) => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("not ready: {why}\n"),
                ),
            },
            _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
        }
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}
