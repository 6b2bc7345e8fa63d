//! Crash safety of `train`: SIGKILL at random moments and `--resume` each time; a full disk
//! (a file-size limit) while writing the checkpoint; and containment (nothing is written outside
//! the folders the user named).
use crate::common::bin;
use crate::training::write_synthetic;
use covid_resnet::eval::report::EvalReport;
use covid_resnet::model::io::model_file::parse_model_file;
use covid_resnet::train::checkpoint::parse_checkpoint;
use covid_resnet::train::schedule::Plan;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PLAN: &str = r#"
name = "crash"
[[stage]]
size_px = 32
[[stage.step]]
train = "head"
lr = "2e-3"
epochs = 2
[[stage.step]]
train = "all"
lr = "1e-4..1e-3"
epochs = 3
"#;

fn train_cmd(data: &Path, plan: &Path, run: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "--device",
        "cpu",
        "train",
        "--backbone",
        "resnet18",
        "--seed",
        "7",
    ])
    .args(["--batch-size", "8", "--loader-threads", "1", "--data"])
    .arg(data)
    .arg("--plan")
    .arg(plan)
    .arg("--out")
    .arg(run);
    c
}

fn resume_cmd(run: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["--device", "cpu", "train", "--resume"]).arg(run);
    c
}

/// Every file of the run folder is complete and readable (temporary files of a killed
/// write excepted: they are removed on resume). Returns the epochs the checkpoint holds.
fn check_run_folder(run: &Path) -> usize {
    let mut epochs = 0;
    for e in std::fs::read_dir(run).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if name.starts_with('.') && name.contains(".tmp-") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        match name.as_str() {
            "checkpoint.safetensors" => {
                let (meta, _) = parse_checkpoint(&bytes, &p)
                    .unwrap_or_else(|e| panic!("corrupt checkpoint after a kill: {e}"));
                epochs = serde_json::to_value(&meta).unwrap()["history"]
                    .as_array()
                    .unwrap()
                    .len();
            }
            "model.safetensors" => {
                parse_model_file(&bytes, &p).unwrap();
            }
            "history.json" => {
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
            }
            "report.json" => {
                EvalReport::from_json(&bytes, &p).unwrap();
            }
            "plan.toml" => {
                Plan::from_toml(std::str::from_utf8(&bytes).unwrap(), "plan.toml").unwrap();
            }
            "losses.csv" | "report.csv" => {
                let text = std::str::from_utf8(&bytes).unwrap();
                let cols = text.lines().next().unwrap().matches(',').count();
                assert!(
                    text.lines().all(|l| l.matches(',').count() == cols),
                    "{name} has a cut line"
                );
                assert!(text.ends_with('\n'), "{name} is cut");
            }
            "report.md" => {
                assert!(std::str::from_utf8(&bytes).unwrap().ends_with('\n'));
            }
            "run.lock" => {}
            "report-confusion.png"
            | "report-roc.png"
            | "report-reliability.png"
            | "report-histogram.png" => {
                image::load_from_memory(&bytes).expect("the report's PNGs decode");
            }
            other => panic!("unexpected file {other} in the run folder"),
        }
    }
    epochs
}

fn tensors(path: &Path) -> BTreeMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

fn assert_same_weights(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len());
    for (k, x) in &ta {
        let y = &tb[k];
        let d = crate::common::max_abs_diff(x, y);
        assert_eq!(d, 0.0, "{k} differs by {d}");
    }
}

/// Everything a finished child wrote: stdout, then stderr (where the progress lines go).
fn printed(child: &mut std::process::Child) -> String {
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Runs `cmd`, kills it with SIGKILL after `after`; returns (finished by itself, what it
/// printed).
fn run_and_kill(mut cmd: Command, after: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = printed(&mut child);
            assert!(status.success(), "run failed: {text}");
            return (true, text);
        }
        if t.elapsed() >= after {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return (false, printed(&mut child));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    write_synthetic(&data, 48, 8);
    let plan = d.join("plan.toml");
    std::fs::write(&plan, PLAN).unwrap();

    // The uninterrupted run, timed.
    let whole = d.join("whole");
    let t = Instant::now();
    let out = train_cmd(&data, &plan, &whole).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = t.elapsed();
    eprintln!("uninterrupted run: {:.1} s", full.as_secs_f64());

    let run = d.join("killed");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261129);
    let mut kills = 0;
    let mut started = false;
    loop {
        let cmd = if started && run.join("checkpoint.safetensors").is_file() {
            resume_cmd(&run)
        } else {
            train_cmd(&data, &plan, &run)
        };
        // Kill at a random moment within the next one or two epochs (a fifth of the whole
        // run each, plus start-up), at most 5 times; then let it finish.
        let after = if kills < 5 {
            full.mul_f64(rng.random_range(0.08..0.35))
        } else {
            Duration::from_secs(600)
        };
        let ck_before = if run.is_dir() {
            check_run_folder(&run)
        } else {
            0
        };
        let (finished, printed) = run_and_kill(cmd, after);
        started = true;
        let epochs_seen = printed
            .lines()
            .filter(|l| l.trim_start().starts_with("epoch "))
            .count();
        if finished {
            break;
        }
        kills += 1;
        let ck_after = check_run_folder(&run);
        // At most the epoch in progress is lost: every epoch this process reported, except
        // possibly the last (reported just before its checkpoint), is in the checkpoint.
        assert!(
            ck_after + 1 >= ck_before + epochs_seen,
            "kill {kills}: checkpoint holds {ck_after} epochs, {ck_before} before + {epochs_seen} reported"
        );
        eprintln!(
            "kill {kills} after {:.2} s: checkpoint at {ck_after} epochs (was {ck_before}, {epochs_seen} reported)",
            after.as_secs_f64()
        );
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed before the run finished"
    );
    check_run_folder(&run);
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files remain: {leftovers:?}"
    );
    assert_same_weights(
        &whole.join("model.safetensors"),
        &run.join("model.safetensors"),
    );
}

#[test]
fn a_full_disk_is_reported_and_the_previous_checkpoint_survives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    write_synthetic(&data, 16, 4);
    let plan = d.join("plan.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let run = d.join("run");
    // One epoch, then stop (kill once the first checkpoint exists).
    let mut child = train_cmd(&data, &plan, &run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !run.join("checkpoint.safetensors").is_file() {
        assert!(t.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let that write finish (it is atomic: the name appears complete), then kill.
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    check_run_folder(&run);
    let before = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    // Resume with a file-size limit below the checkpoint's size: its next write fails as on
    // a full disk (EFBIG; SIGXFSZ is ignored so the write returns the error).
    let limit = before.len() / 2;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={limit} \"$0\" --device cpu train --resume \"$1\"",
        ))
        .arg(bin())
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a failed write must fail the run"
    );
    assert!(out.status.code().is_some(), "killed by a signal: {stderr}");
    assert!(
        stderr.contains("checkpoint.safetensors") || stderr.contains("history.json"),
        "the message must name the file: {stderr}"
    );
    assert!(
        stderr.contains("too large") || stderr.contains("space"),
        "{stderr}"
    );
    eprintln!(
        "full disk: {}",
        stderr
            .lines()
            .filter(|l| l.contains("error"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    // The previous checkpoint is intact and no partial file is left.
    assert_eq!(
        std::fs::read(run.join("checkpoint.safetensors")).unwrap(),
        before
    );
    check_run_folder(&run);
    // With space again, the run resumes and finishes.
    let out = resume_cmd(&run).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_run_folder(&run);
}

/// Lists every file under `root` with its size and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if let Ok(m) = std::fs::symlink_metadata(&p) {
                    if m.is_dir() {
                        stack.push(p);
                    } else {
                        out.insert(p, (m.len(), m.modified().unwrap()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn train_eval_and_predict_write_only_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let home = d.join("home");
    let tmp = d.join("tmp");
    let cwd = d.join("cwd");
    for p in [&home, &tmp, &cwd] {
        std::fs::create_dir_all(p).unwrap();
    }
    let data = d.join("data");
    write_synthetic(&data, 16, 4);
    let plan = d.join("plan.toml");
    std::fs::write(&plan, PLAN.replace("epochs = 3", "epochs = 1")).unwrap();
    let data_before = snapshot(&data);
    let run = d.join("run");
    let evals = d.join("evals");
    let cams = d.join("cams");
    let env = |c: &mut Command| {
        c.current_dir(&cwd)
            .env("HOME", &home)
            .env("TMPDIR", &tmp)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"));
    };
    let mut c = train_cmd(&data, &plan, &run);
    env(&mut c);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = run.join("model.safetensors");
    let mut c = Command::new(bin());
    c.args(["--device", "cpu", "eval", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&evals);
    env(&mut c);
    assert!(c.output().unwrap().status.success());
    let mut c = Command::new(bin());
    c.args(["--device", "cpu", "predict", "--model"])
        .arg(&model)
        .arg("--gradcam")
        .arg(&cams)
        .arg(data.join("test/test_0.png"));
    env(&mut c);
    assert!(c.output().unwrap().status.success());

    // Nothing in HOME, TMPDIR or the working directory: these few images fit in the memory
    // budget, so not even the disk cache (XDG_CACHE_HOME/covid-resnet/images, for images
    // past the budget) is written. Before, every image went there. The dataset untouched.
    for (name, p) in [
        ("HOME", &home),
        ("TMPDIR", &tmp),
        ("working directory", &cwd),
    ] {
        let files = snapshot(p);
        assert!(files.is_empty(), "{name} got files: {:?}", files.keys());
    }
    assert_eq!(
        snapshot(&data),
        data_before,
        "the dataset folder was modified"
    );
    // The only other top-level entries are the folders we named.
    let mut tops: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    tops.sort();
    assert_eq!(
        tops,
        [
            "cams",
            "cwd",
            "data",
            "evals",
            "home",
            "plan.toml",
            "run",
            "tmp"
        ]
    );
    let cam_files: Vec<_> = snapshot(&cams).into_keys().collect();
    assert_eq!(cam_files, vec![cams.join("test_0.gradcam.png")]);
}

#[test]
fn divergence_in_the_cli_is_reported_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    write_synthetic(&data, 16, 4);
    let plan = d.join("plan.toml");
    std::fs::write(
        &plan,
        PLAN.replace("lr = \"1e-4..1e-3\"", "lr = \"1e30\"")
            .replace("epochs = 2", "epochs = 1"),
    )
    .unwrap();
    let run = d.join("run");
    let out = train_cmd(&data, &plan, &run).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("loss became") && stderr.contains("restored"),
        "{stderr}"
    );
    assert_eq!(check_run_folder(&run), 1, "the head epoch is kept");
    // Resuming loads the checkpoint and meets the same rate again: reported the same way,
    // not as a broken run folder.
    let out = resume_cmd(&run).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resumed"), "{stderr}");
    assert!(stderr.contains("loss became"), "{stderr}");
    assert_eq!(check_run_folder(&run), 1);
}
