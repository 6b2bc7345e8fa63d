//! What a reviewer gets from the command line, on the shipped model and the sample
//! radiographs: `eval` at an operating point (given, or found for a target sensitivity) with
//! ROC, calibration and their PNGs; `eval --compare`; `model threshold` and `model
//! calibrate`, whose rules `predict` then follows. Expected values are computed here from
//! the per-image probabilities with the definitions, not taken from our code.
use crate::common::bin;
use covid_resnet::model::io::model_file::read_meta;
use covid_resnet::model::io::shipped;
use std::path::{Path, PathBuf};
use std::process::Command;

const COVID: usize = 3;

fn run(args: &[&str], extra: &[&Path]) -> (String, String) {
    let o = Command::new(bin())
        .args(["--device", "cpu"])
        .args(args)
        .args(extra)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "{args:?}: {err}");
    (out, err)
}

fn samples() -> PathBuf {
    shipped::samples_dir().expect("assets/samples ships with the checkout")
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// (actual, probabilities) of every case of a report.
fn cases(r: &serde_json::Value) -> Vec<(usize, Vec<f64>)> {
    r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let p = c["probs"].as_array().unwrap();
            (
                c["actual"].as_u64().unwrap() as usize,
                p.iter().map(|v| v.as_f64().unwrap()).collect(),
            )
        })
        .collect()
}

fn rule(p: &[f64], t: f64) -> usize {
    if p[COVID] >= t {
        return COVID;
    }
    (0..p.len())
        .filter(|&k| k != COVID)
        .fold(None, |b: Option<usize>, k| match b {
            Some(b) if p[b] >= p[k] => Some(b),
            _ => Some(k),
        })
        .unwrap()
}

#[test]
fn eval_at_an_operating_point_writes_roc_calibration_and_charts() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    run(
        &[
            "eval",
            "--threshold",
            "COVID-19=0.2",
            "--bootstrap",
            "200",
            "--out",
        ],
        &[o, Path::new("--data"), &samples()],
    );
    let r = report(&o.join("eval-test.json"));
    assert_eq!(r["operating_point"]["class"], 3);
    assert_eq!(r["operating_point"]["threshold"], 0.2);
    for (c, (actual, p)) in r["cases"].as_array().unwrap().iter().zip(cases(&r)) {
        assert_eq!(c["predicted"].as_u64().unwrap() as usize, rule(&p, 0.2));
        let _ = actual;
    }
    // AUC of COVID-19 against the rest, by its definition: P(score of a positive > score of
    // a negative) + half the ties.
    let cs = cases(&r);
    let (pos, neg): (Vec<_>, Vec<_>) = cs.iter().partition(|(a, _)| *a == COVID);
    let mut wins = 0.0;
    for (_, pp) in &pos {
        for (_, pn) in &neg {
            wins += if pp[COVID] > pn[COVID] {
                1.0
            } else if pp[COVID] == pn[COVID] {
                0.5
            } else {
                0.0
            };
        }
    }
    let want = wins / (pos.len() * neg.len()) as f64;
    let got = r["scores"]["roc"][COVID]["auc"]["value"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} {want}");
    // Brier by its definition.
    let brier: f64 = cs
        .iter()
        .map(|(a, p)| {
            p.iter()
                .enumerate()
                .map(|(k, v)| (v - (k == *a) as u8 as f64).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / cs.len() as f64;
    let got = r["scores"]["brier"]["value"].as_f64().unwrap();
    assert!((got - brier).abs() < 1e-6, "{got} {brier}");
    // Three COVID-19 images: every proportion of the class has few events, so Wilson.
    let b = &r["scores"]["operating"]["binary"];
    assert_eq!(b["sensitivity"]["method"], "wilson");
    let md = std::fs::read_to_string(o.join("eval-test.md")).unwrap();
    for want in [
        "## Operating point",
        "## Calibration",
        "Macro AUC",
        "† a Wilson",
    ] {
        assert!(md.contains(want), "{want} missing from the report");
    }
    for png in ["confusion", "roc", "reliability", "histogram"] {
        let p = o.join(format!("eval-test-{png}.png"));
        assert!(image::open(&p).is_ok(), "{}", p.display());
    }

    // A target sensitivity of 100 %: the lowest COVID-19 probability of a COVID-19 image.
    let o2 = out.path().join("target");
    let (_, err) = run(
        &[
            "eval",
            "--target-sensitivity",
            "COVID-19=1.0",
            "--bootstrap",
            "50",
            "--out",
        ],
        &[&o2, Path::new("--data"), &samples()],
    );
    assert!(err.contains("optimistic"), "{err}");
    let r2 = report(&o2.join("eval-test.json"));
    let lowest = pos
        .iter()
        .map(|(_, p)| p[COVID])
        .fold(f64::INFINITY, f64::min);
    let t = r2["operating_point"]["threshold"].as_f64().unwrap();
    assert!((t - lowest).abs() < 1e-6, "{t} {lowest}");
    assert_eq!(r2["scores"]["operating"]["binary"]["fn_"], 0);
}

#[test]
fn a_threshold_written_into_the_model_is_what_predict_and_compare_use() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files: Vec<PathBuf> = std::fs::read_dir(samples().join("test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let classes = ["Normal", "Bacterial", "Viral", "COVID-19"];
    let predict = |model: &Path| -> serde_json::Value {
        let (json, _) = run(
            &["predict", "--json", "--model", model.to_str().unwrap()],
            &refs,
        );
        serde_json::from_str(&json).unwrap()
    };
    // A threshold below the median COVID-19 probability of the twelve images, so that it
    // calls more images COVID-19 than there are (three).
    let shipped_model = shipped::model_path().unwrap();
    let mut pc: Vec<f64> = predict(&shipped_model)["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["probabilities"]["COVID-19"].as_f64().unwrap())
        .collect();
    pc.sort_by(|a, b| b.total_cmp(a));
    let t = (pc[5] * 0.99 * 1e6).floor() / 1e6;
    let point = format!("COVID-19={t}");
    let strict = d.join("strict.safetensors");
    let (out, _) = run(&["model", "threshold", &point, "--out"], &[&strict]);
    let said = format!("predicts COVID-19 when p ≥ {t}");
    assert!(out.contains(&said), "{out}");
    let meta = read_meta(&strict).unwrap();
    assert_eq!(meta.operating_point.as_ref().unwrap().threshold, t);
    let (info, _) = run(&["model", "info"], &[&strict]);
    assert!(info.contains(&said), "{info}");

    // predict follows it: COVID-19 for every image whose probability reaches t.
    let mut covid = 0;
    for p in predict(&strict)["predictions"].as_array().unwrap() {
        let probs: Vec<f64> = classes
            .iter()
            .map(|c| p["probabilities"][c].as_f64().unwrap())
            .collect();
        assert_eq!(p["predicted"], classes[rule(&probs, t)], "{p}");
        covid += (probs[COVID] >= t) as usize;
    }
    assert!(covid >= 6, "{covid} images reach {t}");
    let (_, err) = run(
        &["predict", "--model", strict.to_str().unwrap()],
        &refs[..1],
    );
    assert!(err.contains("operating point: COVID-19 when p ≥"), "{err}");

    // eval --compare: the shipped model (A) against the strict copy (B), paired.
    let out = d.join("cmp");
    let (md, _) = run(
        &["eval", "--bootstrap", "100", "--compare"],
        &[
            &shipped_model,
            &strict,
            Path::new("--data"),
            &samples(),
            Path::new("--out"),
            &out,
        ],
    );
    assert!(md.contains("McNemar"), "{md}");
    let c = report(&out.join("compare-test.json"));
    // Recomputed from the two models' own reports.
    let (ra, rb) = (out.join("a"), out.join("b"));
    run(
        &["eval", "--bootstrap", "0", "--out"],
        &[
            &ra,
            Path::new("--model"),
            &shipped_model,
            Path::new("--data"),
            &samples(),
        ],
    );
    run(
        &["eval", "--bootstrap", "0", "--out"],
        &[
            &rb,
            Path::new("--model"),
            &strict,
            Path::new("--data"),
            &samples(),
        ],
    );
    let right = |p: &Path| -> std::collections::HashMap<String, bool> {
        report(&p.join("eval-test.json"))["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["file"].as_str().unwrap().to_string(),
                    c["actual"] == c["predicted"],
                )
            })
            .collect()
    };
    let (a, b) = (right(&ra), right(&rb));
    let only_a = a.iter().filter(|(f, &ok)| ok && !b[*f]).count();
    let only_b = a.iter().filter(|(f, &ok)| !ok && b[*f]).count();
    assert_eq!(c["only_a"], only_a);
    assert_eq!(c["only_b"], only_b);
    let acc = |m: &std::collections::HashMap<String, bool>| {
        m.values().filter(|&&v| v).count() as f64 / m.len() as f64
    };
    assert!((c["accuracy_diff"]["value"].as_f64().unwrap() - (acc(&b) - acc(&a))).abs() < 1e-12);
    // McNemar's exact p: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1.
    let n = only_a + only_b;
    let k = only_a.min(only_b);
    let choose =
        |n: usize, k: usize| (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64);
    let p: f64 = (0..=k).map(|i| choose(n, i)).sum::<f64>() / 2f64.powi(n as i32);
    let want = if n == 0 { 1.0 } else { (2.0 * p).min(1.0) };
    assert!((c["mcnemar_p"].as_f64().unwrap() - want).abs() < 1e-12);
}

/// A class-folder data set of the twelve samples in every split (valid/ held out for a fit).
fn folders(d: &Path) -> PathBuf {
    let root = d.join("folders");
    let names = ["normal", "bacteria", "viral", "COVID-19"];
    let classes = ["Normal", "Bacterial", "Viral", "COVID-19"];
    let list = std::fs::read_to_string(samples().join("test_samples.txt")).unwrap();
    for line in list.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let class = classes[names.iter().position(|n| *n == f[2]).unwrap()];
        for split in ["train", "valid", "test"] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(samples().join("test").join(f[1]), dir.join(f[1])).unwrap();
        }
    }
    root
}

#[test]
fn calibrate_fits_a_temperature_on_held_out_images_and_predict_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = folders(d);
    let cal = d.join("cal.safetensors");
    // The test split by its name, and under another: as the validation source (before:
    // fitted on the test split and recorded as "fitted on the valid split").
    for (how, says) in [("--split", "--split test"), ("--valid", "--valid test")] {
        let o = Command::new(bin())
            .args([
                "--device",
                "cpu",
                "model",
                "calibrate",
                how,
                "test",
                "--data",
            ])
            .arg(&data)
            .arg("--out")
            .arg(&cal)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success()
                && err.contains(says)
                && err.contains("the test split is where the model is measured"),
            "{err}"
        );
        assert!(!cal.exists());
    }

    let (out, _) = run(
        &["model", "calibrate", "--data"],
        &[&data, Path::new("--out"), &cal],
    );
    assert!(out.contains("temperature"), "{out}");
    let t = read_meta(&cal).unwrap().temperature.unwrap();
    assert!(
        t.value > 0.0 && t.fitted_on.contains("valid split"),
        "{t:?}"
    );

    // predict with the calibrated copy: softmax(log p / T) of the original probabilities.
    let file = data.join("test/Viral/person1_virus_12.jpeg");
    let probs = |model: &Path| -> Vec<f64> {
        let (json, _) = run(
            &["predict", "--json", "--model", model.to_str().unwrap()],
            &[&file],
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let p = &v["predictions"][0]["probabilities"];
        ["Normal", "Bacterial", "Viral", "COVID-19"]
            .iter()
            .map(|c| p[c].as_f64().unwrap())
            .collect()
    };
    let raw = probs(&shipped::model_path().unwrap());
    let got = probs(&cal);
    let z: Vec<f64> = raw.iter().map(|p| p.ln() / t.value).collect();
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
    for (g, zi) in got.iter().zip(&z) {
        let want = (zi - m).exp() / s;
        assert!(
            (g - want).abs() < 1e-4,
            "{got:?} vs softmax(log {raw:?} / {})",
            t.value
        );
    }
}

#[test]
fn a_model_files_temperature_and_operating_point_are_checked_on_load() {
    // Before: temperature 1e-300 gave NaN probabilities with exit 0, 0 or -1 were ignored,
    // threshold -1 predicted COVID-19 for every image, an unknown class was ignored.
    use covid_resnet::model::io::model_file::{rewrite_meta, SavedOperatingPoint, Temperature};
    let dir = tempfile::tempdir().unwrap();
    let shipped = shipped::model_path().unwrap();
    let image = samples().join("test/Viral/person1_virus_12.jpeg");
    let temp = |v: f64| Temperature {
        value: v,
        fitted_on: "hand-edited".into(),
    };
    let point = |c: &str, t: f64| SavedOperatingPoint {
        class: c.into(),
        threshold: t,
    };
    type Edit = Box<dyn Fn(&mut covid_resnet::model::io::model_file::ModelMeta)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "tiny",
            Box::new(move |m| m.temperature = Some(temp(1e-300))),
            "temperature.value 1e-300 is outside",
        ),
        (
            "zero",
            Box::new(move |m| m.temperature = Some(temp(0.0))),
            "temperature.value 0 is outside",
        ),
        (
            "negative",
            Box::new(move |m| m.temperature = Some(temp(-1.0))),
            "temperature.value -1 is outside",
        ),
        (
            "below",
            Box::new(move |m| m.operating_point = Some(point("COVID-19", -1.0))),
            "operating_point.threshold -1 is outside [0, 1]",
        ),
        (
            "unknown",
            Box::new(move |m| m.operating_point = Some(point("Influenza", 0.3))),
            "operating_point.class \"Influenza\" is not one of the model's classes",
        ),
    ];
    for (name, edit, says) in cases {
        let file = dir.path().join(format!("{name}.safetensors"));
        rewrite_meta(&shipped, &file, |m| edit(m)).unwrap();
        let o = Command::new(bin())
            .args(["--device", "cpu", "predict", "--model"])
            .arg(&file)
            .arg(&image)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: accepted");
        assert!(
            err.contains(says) && err.contains(&format!("{name}.safetensors")),
            "{name}: {err}"
        );
    }
    // A spelling of the class that data sets use is the class (before: `covid` refused).
    let file = dir.path().join("covid.safetensors");
    run(&["model", "threshold", "covid=0.3", "--out"], &[&file]);
    let op = read_meta(&file).unwrap().operating_point.unwrap();
    assert_eq!((op.class.as_str(), op.threshold), ("COVID-19", 0.3));
}
