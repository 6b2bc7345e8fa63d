//! Runs that cannot trample each other, a resume that checks what it resumes, metrics at
//! the edges, names that are never mangled, and bad input refused: each as a user would meet
//! it, through the `covid-resnet` binary.
use crate::common::bin;
use crate::training::write_synthetic;
use crate::viewer_infer::film;
use covid_resnet::eval::metrics::compute;
use covid_resnet::eval::report::EvalReport;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SHORT: &str = "name = \"t\"\n[[stage]]\nsize_px = 32\n[[stage.step]]\ntrain = \"head\"\nlr = \"1e-3\"\nepochs = 1\n[[stage.step]]\ntrain = \"all\"\nlr = \"..1e-3\"\nepochs = 1\n";

fn long_plan(epochs: usize) -> String {
    format!("name = \"long\"\n[[stage]]\nsize_px = 32\n[[stage.step]]\ntrain = \"all\"\nlr = \"1e-4\"\nepochs = {epochs}\n")
}

fn cli(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["--device", "cpu"]).args(args);
    c
}

fn train(data: &Path, plan: &Path, run: &Path) -> Command {
    let mut c = cli(&[
        "train",
        "--backbone",
        "resnet18",
        "--batch-size",
        "8",
        "--loader-threads",
        "1",
    ]);
    c.arg("--data")
        .arg(data)
        .arg("--plan")
        .arg(plan)
        .arg("--out")
        .arg(run);
    c
}

fn resume(run: &Path) -> Command {
    let mut c = cli(&["train", "--resume"]);
    c.arg(run);
    c
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn setup(n_train: usize, plan: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (data, run, p) = (
        dir.path().join("data"),
        dir.path().join("run"),
        dir.path().join("plan.toml"),
    );
    write_synthetic(&data, n_train, 8);
    std::fs::write(&p, plan).unwrap();
    (dir, data, run, p)
}

/// Item 1: a live run's folder is locked; stale temporary files are removed only by a
/// process that holds the lock; finished runs are not overwritten without --force.
#[test]
fn a_second_process_cannot_break_a_live_run() {
    let (_d, data, run, plan) = setup(64, &long_plan(12));
    let first = train(&data, &plan, &run)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !run.join("checkpoint.safetensors").is_file() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A file as a write cut short would leave it (another process's, by its name).
    let stale = run.join(".checkpoint.safetensors.tmp-999999");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let second = resume(&run).output().unwrap();
    assert!(!second.status.success());
    let e = err(&second);
    assert!(
        e.contains("in use by process") && e.contains(&first.id().to_string()),
        "{e}"
    );
    assert!(
        stale.is_file(),
        "a refused resume must not touch the live run's files"
    );
    let third = train(&data, &plan, &run).output().unwrap();
    assert!(!third.status.success());
    assert!(err(&third).contains("in use by process"), "{}", err(&third));
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the live run was broken: {}",
        err(&out)
    );
    // Finished: --out on it is refused without --force, and nothing is removed.
    let again = train(&data, &plan, &run).output().unwrap();
    assert!(!again.status.success());
    assert!(
        err(&again).contains("holds a finished run"),
        "{}",
        err(&again)
    );
    assert!(run.join("model.safetensors").is_file());
    // Free now: a resume takes the lock and removes the stale file.
    let o = resume(&run).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(!stale.exists());
    // --force overwrites.
    let o = train(&data, &plan, &run).arg("--force").output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
}

/// Item 1: eval reads a live run's model and writes its own files without disturbing it.
#[test]
fn eval_reads_a_live_run_without_disturbing_it() {
    let (_d, data, run, plan) = setup(32, SHORT);
    let o = train(&data, &plan, &run).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    // Resume the finished run in the background (it holds the lock) and evaluate meanwhile.
    let live = resume(&run)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut e = cli(&["eval", "--bootstrap", "10", "--model"]);
    let o = e
        .arg(run.join("model.safetensors"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let out = live.wait_with_output().unwrap();
    assert!(out.status.success());
}

/// Item 2: macro F1 as scikit-learn computes it, in every place that shows it.
/// ```python
/// from sklearn.metrics import f1_score      # scikit-learn 1.9.1
/// f1_score([0,0,1,1,2,2,2,2,3], [0,0,0,2,2,2,2,0,2], average="macro", zero_division=0)
/// # 0.3333333333333333   (the issue's case: recall 100 / 0 / 75 / 0)
/// f1_score([0,0,0,1,1,2,2], [0,1,0,1,2,2,0], average="macro", zero_division=0)
/// # 0.5555555555555555   (no COVID-19 image: the class is left out)
/// ```
#[test]
fn macro_f1_follows_scikit_learn_everywhere() {
    let names: Vec<String> = covid_resnet::data::split::labels::PAPER_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let m = compute(
        &names,
        &[0, 0, 1, 1, 2, 2, 2, 2, 3],
        &[0, 0, 0, 2, 2, 2, 2, 0, 2],
        0,
        0,
    );
    assert!(
        (m.macro_f1.value - 0.3333333333333333).abs() < 1e-12,
        "{}",
        m.macro_f1.value
    );
    let m = compute(&names, &[0, 0, 0, 1, 1, 2, 2], &[0, 1, 0, 1, 2, 2, 0], 0, 0);
    assert!((m.macro_f1.value - 0.5555555555555555).abs() < 1e-12);
    assert_eq!(m.absent, vec!["COVID-19".to_string()]);
    // The report says so, and prints no NaN.
    let cases = [(0, 0), (0, 1), (0, 0), (1, 1), (1, 2), (2, 2), (2, 0)]
        .iter()
        .enumerate()
        .map(|(i, &(a, p))| {
            let mut probs = vec![0.1f32; 4];
            probs[p] = 0.7;
            covid_resnet::eval::report::Case {
                file: format!("{i}.png"),
                file_bytes: None,
                actual: a,
                predicted: p,
                probs,
                loss: 0.5,
                source: None,
                patient: None,
                disagreement: None,
            }
        })
        .collect();
    let r = EvalReport::from_cases(names, cases, 20, 1);
    let md = r.markdown();
    assert!(!md.to_lowercase().contains("nan"), "{md}");
    assert!(md.contains("macro F1 55.56 %"), "{md}");
    assert!(
        md.contains("No images and no predictions of COVID-19"),
        "{md}"
    );
    assert!(md.contains("undefined: no images"), "{md}");
}

/// Items 3 and 4: a resume checks the flags, the plan file and the data set; the data set
/// path is absolute and a moved data set is found by its content.
#[test]
fn a_resume_checks_what_it_resumes() {
    let (d, data, run, plan) = setup(32, SHORT);
    // A relative --data, from the temp folder.
    let o = cli(&[
        "train",
        "--backbone",
        "resnet18",
        "--batch-size",
        "8",
        "--seed",
        "3",
    ])
    .args(["--data", "data", "--out", "run", "--plan"])
    .arg(&plan)
    .current_dir(d.path())
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    // Conflicting flags are refused, with both values.
    for (flag, value, run_value) in [
        ("--backbone", "resnet50", "resnet18"),
        ("--batch-size", "4", "8"),
        ("--seed", "42", "3"),
        ("--precision", "bf16", "f32"),
    ] {
        let o = resume(&run).args([flag, value]).output().unwrap();
        assert!(!o.status.success(), "{flag} accepted");
        let e = err(&o);
        assert!(
            e.contains(&format!(
                "{flag} {value} was given, but the run uses {run_value}"
            )),
            "{e}"
        );
    }
    // The same values are fine, from another working directory.
    let o = resume(&run)
        .args(["--backbone", "resnet18", "--seed", "3"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    // An edited plan.toml is refused, and not overwritten.
    let edited = std::fs::read_to_string(run.join("plan.toml"))
        .unwrap()
        .replace("epochs = 1", "epochs = 5");
    std::fs::write(run.join("plan.toml"), &edited).unwrap();
    let o = resume(&run).output().unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("plan.toml was edited"), "{}", err(&o));
    assert_eq!(
        std::fs::read_to_string(run.join("plan.toml")).unwrap(),
        edited
    );
    let o = resume(&run).arg("--force").output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(run.join("plan.toml.edited").is_file());
    // A moved data set: found again by --data, same content.
    let moved = d.path().join("moved");
    std::fs::rename(&data, &moved).unwrap();
    let o = resume(&run).output().unwrap();
    assert!(!o.status.success());
    assert!(
        err(&o).contains("if it moved, point the run at it with --data"),
        "{}",
        err(&o)
    );
    let o = resume(&run).arg("--data").arg(&moved).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("the data set moved"), "{}", err(&o));
    // A new class: refused even with --force (the model's outputs are the classes).
    let split = moved.join("train_synthetic.txt");
    let text = std::fs::read_to_string(&split).unwrap();
    let first = text.lines().next().unwrap().to_string();
    std::fs::write(
        &split,
        text.replacen(&first, &first.replace("normal", "bacteria"), 1),
    )
    .unwrap();
    let o = resume(&run)
        .arg("--data")
        .arg(&moved)
        .arg("--force")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        err(&o).contains("Normal, COVID-19 then, Normal, Bacterial, COVID-19 now"),
        "{}",
        err(&o)
    );
    // A changed data set: an image relabelled within the classes.
    std::fs::write(
        &split,
        text.replacen(&first, &first.replace("normal", "COVID-19"), 1),
    )
    .unwrap();
    let o = resume(&run).arg("--data").arg(&moved).output().unwrap();
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("changed since the checkpoint") && e.contains("train: 32 images"),
        "{e}"
    );
    let o = resume(&run)
        .arg("--data")
        .arg(&moved)
        .arg("--force")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("going on as asked"), "{}", err(&o));
}

/// Item 5: names that are not UTF-8 do not crash `predict --json`, and stay distinct.
#[test]
#[cfg(unix)]
fn names_that_are_not_utf8_stay_distinct() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let model = crate::viewer_infer::write_model(dir.path(), 32);
    let ok = dir.path().join("ok.png");
    film(40, 40, 1).save(&ok).unwrap();
    let bad = |b: u8| {
        let mut name = b"bad".to_vec();
        name.push(b);
        name.extend_from_slice(b".png");
        dir.path().join(std::ffi::OsStr::from_bytes(&name))
    };
    for (b, s) in [(0xff, 2), (0xfe, 3)] {
        film(40, 40, s).save(bad(b)).unwrap();
    }
    let o = cli(&["predict", "--json", "--model"])
        .arg(&model)
        .arg(&ok)
        .arg(bad(0xff))
        .arg(bad(0xfe))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&str> = doc["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3);
    assert!(
        files[1].ends_with("bad\\xff.png") && files[2].ends_with("bad\\xfe.png"),
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.contains('\u{fffd}')));
    // In a data set: distinct patients and cases, and the case finds its file again.
    let data = dir.path().join("data");
    for split in ["train", "test"] {
        let d = data.join(split).join("normal");
        std::fs::create_dir_all(&d).unwrap();
        for (name, seed) in [
            (&b"bad\xff.png"[..], 1),
            (&b"bad\xfe.png"[..], 2),
            (&b"x.png"[..], 3),
        ] {
            film(40, 40, seed)
                .save(d.join(std::ffi::OsStr::from_bytes(name)))
                .unwrap();
        }
        let c = data.join(split).join("covid");
        std::fs::create_dir_all(&c).unwrap();
        film(40, 40, 9).save(c.join("y.png")).unwrap();
    }
    let ds = covid_resnet::data::split::Dataset::open_with(
        &data,
        &covid_resnet::data::split::DataOptions {
            valid: Some(covid_resnet::data::split::ValidChoice::Test),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.train.patients().len(), 4, "{:?}", ds.train.patients());
    let o = cli(&["eval", "--bootstrap", "0", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let r = EvalReport::load(&dir.path().join("eval-test.json")).unwrap();
    let mut names: Vec<&str> = r.cases.iter().map(|c| c.file.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 4, "{names:?}");
    for c in &r.cases {
        assert!(
            c.path().is_file(),
            "{} does not lead back to its file",
            c.file
        );
    }
}

/// Item 6: a comma in a source and a newline in a file name stay inside their CSV fields.
#[test]
fn report_csv_quotes_what_needs_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::viewer_infer::write_model(dir.path(), 32);
    let data = dir.path().join("data");
    for split in ["train", "test"] {
        std::fs::create_dir_all(data.join(split)).unwrap();
        let mut lines = String::new();
        for i in 0..4 {
            let name = format!("{split}_{i}.png");
            film(40, 40, i).save(data.join(split).join(&name)).unwrap();
            let label = if i % 2 == 0 { "normal" } else { "COVID-19" };
            lines.push_str(&format!("p{split}{i} {name} {label} cohen,\"x\"\n"));
        }
        std::fs::write(data.join(format!("{split}_s.txt")), lines).unwrap();
    }
    let o = cli(&["eval", "--bootstrap", "0", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let mut rd = csv::Reader::from_path(dir.path().join("eval-test.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r.len() == 9 && &r[4] == "cohen,\"x\""),
        "{rows:?}"
    );
    // A newline in a class-folder file name.
    let data2 = dir.path().join("data2");
    for split in ["train", "test"] {
        for (class, name) in [("normal", "a\nb.png"), ("covid", "c.png")] {
            let d = data2.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            film(40, 40, 5).save(d.join(name)).unwrap();
        }
    }
    let o = cli(&["eval", "--bootstrap", "0", "--out"])
        .arg(dir.path().join("e2"))
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&data2)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let mut rd = csv::Reader::from_path(dir.path().join("e2").join("eval-test.csv")).unwrap();
    let files: Vec<String> = rd.records().map(|r| r.unwrap()[0].to_string()).collect();
    assert_eq!(files.len(), 2);
    assert!(files.iter().any(|f| f.ends_with("a\nb.png")), "{files:?}");
}

/// Item 7: broken links are reported, links out of the data folder refused unless allowed.
#[test]
#[cfg(unix)]
fn links_are_reported_and_links_out_of_the_data_folder_refused() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let outside = dir.path().join("outside.png");
    film(40, 40, 7).save(&outside).unwrap();
    for split in ["train", "test"] {
        for class in ["normal", "covid"] {
            let d = data.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..3 {
                film(40, 40, i).save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let n = data.join("train").join("normal");
    symlink(n.join("0.png"), n.join("inside.png")).unwrap();
    symlink(dir.path().join("gone.png"), n.join("dangling.png")).unwrap();
    symlink(n.join("loop.png"), n.join("loop.png")).unwrap();
    symlink(&outside, n.join("outside.png")).unwrap();
    let o = cli(&["data", "check", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!o.status.success(), "skipped entries make the check fail");
    let text = String::from_utf8_lossy(&o.stdout);
    for name in ["dangling.png", "loop.png", "outside.png"] {
        assert!(
            text.lines()
                .any(|l| l.contains("SKIPPED") && l.contains(name)),
            "{name} not reported:\n{text}"
        );
    }
    assert!(text.contains("outside the data folder"), "{text}");
    let on_test = covid_resnet::data::split::DataOptions {
        valid: Some(covid_resnet::data::split::ValidChoice::Test),
        ..Default::default()
    };
    let ds = covid_resnet::data::split::Dataset::open_with(&data, &on_test).unwrap();
    assert_eq!(
        ds.train.class_counts(4)[0],
        4,
        "the three files and the inside link"
    );
    let allowed = covid_resnet::data::split::Dataset::open_with(
        &data,
        &covid_resnet::data::split::DataOptions {
            allow_outside_links: true,
            ..on_test
        },
    )
    .unwrap();
    assert_eq!(allowed.train.class_counts(4)[0], 5);
    // A split file may not reach outside either: the run refuses to start, naming it.
    let (_d, sdata, run, plan) = setup(16, SHORT);
    std::fs::remove_file(sdata.join("train").join("train_0.png")).unwrap();
    symlink(&outside, sdata.join("train").join("train_0.png")).unwrap();
    let o = train(&sdata, &plan, &run).output().unwrap();
    assert!(!o.status.success());
    assert!(
        err(&o).contains("train_0.png") && err(&o).contains("outside the data folder"),
        "{}",
        err(&o)
    );
}

/// Item 8: an empty evaluation split is refused before training; an empty class is warned
/// about.
#[test]
fn an_empty_test_split_is_refused_and_an_empty_class_named() {
    let (_d, data, run, plan) = setup(16, SHORT);
    std::fs::write(data.join("test_synthetic.txt"), "").unwrap();
    let o = train(&data, &plan, &run).output().unwrap();
    assert!(!o.status.success());
    assert!(
        err(&o).contains("the test split has no images"),
        "{}",
        err(&o)
    );
    assert!(!run.join("checkpoint.safetensors").exists());
    let o = cli(&["eval", "--model"])
        .arg(crate::viewer_infer::write_model(_d.path(), 32))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("has no images"), "{}", err(&o));
    // Classes without training images (the synthetic set has Normal and COVID-19 only).
    let (_d, data, run, plan) = setup(16, SHORT);
    let o = train(&data, &plan, &run)
        .args(["--classes", "Normal,Bacterial,Viral,COVID-19"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains(
            "2 classes have no training images: the model cannot learn them: Bacterial, Viral"
        ),
        "{}",
        err(&o)
    );
}

fn tamper(model: &Path, out: &Path, f: impl Fn(&mut serde_json::Value)) {
    use safetensors::SafeTensors;
    let bytes = std::fs::read(model).unwrap();
    let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&md.metadata().as_ref().unwrap()["covid_resnet"]).unwrap();
    f(&mut meta);
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let info = std::collections::HashMap::from([("covid_resnet".to_string(), meta.to_string())]);
    std::fs::write(out, safetensors::serialize(tensors, Some(info)).unwrap()).unwrap();
}

/// Item 9: a model file's metadata is checked against sane ranges and its tensors.
#[test]
fn model_metadata_is_checked() {
    let (_d, data, run, plan) = setup(32, SHORT);
    let o = train(&data, &plan, &run).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let model = run.join("model.safetensors");
    let img = run.join("x.png");
    film(40, 40, 1).save(&img).unwrap();
    let bad = run.join("bad.safetensors");
    for (what, change, field) in [
        (
            "zero std",
            serde_json::json!({"std": [0.0, 0.0, 0.0]}),
            "std",
        ),
        (
            "huge input",
            serde_json::json!({"input_size_px": 4096}),
            "input_size_px",
        ),
        (
            "other size",
            serde_json::json!({"input_size_px": 64}),
            "last trained at 32",
        ),
        (
            "reordered",
            serde_json::json!({"class_names": ["COVID-19", "Normal"]}),
            "differ from the classes it was trained on",
        ),
        (
            "three classes",
            serde_json::json!({"class_names": ["a", "b", "c"], "training": null}),
            "the head has 2 outputs",
        ),
    ] {
        tamper(&model, &bad, |m| {
            for (k, v) in change.as_object().unwrap() {
                m[k] = v.clone();
            }
        });
        let o = cli(&["predict", "--model"])
            .arg(&bad)
            .arg(&img)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{what} accepted");
        assert!(err(&o).contains(field), "{what}: {}", err(&o));
    }
    let o = cli(&["predict", "--batch-size", "0", "--model"])
        .arg(&model)
        .arg(&img)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("--batch-size 0"), "{}", err(&o));
}

/// Item 10: an OS error is said once; a checkpoint given as a model says what it is.
#[test]
fn messages_say_things_once_and_name_a_checkpoint() {
    let (_d, data, run, plan) = setup(32, SHORT);
    let o = train(&data, &plan, &run).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let img = run.join("x.png");
    film(40, 40, 1).save(&img).unwrap();
    let o = cli(&["predict", "--model"])
        .arg(run.join("checkpoint.safetensors"))
        .arg(&img)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("this is a training checkpoint") && e.contains("--resume"),
        "{e}"
    );
    assert!(!e.contains("pretrained weights"), "{e}");
    // Writing under a file (not a folder): the OS error appears once.
    let o = cli(&["eval", "--bootstrap", "0", "--model"])
        .arg(run.join("model.safetensors"))
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(img.join("sub"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = err(&o);
    assert_eq!(e.matches("(os error").count(), 1, "{e}");
}
