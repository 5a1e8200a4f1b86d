//! The DevOps Agent bridge against a local HTTP server: the first attempt
//! gets a 503 and is retried; the accepted request's signature is checked
//! against a reference computed independently by `openssl dgst -hmac` over
//! `timestamp:body`, as AWS documents for generic webhooks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use demo_aws::alarm::AlarmMessage;
use demo_aws::webhook::{Incident, SIGNATURE_HEADER, TIMESTAMP_HEADER, Webhook};

struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answers each connection with the next status; returns what it received.
fn serve(statuses: Vec<u16>) -> (String, std::thread::JoinHandle<Vec<Request>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/webhook/generic/test",
        l.local_addr().unwrap().port()
    );
    let h = std::thread::spawn(move || {
        let mut got = Vec::new();
        for status in statuses {
            let (s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap(); // request line
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap();
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let mut s = s;
            write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            got.push(Request { headers, body });
        }
        got
    });
    (url, h)
}

/// base64(HMAC-SHA256) by openssl, independent of the crate's code.
fn openssl_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}:").into_bytes();
    msg.extend_from_slice(body);
    let mut dgst = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    dgst.stdin.take().unwrap().write_all(&msg).unwrap();
    let mac = dgst.wait_with_output().unwrap().stdout;
    assert_eq!(mac.len(), 32, "openssl printed a SHA-256 MAC");
    let mut b64 = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    b64.stdin.take().unwrap().write_all(&mac).unwrap();
    String::from_utf8(b64.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned()
}

fn alarm() -> AlarmMessage {
    AlarmMessage {
        alarm_name: "error-count-high".into(),
        new_state_value: "ALARM".into(),
        old_state_value: "OK".into(),
        new_state_reason:
            "Threshold Crossed: 1 datapoint [42.0] was greater than the threshold (10.0).".into(),
        state_change_time: "2026-01-02T03:04:05.678+0000".into(),
        trigger: None,
    }
}

#[test]
fn the_signature_matches_an_independent_hmac_and_a_503_is_retried() {
    let (url, server) = serve(vec![503, 200]);
    let secret = "whsec-test-0123456789";
    let mut hook = Webhook::new(&url, secret.as_bytes().to_vec());
    hook.first_backoff = Duration::from_millis(10);
    let incident = Incident::from_alarm(
        &alarm(),
        1_767_323_045_678,
        "devops-agent-demo",
        Some("s3://b/r.html"),
    );
    assert_eq!(hook.send(&incident).unwrap(), 200);
    let got = server.join().unwrap();
    assert_eq!(got.len(), 2, "one retry after the 503");
    for r in &got {
        let ts = r.header(TIMESTAMP_HEADER).expect("timestamp header");
        let sig = r.header(SIGNATURE_HEADER).expect("signature header");
        assert!(
            ts.ends_with('Z') && ts.len() == 24,
            "ISO 8601 UTC with ms: {ts}"
        );
        assert_eq!(sig, openssl_signature(secret, ts, &r.body));
        assert_ne!(sig, openssl_signature("another-secret", ts, &r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["eventType"], "incident");
        assert_eq!(v["incidentId"], "error-count-high-1767323045678");
        assert_eq!(v["data"]["investigator_report"], "s3://b/r.html");
    }
}

#[test]
fn a_4xx_is_final_and_named() {
    let (url, server) = serve(vec![401]);
    let mut hook = Webhook::new(&url, b"k".to_vec());
    hook.first_backoff = Duration::from_millis(10);
    let e = hook
        .send(&Incident::from_alarm(&alarm(), 0, "svc", None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 401") && e.contains("not retried"), "{e}");
    assert_eq!(server.join().unwrap().len(), 1);
}
