//! `covid-resnet bench decode --file F`: times decoding image files (DICOM or not) to the
//! grey image the program uses, after a warm-up, and prints one `RESULT` line a file. With
//! `--pydicom-python` it runs `assets/bench/pydicom_decode.py` (pydicom + pylibjpeg: file
//! to pixels, modality and VOI) on the same files, same iterations, and prints the ratio.
use super::bench::BenchArgs;
use anyhow::{bail, Context};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `bench decode`.
pub fn run(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    if a.file.is_empty() {
        bail!("bench decode needs at least one --file");
    }
    for f in &a.file {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let decode = || crate::data::decode::decode_bytes(&bytes, f);
        for _ in 0..a.warmup {
            decode()?;
        }
        let mut times = Vec::new();
        let mut size = (0, 0);
        for _ in 0..a.iters.max(1) {
            let t = Instant::now();
            let img = decode()?;
            times.push(t.elapsed().as_secs_f64());
            size = (img.width, img.height);
        }
        let ours = median(times);
        println!(
            "RESULT impl=covid-resnet kind=decode file={} width={} height={} median_s={ours:.4}",
            crate::files::shown(f),
            size.0,
            size.1
        );
        if let Some(py) = &a.pydicom_python {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/bench/pydicom_decode.py");
            let out = Command::new(py)
                .arg(&script)
                .arg(f)
                .args(["--iters", &a.iters.max(1).to_string()])
                .args(["--warmup", &a.warmup.to_string()])
                .output()
                .with_context(|| format!("cannot run {}", py.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let Some(line) = text.lines().find(|l| l.starts_with("RESULT")) else {
                bail!(
                    "{} printed no RESULT line: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            println!("{line}");
            let theirs: f64 = line
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("median_s="))
                .and_then(|v| v.parse().ok())
                .context("no median_s in pydicom's RESULT line")?;
            println!(
                "RATIO kind=decode file={} ours_s={ours:.4} pydicom_s={theirs:.4} speedup={:.2}",
                crate::files::shown(f),
                theirs / ours
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
