//! A minimal OTLP/HTTP receiver on loopback, for tests and local checks of the
//! export: it answers `200 {}` to every request and hands over each request's
//! path and body. Not a collector: it decodes nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// Largest request body accepted (bigger ones end the connection).
const MAX_BODY: usize = 16 << 20;

/// A running receiver: `url` is its base (`http://127.0.0.1:PORT`).
pub struct Receiver {
    pub url: String,
    pub requests: mpsc::Receiver<(String, String)>,
}

impl Receiver {
    /// Binds 127.0.0.1 on a free port and serves on a thread of its own.
    pub fn start() -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &tx);
                });
            }
        });
        Ok(Receiver { url, requests })
    }

    /// The next request (path, body), waiting at most `within`.
    pub fn next(&self, within: Duration) -> Option<(String, String)> {
        self.requests.recv_timeout(within).ok()
    }
}

fn serve(
    mut conn: std::net::TcpStream,
    tx: &mpsc::Sender<(String, String)>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        if len > MAX_BODY {
            return Ok(());
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let _ = tx.send((path, String::from_utf8_lossy(&body).into_owned()));
        conn.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )?;
    }
}
