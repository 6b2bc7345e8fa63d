//! Fetching ImageNet weights against a local HTTP server the test starts (no outside
//! network): a good file, a transfer cut short and resumed with a Range request, a corrupted
//! file refused with both hashes named, no network at all, and hostile servers: an endless
//! body, an absurd Content-Length, a transfer that stalls, an answer that never comes.
use crate::common::bin;
use covid_resnet::fetch::{fetch, part_path, sha256_file, Download};
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
    /// No Content-Length, and bytes without end (the test's bound: 64 times the file).
    Endless,
    /// Content-Length: 10^18, then the file.
    HugeLength,
    /// The first answer sends this many bytes, then nothing for the given seconds.
    StallFirstAfter(usize, u64),
    /// Reads the request, then says nothing for the given seconds.
    Silent(u64),
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
    let body = Arc::new(body);
    std::thread::spawn(move || {
        // A thread an answer: a stalled one does not hold up the next request.
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let (body, seen) = (body.clone(), seen.clone());
            std::thread::spawn(move || answer(stream, &body, mode, n, &seen));
        }
    });
    Server { port, ranges }
}

fn answer(
    mut stream: TcpStream,
    body: &[u8],
    mode: Mode,
    n: usize,
    seen: &Mutex<Vec<Option<String>>>,
) {
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
    seen.lock().unwrap().push(range.clone());
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    if let Mode::Silent(secs) = mode {
        std::thread::sleep(std::time::Duration::from_secs(secs));
        return;
    }
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
    } else if matches!(mode, Mode::Endless) {
        ("200 OK", String::new())
    } else if matches!(mode, Mode::HugeLength) {
        (
            "200 OK",
            "Content-Length: 1000000000000000000\r\n".to_string(),
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
        Mode::CutFirstAfter(k) | Mode::StallFirstAfter(k, _) if n == 0 => {
            &rest[..k.min(rest.len())]
        }
        _ => rest,
    };
    let _ = stream.write_all(send);
    match mode {
        Mode::Endless => {
            for _ in 0..64 {
                if stream.write_all(body).is_err() {
                    break;
                }
            }
        }
        Mode::StallFirstAfter(_, secs) if n == 0 => {
            let _ = stream.flush();
            std::thread::sleep(std::time::Duration::from_secs(secs));
        }
        _ => {}
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn payload() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn want<'a>(url: &'a str, dest: &'a Path, sha: &'a str, len: usize) -> Download<'a> {
    Download {
        url,
        dest,
        sha256: sha,
        len: len as u64,
        manual: "",
        stall: std::time::Duration::from_secs(2),
    }
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
    let sha = sha_of(&body);
    let r = fetch(
        &want(&url, &dest, &sha, body.len()),
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
        &want(&url, &dest, &sha, body.len()),
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
    let w = want(&url, &dest, &sha, body.len());
    let e = fetch(&w, &AtomicBool::new(false), |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("fetch again to continue"), "{e}");
    let part = part_path(&dest);
    let kept = std::fs::metadata(&part).unwrap().len();
    assert_eq!(kept, 100_000, "what arrived is kept");
    let r = fetch(&w, &AtomicBool::new(false), |_, _| {}).unwrap();
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
    // The right length, other bytes: the hash cannot match.
    let body = payload();
    let s = serve(body.clone(), Mode::Good);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("file.pth");
    let url = format!("http://127.0.0.1:{}/file.pth", s.port);
    let expected = sha_of(b"the file asked for");
    let e = fetch(
        &want(&url, &dest, &expected, body.len()),
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&sha_of(&body)) && e.contains(&expected) && e.contains("not kept"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "a corrupted download must not stay: {left:?}"
    );
    // Whatever this server sends is not torchvision's resnet18: its length already says so.
    let o = cli_fetch(&format!("http://127.0.0.1:{}", s.port), d.path());
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&format!(
            "announces {} bytes, but the file is 46830571 bytes",
            body.len()
        )),
        "{e}"
    );
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
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

#[test]
fn an_endless_body_is_cut_at_the_files_length() {
    // Before: 4.36 GB written in 15 s for a 44.7 MB file. Now nothing past the known length
    // is read: the bytes that arrived are the file's own, so here the download even succeeds.
    let body = payload();
    let s = serve(body.clone(), Mode::Endless);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("file.pth");
    let url = format!("http://127.0.0.1:{}/file.pth", s.port);
    let sha = sha_of(&body);
    let mut most = 0;
    let r = fetch(
        &want(&url, &dest, &sha, body.len()),
        &AtomicBool::new(false),
        |done, _| most = most.max(done),
    )
    .unwrap();
    assert_eq!(most, body.len() as u64);
    assert_eq!(r.downloaded, body.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    // A file shorter than what the endless server sends: cut at its length, the hash
    // refuses it, nothing stays.
    let dest2 = d.path().join("short.pth");
    let e = fetch(
        &want(&url, &dest2, &sha_of(&[7u8; 1000]), 1000),
        &AtomicBool::new(false),
        |done, _| assert!(done <= 1000, "{done} bytes"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not kept"), "{e}");
    assert!(!dest2.exists() && !part_path(&dest2).exists());
}

#[test]
fn a_larger_announced_length_is_refused_before_writing() {
    let body = payload();
    let s = serve(body.clone(), Mode::HugeLength);
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("file.pth");
    let url = format!("http://127.0.0.1:{}/file.pth", s.port);
    let e = fetch(
        &want(&url, &dest, &sha_of(&body), body.len()),
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("announces 1000000000000000000 bytes")
            && e.contains(&format!("{} bytes", body.len()))
            && e.contains("refused"),
        "{e}"
    );
    assert!(!dest.exists() && !part_path(&dest).exists());
    // The command line says the same with the zoo's length of resnet18.
    let o = cli_fetch(&format!("http://127.0.0.1:{}", s.port), d.path());
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("announces 1000000000000000000 bytes, but the file is 46830571 bytes"),
        "{e}"
    );
}

#[test]
fn a_stalled_transfer_times_out_and_resumes() {
    // Before: a server that stalls mid-transfer hung the command forever.
    let body = payload();
    let s = serve(body.clone(), Mode::StallFirstAfter(120_000, 20));
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("file.pth");
    let url = format!("http://127.0.0.1:{}/file.pth", s.port);
    let sha = sha_of(&body);
    let w = want(&url, &dest, &sha, body.len());
    let t = std::time::Instant::now();
    let e = fetch(&w, &AtomicBool::new(false), |_, _| {})
        .unwrap_err()
        .to_string();
    let took = t.elapsed().as_secs_f64();
    assert!(took < 15.0, "gave up after {took} s");
    assert!(
        e.contains("no byte arrived for 2 s after 120000 bytes")
            && e.contains("fetch again to continue"),
        "{e}"
    );
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 120_000);
    let r = fetch(&w, &AtomicBool::new(false), |_, _| {}).unwrap();
    assert_eq!(
        (r.reused, r.downloaded),
        (120_000, body.len() as u64 - 120_000)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn a_server_that_never_answers_times_out() {
    let s = serve(payload(), Mode::Silent(20));
    let d = tempfile::tempdir().unwrap();
    // The command line's own limit, set short.
    let t = std::time::Instant::now();
    let o = Command::new(bin())
        .args([
            "weights",
            "fetch",
            "resnet18",
            "--stall-timeout",
            "1",
            "--base-url",
        ])
        .arg(format!("http://127.0.0.1:{}", s.port))
        .arg("--dir")
        .arg(d.path())
        .output()
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    assert!(!o.status.success());
    assert!(took < 15.0, "gave up after {took} s");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no answer within 1 s"), "{e}");
}
