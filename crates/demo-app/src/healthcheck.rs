//! `demo-app healthcheck`: a container HEALTHCHECK for an image with no shell
//! or curl. Plain blocking HTTP/1.1 over std: nothing to start, nothing to link.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Probes `GET /health` on `addr`; Ok when it answers 200.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    stream
        .write_all(
            format!(
                "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: demo-app-healthcheck\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .map_err(|e| format!("cannot send request to {addr}: {e}"))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    // The status line is all we need; stop at the first line break.
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("no answer from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or("");
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("{addr}/health answered {code}")),
        None => Err(format!("{addr}/health sent no HTTP status line")),
    }
}
