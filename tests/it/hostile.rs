//! A hostile-input corpus generated on the fly: truncated and bit-flipped files of every
//! format, empty and mislabelled files, a decompression bomb, extreme sizes, constant and NaN
//! images, a directory and an unreadable file where images are expected, broken split files and
//! checkpoints. `predict`, `data check`, `train` and `eval` must name the file in one clear
//! message, exit non-zero where something failed, never panic, and stay within a memory cap;
//! the GUI shows the messages and keeps running.
use crate::common::bin;
use crate::training::write_synthetic;
use crate::viewer_infer::{film, write_model};
use covid_resnet::data::dicom::testing::{write_gray, Spec};
use image::{DynamicImage, ImageBuffer, Luma, Rgb};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Address-space cap for the child processes: a bomb that tried to allocate its declared
/// size would die here instead of passing.
const MEM_CAP: &str = "--as=6000000000";

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG header declaring `w` x `h` 8-bit gray pixels with a little compressed data.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |v: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        v.extend((data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend(data);
        v.extend(&c);
        v.extend(crc32(&c).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut v, b"IHDR", &ihdr);
    // zlib stream of a few zero bytes (stored block).
    chunk(
        &mut v,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0, 0, 4, 0, 1,
        ],
    );
    chunk(&mut v, b"IEND", &[]);
    v
}

fn bitflip(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    let n = v.len();
    for k in 0..24 {
        let i = n / 4 + (k * 7919) % (n / 2).max(1);
        v[i] ^= 1 << (k % 8);
    }
    v
}

struct Corpus {
    /// Files that must fail, with a message naming them.
    bad: Vec<PathBuf>,
    /// Files that may decode or fail, but never crash (bit flips can leave a valid image).
    any: Vec<PathBuf>,
    /// Files that must decode (odd but legal).
    good: Vec<PathBuf>,
}

fn write_corpus(d: &Path) -> Corpus {
    std::fs::create_dir_all(d).unwrap();
    let mut c = Corpus {
        bad: vec![],
        any: vec![],
        good: vec![],
    };
    let film_img = film(96, 96, 1);
    let enc = |fmt: image::ImageFormat| {
        let mut b = Vec::new();
        DynamicImage::ImageLuma8(film_img.clone())
            .write_to(&mut std::io::Cursor::new(&mut b), fmt)
            .unwrap();
        b
    };
    let dcm_path = d.join("source.dcm.tmp");
    let values: Vec<u16> = film_img.pixels().map(|p| p.0[0] as u16 * 16).collect();
    write_gray(
        &dcm_path,
        &Spec {
            width: 96,
            height: 96,
            values: &values,
            bits_stored: 12,
            photometric: "MONOCHROME2",
            rescale: None,
            window: None,
            view: Some("PA"),
        },
    )
    .unwrap();
    let dcm = std::fs::read(&dcm_path).unwrap();
    std::fs::remove_file(&dcm_path).unwrap();
    for (ext, bytes) in [
        ("png", enc(image::ImageFormat::Png)),
        ("jpg", enc(image::ImageFormat::Jpeg)),
        ("tif", enc(image::ImageFormat::Tiff)),
        ("dcm", dcm),
    ] {
        let t = d.join(format!("truncated.{ext}"));
        std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
        c.bad.push(t);
        let f = d.join(format!("bitflip.{ext}"));
        std::fs::write(&f, bitflip(&bytes)).unwrap();
        c.any.push(f);
    }
    let p = d.join("empty.png");
    std::fs::write(&p, b"").unwrap();
    c.bad.push(p);
    let p = d.join("text.png");
    std::fs::write(&p, b"this is a text file, not an image\n").unwrap();
    c.bad.push(p);
    let p = d.join("bomb.png");
    std::fs::write(&p, png_declaring(100_000, 100_000)).unwrap();
    c.bad.push(p);
    let p = d.join("nan.tif");
    let nan = ImageBuffer::from_pixel(16, 16, Rgb([f32::NAN, f32::NAN, f32::NAN]));
    DynamicImage::ImageRgb32F(nan).save(&p).unwrap();
    c.bad.push(p);
    let p = d.join("folder.png");
    std::fs::create_dir_all(&p).unwrap();
    c.bad.push(p);
    // No read permission: refused, except for root, who reads it anyway.
    let p = d.join("no_permission.png");
    film_img.save(&p).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    if std::fs::read(&p).is_err() {
        c.bad.push(p);
    } else {
        eprintln!("running as root: no_permission.png is readable, so it is not a bad file here");
        c.any.push(p);
    }
    let p = d.join("one_pixel.png");
    ImageBuffer::from_pixel(1, 1, Luma([128u8]))
        .save(&p)
        .unwrap();
    c.good.push(p);
    // 30000 px is over the 16384 px side limit: refused by its header, with the sizes.
    let p = d.join("wide.png");
    ImageBuffer::from_fn(30_000, 20, |x, _| Luma([(x % 251) as u8]))
        .save(&p)
        .unwrap();
    c.bad.push(p);
    let p = d.join("wide_ok.png");
    ImageBuffer::from_fn(16_000, 20, |x, _| Luma([(x % 251) as u8]))
        .save(&p)
        .unwrap();
    c.good.push(p);
    let p = d.join("constant16.png");
    DynamicImage::ImageLuma16(ImageBuffer::from_pixel(64, 64, Luma([1234u16])))
        .save(&p)
        .unwrap();
    c.good.push(p);
    let p = d.join("fine.png");
    film_img.save(&p).unwrap();
    c.good.push(p);
    c
}

fn run_capped(args: &[&std::ffi::OsStr]) -> Output {
    let prlimit = Path::new("/usr/bin/prlimit");
    let mut cmd = if prlimit.is_file() {
        let mut c = Command::new(prlimit);
        c.arg(MEM_CAP).arg(bin());
        c
    } else {
        Command::new(bin())
    };
    cmd.args(args).output().unwrap()
}

fn no_panic(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("memory allocation"),
        "{what} crashed: {stderr}"
    );
    assert!(
        out.status.code().is_some(),
        "{what} was killed by a signal: {stderr}"
    );
}

#[test]
fn predict_names_every_bad_file_and_predicts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write_model(d, 64);
    let c = write_corpus(&d.join("corpus"));
    let mut args: Vec<&std::ffi::OsStr> = ["--device", "cpu", "predict", "--json", "--model"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    args.push(model.as_os_str());
    let all: Vec<&PathBuf> = c.bad.iter().chain(&c.any).chain(&c.good).collect();
    args.extend(all.iter().map(|p| p.as_os_str()));
    let out = run_capped(&args);
    no_panic(&out, "predict");
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad files must give exit code 1"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<(String, String)> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["file"].as_str().unwrap().to_string(),
                e["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for b in &c.bad {
        let f = b.display().to_string();
        let e = errors
            .iter()
            .find(|(file, _)| *file == f)
            .unwrap_or_else(|| panic!("{f} gave no error; errors: {errors:?}"));
        assert!(e.1.contains(&f), "the message must name the file: {}", e.1);
        eprintln!("{}: {}", b.file_name().unwrap().to_string_lossy(), e.1);
    }
    let preds = doc["predictions"].as_array().unwrap();
    let predicted: Vec<&str> = preds.iter().map(|p| p["file"].as_str().unwrap()).collect();
    for g in &c.good {
        assert!(
            predicted.contains(&g.to_str().unwrap()),
            "{} was not predicted",
            g.display()
        );
    }
    // Every file is accounted for exactly once.
    assert_eq!(preds.len() + errors.len(), all.len());
    let warnings = |name: &str| -> String {
        preds
            .iter()
            .find(|p| p["file"].as_str().unwrap().ends_with(name))
            .unwrap()["warnings"]
            .to_string()
    };
    assert!(warnings("one_pixel.png").contains("only 1x1 pixels"));
    assert!(warnings("wide_ok.png").contains("aspect ratio"));
    assert!(warnings("constant16.png").contains("nearly constant"));
    assert_eq!(warnings("fine.png"), "[]");
}

#[test]
fn data_check_train_and_eval_name_the_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    write_synthetic(&data, 8, 4);
    // A truncated PNG among the training images.
    let bad = data.join("train").join("train_3.png");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let out = run_capped(&[
        "data".as_ref(),
        "check".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    no_panic(&out, "data check");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("train_3.png"), "{text}");

    let run = d.join("run");
    let out = run_capped(&[
        "--device".as_ref(),
        "cpu".as_ref(),
        "train".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--plan".as_ref(),
        "quick".as_ref(),
        "--backbone".as_ref(),
        "resnet18".as_ref(),
        "--batch-size".as_ref(),
        "4".as_ref(),
        "--out".as_ref(),
        run.as_os_str(),
    ]);
    no_panic(&out, "train");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("train_3.png"), "{stderr}");

    // eval: a truncated model file, then a truncated test image.
    let model = write_model(d, 32);
    let whole = std::fs::read(&model).unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let eval = |m: &Path| {
        run_capped(&[
            "--device".as_ref(),
            "cpu".as_ref(),
            "eval".as_ref(),
            "--model".as_ref(),
            m.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "--out".as_ref(),
            d.join("eval").as_os_str(),
        ])
    };
    let out = eval(&cut);
    no_panic(&out, "eval");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("cut.safetensors"), "{stderr}");
    let bad_test = data.join("test").join("test_1.png");
    std::fs::write(&bad_test, b"GIF89a not really").unwrap();
    let out = eval(&model);
    no_panic(&out, "eval");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("test_1.png"), "{stderr}");
}

#[test]
fn split_file_variants_and_mistakes() {
    use covid_resnet::data::split::parse_split_text;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("train");
    std::fs::create_dir_all(&img).unwrap();
    for n in ["a.png", "b.png"] {
        film(8, 8, 0).save(img.join(n)).unwrap();
    }
    let split = Path::new("train_x.txt");
    // BOM, CRLF and tabs are accepted.
    let s = parse_split_text(
        "\u{feff}p1 a.png normal src\r\np2\tb.png\tCOVID-19\r\n",
        split,
        &img,
    )
    .unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].label.as_str(), s[1].label.as_str()),
        ("normal", "COVID-19")
    );
    // Any label is a class (aliases of the paper's four are read as those).
    let any = parse_split_text("p1 a.png normal\np2 b.png influenza\n", split, &img).unwrap();
    assert_eq!(any[1].label, "influenza");
    // Mistakes are refused with file:line.
    for (text, line, needle) in [
        ("p1 a.png normal\np1 a.png normal\n", 2, "listed twice"),
        ("p1 a.png normal\np2 b.png\n", 2, "found 2 column(s)"),
        ("p1 ../../etc/passwd normal\n", 1, "leaves the image folder"),
        ("p1 /etc/passwd normal\n", 1, "leaves the image folder"),
    ] {
        let e = parse_split_text(text, split, &img).unwrap_err().to_string();
        assert!(
            e.contains(&format!("train_x.txt:{line}")) && e.contains(needle),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn resume_refuses_truncated_and_mismatched_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = d.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let ck = run.join("checkpoint.safetensors");
    // A model file where a checkpoint is expected.
    let model = write_model(d, 32);
    std::fs::copy(&model, &ck).unwrap();
    let resume = || {
        run_capped(&[
            "--device".as_ref(),
            "cpu".as_ref(),
            "train".as_ref(),
            "--resume".as_ref(),
            run.as_os_str(),
        ])
    };
    let out = resume();
    no_panic(&out, "resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("checkpoint.safetensors")
            && stderr.contains("not a covid-resnet checkpoint"),
        "{stderr}"
    );
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&ck, &bytes[..100]).unwrap();
    let out = resume();
    no_panic(&out, "resume");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt or truncated"), "{stderr}");
    // Pretrained weights of the wrong backbone: refused, naming the file.
    let data = d.join("data");
    write_synthetic(&data, 4, 2);
    let out = run_capped(&[
        "--device".as_ref(),
        "cpu".as_ref(),
        "train".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--backbone".as_ref(),
        "resnet50".as_ref(),
        "--weights".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        d.join("r50").as_os_str(),
    ]);
    no_panic(&out, "train --weights");
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model.safetensors"), "{stderr}");
    eprintln!("wrong backbone: {}", stderr.lines().next().unwrap_or(""));
}

/// The GUI gets the whole corpus dropped on it: every bad file shows its message, the good
/// ones open, the app keeps running.
#[test]
fn the_viewer_survives_the_corpus() {
    use covid_resnet::app::viewer::ImageState;
    use covid_resnet::app::{App, Settings, Tab};
    use egui_kittest::Harness;
    let dir = tempfile::tempdir().unwrap();
    let c = write_corpus(&dir.path().join("corpus"));
    let s = Settings {
        tab: Tab::Viewer,
        ..Default::default()
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), App::with_settings(s));
    let all: Vec<PathBuf> = c.bad.iter().chain(&c.any).chain(&c.good).cloned().collect();
    let ctx = h.ctx.clone();
    h.state_mut().viewer.open_paths(&ctx, all.clone());
    crate::common::step_until(&mut h, 60, "decoding", |a| !a.viewer.busy());
    let v = &h.state().viewer;
    for (im, path) in v.images.iter().zip(&all) {
        let expect_bad = c.bad.contains(path);
        let expect_good = c.good.contains(path);
        match &im.state {
            ImageState::Failed(e) => {
                assert!(!expect_good, "{} should open: {e}", path.display());
                assert!(e.contains(&path.display().to_string()), "{e}");
            }
            ImageState::Ready(_) => assert!(!expect_bad, "{} should fail", path.display()),
            ImageState::Loading => unreachable!(),
        }
    }
    // Each image can be shown without trouble.
    for i in 0..all.len() {
        h.state_mut().viewer.selected = Some(i);
        h.run_steps(2);
    }
}

/// A report whose class indices do not fit its classes used to panic in the Viewer and in
/// `markdown()` (indexing); now it is refused with the file's name.
#[test]
fn an_inconsistent_eval_report_is_refused_with_its_name() {
    use covid_resnet::eval::report::{Case, EvalReport};
    let dir = tempfile::tempdir().unwrap();
    let classes: Vec<String> = covid_resnet::data::split::labels::PAPER_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let case = |a, p| Case {
        file: "x.png".into(),
        file_bytes: None,
        actual: a,
        predicted: p,
        probs: vec![0.25; 4],
        loss: 1.0,
        source: None,
        patient: None,
        disagreement: None,
    };
    let good = EvalReport::from_cases(classes, vec![case(0, 1), case(2, 2)], 10, 0);
    let mut v = serde_json::to_value(&good).unwrap();
    v["cases"][1]["predicted"] = serde_json::json!(7);
    let p = dir.path().join("hostile-report.json");
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    let e = EvalReport::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("hostile-report.json") && e.contains("case 2"),
        "{e}"
    );
    let mut r = covid_resnet::app::viewer::review::ReviewState::default();
    let e = r.open_report(&p).unwrap_err();
    assert!(r.report.is_none());
    assert!(e.contains("hostile-report.json"), "{e}");
    // A JSON of the wrong shape altogether.
    std::fs::write(&p, b"{\"classes\": 3}").unwrap();
    let e = EvalReport::load(&p).unwrap_err().to_string();
    assert!(e.contains("hostile-report.json"), "{e}");
}

/// Inputs the fuzz targets found (fuzz/, assets/docs/reliability.md), kept as files: each must
/// fail fast with a message naming it and a small peak memory (the forged-length DICOM files
/// took 3.4 GB and 8 s before the header pre-scan). Peak RSS comes from GNU time, which
/// `.ci/run` installs.
#[test]
fn fuzz_regressions_fail_cleanly_and_cheaply() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        files.len() >= 2,
        "regression inputs missing from {}",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/time").is_file(),
        "/usr/bin/time (GNU time) is needed to measure peak memory"
    );
    for f in files {
        let t = std::time::Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "peak-rss-kb %M"])
            .arg(bin())
            .args(["data", "inspect"])
            .arg(&f)
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr);
        no_panic(&out, "data inspect");
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", f.display());
        assert!(stderr.contains(&f.display().to_string()), "{stderr}");
        let kb: u64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix("peak-rss-kb "))
            .and_then(|v| v.trim().parse().ok())
            .expect("GNU time's figure");
        eprintln!("{}: {secs:.2} s, peak {} MB", f.display(), kb / 1024);
        assert!(
            kb < 300 * 1024,
            "{}: peak RSS {} MB",
            f.display(),
            kb / 1024
        );
        assert!(secs < 5.0, "{} took {secs:.1} s", f.display());
    }
}

/// A `.pth` whose pickle makes candle's reader panic (LONG1 with more than 8 bytes: a shift
/// overflow under overflow checks): `--weights` must get an error naming the file.
#[test]
fn a_malformed_pth_is_an_error_not_a_panic() {
    let f =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/pth-long1-overflow.pth");
    let e = covid_resnet::model::io::pretrained::read_tensors(&f)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pth-long1-overflow.pth") && e.contains("malformed PyTorch file"),
        "{e}"
    );
}
