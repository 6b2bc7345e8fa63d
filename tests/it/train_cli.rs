//! The `train`, `eval` and `lr-find` commands on the synthetic dataset.
use crate::common::bin;
use crate::training::write_synthetic;
use std::process::Command;

#[test]
fn train_eval_and_lr_find_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 32, 8);
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        "name = \"t\"\n[[stage]]\nsize_px = 32\n[[stage.step]]\ntrain = \"head\"\nlr = \"1e-3\"\nepochs = 1\n[[stage.step]]\ntrain = \"all\"\nlr = \"..1e-3\"\nepochs = 1\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args([
            "--device",
            "cpu",
            "train",
            "--backbone",
            "resnet18",
            "--batch-size",
            "8",
            "--plan",
        ])
        .arg(&plan)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("epoch  2") && err.contains("finished: model"),
        "{err}"
    );
    assert!(run.join("model.safetensors").is_file() && run.join("report.md").is_file());

    // Resuming a finished run has nothing left to train and finishes again.
    let out = Command::new(bin())
        .args(["--device", "cpu", "train", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(bin())
        .args(["--device", "cpu", "eval", "--bootstrap", "100", "--model"])
        .arg(run.join("model.safetensors"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("| Normal | 4 |") && text.contains("Confusion matrix"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval-test.json")).unwrap()).unwrap();
    // The confusion matrix as a picture beside it.
    assert!(image::open(run.join("eval-test-confusion.png")).is_ok());
    assert_eq!(report["metrics"]["n"], 8);
    assert_eq!(report["cases"].as_array().unwrap().len(), 8);

    let csv = dir.path().join("lr.csv");
    let out = Command::new(bin())
        .args([
            "--device",
            "cpu",
            "lr-find",
            "--backbone",
            "resnet18",
            "--batch-size",
            "8",
            "--size",
            "32",
            "--iters",
            "20",
            "--data",
        ])
        .arg(&data)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("valley") && text.contains("steep"), "{text}");
    let lines = std::fs::read_to_string(&csv).unwrap().lines().count();
    assert!((17..=21).contains(&lines), "{lines} lines");

    // A bad plan is refused with the row that is wrong.
    std::fs::write(&plan, "name = \"t\"\n[[stage]]\nsize_px = 8\n[[stage.step]]\ntrain = \"all\"\nlr = \"1e-3\"\nepochs = 1\n").unwrap();
    let out = Command::new(bin())
        .args(["train", "--plan"])
        .arg(&plan)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stage 1: size 8 px"));
}
