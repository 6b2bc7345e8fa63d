//! Fetching ImageNet weights against a local HTTP server the test starts (no outside
//! network): a good file, a transfer cut short and resumed with a Range request, a corrupted
//! file refused with both hashes named, and no network at all.
use crate::common::bin;
use covid_resnet::fetch::{fetch, part_path, sha256_file};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// How the server answers.
#[derive(Clone, Copy)]
enum Mode {
    /// The whole file, honouring Range.
    Good,
    /// The first answer promises the whole file but stops after this many bytes.
    CutFirstAfter(usize),
}

/// A one-file HTTP/1.1 server on 127.0.0.1; records the Range headers it was sent.
struct Server {
    port: u16,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

fn serve(body: Vec<u8>, mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let range = answer(stream, &body, mode, n);
            seen.lock().unwrap().push(range);
        }
    });
    Server { port, ranges }
}

fn answer(mut stream: TcpStream, body: &[u8], mode: Mode, n: usize) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = Some(v.trim().to_string());
        }
    }
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    let (status, headers) = if start > 0 {
        (
            "206 Partial Content",
            format!(
                "Content-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\n",
                body.len() - 1,
                body.len(),
                body.len() - start
            ),
        )
    } else {
        ("200 OK", format!("Content-Length: {}\r\n", body.len()))
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n"
    );
    let rest = &body[start..];
    let send = match mode {
        Mode::CutFirstAfter(k) if n == 0 => &rest[..k.min(rest.len())],
        _ => rest,
    };
    let _ = stream.write_all(send);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    range
}

fn payload() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn sha_of(bytes: &[u8]) -> String {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    sha256_file(&p).unwrap().0
}

#[test]
fn a_good_file_arrives_checked() {
    let body = payload();
    let s = serve(body.clone(), Mode::Good);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("w").join("file.pth");
    let url = format!("http://127.0.0.1:{}/file.pth", s.port);
    let mut last = (0, None);
    let r = fetch(
        &url,
        &dest,
        &sha_of(&body),
        "",
        &AtomicBool::new(false),
        |a, b| last = (a, b),
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!((r.downloaded, r.reused), (body.len() as u64, 0));
    assert_eq!(last, (body.len() as u64, Some(body.len() as u64)));
    assert!(!part_path(&dest).exists());
    // A second fetch finds it there, checked, and downloads nothing.
    let again = fetch(
        &url,
        &dest,
        &sha_of(&body),
        "",
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(again.downloaded, 0);
}

#[test]
fn an_interrupted_transfer_resumes_where_it_stopped() {
    let body = payload();
    let s = serve(body.clone(), Mode::CutFirstAfter(100_000));
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("file.pth");
    let url = format!("http://127.0.0.1:{}/file.pth", s.port);
    let sha = sha_of(&body);
    let e = fetch(&url, &dest, &sha, "", &AtomicBool::new(false), |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("fetch again to continue"), "{e}");
    let part = part_path(&dest);
    let kept = std::fs::metadata(&part).unwrap().len();
    assert_eq!(kept, 100_000, "what arrived is kept");
    let r = fetch(&url, &dest, &sha, "", &AtomicBool::new(false), |_, _| {}).unwrap();
    assert_eq!(r.reused, 100_000);
    assert_eq!(r.downloaded, body.len() as u64 - 100_000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let ranges = s.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![None, Some("bytes=100000-".to_string())]);
}

fn cli_fetch(base: &str, dir: &Path) -> std::process::Output {
    Command::new(bin())
        .args(["weights", "fetch", "resnet18", "--base-url", base, "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn a_corrupted_file_is_refused_with_the_mismatch_named() {
    // Whatever the server sends is not torchvision's resnet18: the hash cannot match.
    let s = serve(payload(), Mode::Good);
    let d = tempfile::tempdir().unwrap();
    let o = cli_fetch(&format!("http://127.0.0.1:{}", s.port), d.path());
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&sha_of(&payload()))
            && e.contains("f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"),
        "{e}"
    );
    assert!(e.contains("not kept"), "{e}");
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "a corrupted download must not stay: {left:?}"
    );
}

#[test]
fn without_a_network_the_manual_way_is_named() {
    // A port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = tempfile::tempdir().unwrap();
    let o = cli_fetch(&format!("http://127.0.0.1:{port}"), d.path());
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("Without a network: download")
            && e.contains("resnet18-f37072fd.pth")
            && e.contains("--weights"),
        "{e}"
    );
    // `train --weights resnet18` before a fetch says how to fetch.
    let o = Command::new(bin())
        .env("COVID_RESNET_HOME", d.path())
        .args(["train", "--data", ".", "--weights", "resnet18"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("covid-resnet weights fetch resnet18"), "{e}");
}
