//! The training engine end to end on a tiny synthetic dataset the test writes: two classes
//! that differ in texture and brightness, ResNet-18 at 32 px.
use candle_core::Tensor;
use covid_resnet::device::DeviceChoice;
use covid_resnet::model::Backbone;
use covid_resnet::train::config::TrainConfig;
use covid_resnet::train::events::{Control, TrainEvent, VecSink};
use covid_resnet::train::schedule::{LrSpec, Plan, Stage, Step, Trainable};
use covid_resnet::train::trainer::{Outcome, Trainer};
use image::{GrayImage, Luma};
use std::path::Path;
use std::sync::Arc;

/// Normal: dark, horizontal stripes; COVID-19: bright, vertical stripes. These runs are about
/// the loop, so the data set asks to validate on its test split (the paper's way) and the
/// training split keeps all `n_train` images.
pub fn write_synthetic(root: &Path, n_train: usize, n_test: usize) {
    write_synthetic_images(root, n_train, n_test);
    std::fs::write(root.join("dataset.toml"), "valid = \"test\"\n").unwrap();
}

/// The images and split files of [`write_synthetic`], without a `dataset.toml`.
pub fn write_synthetic_images(root: &Path, n_train: usize, n_test: usize) {
    for (split, n) in [("train", n_train), ("test", n_test)] {
        std::fs::create_dir_all(root.join(split)).unwrap();
        let mut lines = String::new();
        for i in 0..n {
            let class = if i % 2 == 0 { 0 } else { 3 };
            let img = GrayImage::from_fn(40, 40, |x, y| {
                let noise = ((x * 7 + y * 13 + i as u32 * 31) % 17) as i32 - 8;
                let (base, stripe) = if class == 0 {
                    (60, (y / 3) % 2)
                } else {
                    (170, (x / 3) % 2)
                };
                Luma([(base + 50 * stripe as i32 + noise).clamp(0, 255) as u8])
            });
            let name = format!("{split}_{i}.png");
            img.save(root.join(split).join(&name)).unwrap();
            let label = if class == 0 { "normal" } else { "COVID-19" };
            lines.push_str(&format!("p{split}{i} {name} {label} synth\n"));
        }
        std::fs::write(root.join(format!("{split}_synthetic.txt")), lines).unwrap();
    }
}

pub fn plan(epochs_head: usize, epochs_all: usize) -> Plan {
    Plan {
        name: "tiny".into(),
        sampling: None,
        class_weights: None,
        stages: vec![Stage {
            size_px: 32,
            steps: vec![
                Step {
                    train: Trainable::Head,
                    lr: LrSpec::Fixed(2e-3),
                    epochs: epochs_head,
                },
                Step {
                    train: Trainable::All,
                    lr: LrSpec::Range(1e-4, 2e-3),
                    epochs: epochs_all,
                },
            ],
        }],
    }
}

pub fn config(data: &Path, out: &Path, p: Plan) -> TrainConfig {
    let mut c = TrainConfig::new(data.to_path_buf(), out.to_path_buf());
    c.backbone = Backbone::Resnet18;
    c.plan = p;
    c.batch_size = 8;
    c.seed = 3;
    c.bootstrap = 50;
    c
}

fn tensors(t: &Trainer) -> Vec<(String, Tensor)> {
    t.model().store().named_tensors()
}

#[test]
fn train_end_to_end_loss_falls_and_accuracy_rises() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 48, 16);
    let sink = Arc::new(VecSink::default());
    // From random initialisation the body needs a real learning rate: one head epoch, then
    // five epochs of the whole network at 1e-3.
    let mut p = plan(1, 5);
    p.stages[0].steps[1].lr = LrSpec::Fixed(1e-3);
    let mut t = Trainer::new(
        config(&data, &out, p),
        DeviceChoice::Cpu,
        sink.clone(),
        Arc::new(Control::default()),
    )
    .unwrap();
    let outcome = t.run().unwrap();
    assert!(matches!(outcome, Outcome::Finished { .. }));
    let ev = sink.events();
    let losses: Vec<f64> = ev
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Batch { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect();
    assert_eq!(losses.len(), 6 * 6, "6 epochs of 48/8 batches");
    let first = losses[..6].iter().sum::<f64>() / 6.0;
    let last = losses[30..].iter().sum::<f64>() / 6.0;
    eprintln!("mean batch loss: first epoch {first:.3}, last epoch {last:.3}");
    assert!(
        last < 0.5 * first,
        "loss should fall: first epoch {first:.3}, last {last:.3}"
    );
    let epochs: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Epoch(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), 6);
    let acc_last = epochs.last().unwrap().accuracy;
    eprintln!(
        "validation accuracy per epoch: {:?}",
        epochs.iter().map(|m| m.accuracy).collect::<Vec<_>>()
    );
    assert!(
        acc_last >= 0.9,
        "accuracy {:?}",
        epochs.iter().map(|m| m.accuracy).collect::<Vec<_>>()
    );
    assert!(acc_last >= epochs[0].accuracy);
    // Files of a finished run.
    for f in [
        "model.safetensors",
        "checkpoint.safetensors",
        "report.json",
        "report.csv",
        "report.md",
        "history.json",
        "plan.toml",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(ev.iter().any(|e| matches!(e, TrainEvent::Finished { .. })));
    // No temporary files left behind.
    let stray: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn resume_after_a_stop_ends_with_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_synthetic(&data, 32, 8);
    let p = plan(1, 2);
    // Uninterrupted.
    let a_dir = dir.path().join("a");
    let mut a = Trainer::new(
        config(&data, &a_dir, p.clone()),
        DeviceChoice::Cpu,
        Arc::new(VecSink::default()),
        Arc::new(Control::default()),
    )
    .unwrap();
    a.run().unwrap();
    // Stopped twice: inside an epoch (batch 6 of the plan = epoch 2, batch 2) and at an
    // epoch's end (batch 12), resumed each time from the checkpoint.
    let b_dir = dir.path().join("b");
    let control = Arc::new(Control::default());
    control.stop_after_batches(6);
    let mut b = Trainer::new(
        config(&data, &b_dir, p.clone()),
        DeviceChoice::Cpu,
        Arc::new(VecSink::default()),
        control,
    )
    .unwrap();
    assert_eq!(b.run().unwrap(), Outcome::Stopped);
    assert_eq!(
        (b.position().epoch, b.position().batch),
        (0, 2),
        "{:?}",
        b.position()
    );
    drop(b);
    let control = Arc::new(Control::default());
    control.stop_after_batches(2);
    let mut b = Trainer::resume(
        &b_dir,
        DeviceChoice::Cpu,
        Arc::new(VecSink::default()),
        control,
    )
    .unwrap();
    assert_eq!(b.run().unwrap(), Outcome::Stopped);
    assert_eq!(
        b.position().batch,
        0,
        "stopped at an epoch boundary: {:?}",
        b.position()
    );
    drop(b);
    let mut b = Trainer::resume(
        &b_dir,
        DeviceChoice::Cpu,
        Arc::new(VecSink::default()),
        Arc::new(Control::default()),
    )
    .unwrap();
    assert!(matches!(b.run().unwrap(), Outcome::Finished { .. }));
    for ((n, x), (_, y)) in tensors(&a).iter().zip(tensors(&b)) {
        assert_identical(x, &y, n);
    }
    assert_eq!(a.history().len(), b.history().len());
}

/// A bf16 run keeps its precision through a stop and a resume: it ends with the weights of
/// the uninterrupted bf16 run (bit for bit), which differ from the float32 run's.
#[test]
fn a_bf16_run_resumes_in_bf16() {
    use covid_resnet::model::ops::precision::Precision;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_synthetic(&data, 32, 8);
    let p = plan(1, 1);
    let run = |out: &str, precision: Precision, stop: Option<usize>| {
        let mut cfg = config(&data, &dir.path().join(out), p.clone());
        cfg.precision = precision;
        let control = Arc::new(Control::default());
        if let Some(n) = stop {
            control.stop_after_batches(n);
        }
        let mut t = Trainer::new(
            cfg,
            DeviceChoice::Cpu,
            Arc::new(VecSink::default()),
            control,
        )
        .unwrap();
        let outcome = t.run().unwrap();
        (t, outcome)
    };
    let (f32_run, _) = run("f32", Precision::F32, None);
    let (whole, _) = run("whole", Precision::Bf16, None);
    let (stopped, outcome) = run("b", Precision::Bf16, Some(5));
    assert_eq!(outcome, Outcome::Stopped);
    drop(stopped);
    let mut b = Trainer::resume(
        &dir.path().join("b"),
        DeviceChoice::Cpu,
        Arc::new(VecSink::default()),
        Arc::new(Control::default()),
    )
    .unwrap();
    assert_eq!(b.config().precision, Precision::Bf16);
    assert!(matches!(b.run().unwrap(), Outcome::Finished { .. }));
    for ((n, x), (_, y)) in tensors(&whole).iter().zip(tensors(&b)) {
        assert_identical(x, &y, n);
    }
    let differ = tensors(&whole)
        .iter()
        .zip(tensors(&f32_run))
        .any(|((_, x), (_, y))| {
            (x - &y)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        });
    assert!(differ, "bf16 and f32 runs ended with the same weights");
}

#[test]
fn lr_finder_reports_points_and_restores_everything_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 32, 8);
    let sink = Arc::new(VecSink::default());
    let mut cfg = config(&data, &out, plan(1, 1));
    cfg.lr_finder.num_iter = 30;
    let control = Arc::new(Control::default());
    control.stop_after_batches(4);
    let mut t = Trainer::new(cfg, DeviceChoice::Cpu, sink.clone(), control.clone()).unwrap();
    // Train a little first so the optimizer has state to protect.
    assert_eq!(t.run().unwrap(), Outcome::Stopped);
    control.reset();
    let before: Vec<Vec<u8>> = tensors(&t).iter().map(|(_, x)| bytes(x)).collect();
    let forwards = t.model().train_forwards();
    let ckpt_before = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let r = t.lr_find(Trainable::All).unwrap();
    assert!(
        r.points.len() >= 16 && r.points.len() <= 30,
        "{}",
        r.points.len()
    );
    assert!(r.points.windows(2).all(|w| w[1].lr > w[0].lr));
    assert!(
        r.suggestions.valley.is_some()
            && r.suggestions.steep.is_some()
            && r.suggestions.minimum.is_some()
    );
    let after: Vec<Vec<u8>> = tensors(&t).iter().map(|(_, x)| bytes(x)).collect();
    assert!(before == after, "weights or BatchNorm statistics changed");
    assert_eq!(t.model().train_forwards(), forwards);
    // The optimizer state too: a checkpoint written now is byte-identical to the one before.
    t.save_checkpoint().unwrap();
    assert!(
        std::fs::read(out.join("checkpoint.safetensors")).unwrap() == ckpt_before,
        "checkpoint changed"
    );
    let points = sink
        .events()
        .iter()
        .filter(|e| matches!(e, TrainEvent::LrFinderPoint(_)))
        .count();
    assert_eq!(points, r.points.len());
}

fn bytes(t: &Tensor) -> Vec<u8> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// A learning rate of 1e30 drives the head's logits past float32's range within a few
/// steps: the trainer must stop, restore the weights of the epoch's start and say so.
#[test]
fn divergence_stops_restores_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 32, 8);
    let mut p = plan(1, 1);
    p.stages[0].steps[1].lr = LrSpec::Fixed(1e30);
    let sink = Arc::new(VecSink::default());
    let mut t = Trainer::new(
        config(&data, &out, p),
        DeviceChoice::Cpu,
        sink.clone(),
        Arc::new(Control::default()),
    )
    .unwrap();
    let err = t.run().unwrap_err().to_string();
    assert!(
        err.contains("loss became") && err.contains("restored"),
        "{err}"
    );
    // The weights are those of the last checkpoint (end of the head epoch), all finite.
    let ckpt = candle_core::safetensors::load(
        out.join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for (n, x) in tensors(&t) {
        let c = &ckpt[&format!("model.{n}")];
        assert_identical(&x, c, &n);
    }
    assert_eq!(
        t.history().len(),
        1,
        "the head epoch finished before the divergence"
    );
}

/// Fails unless the tensors are equal element for element.
fn assert_identical(a: &Tensor, b: &Tensor, name: &str) {
    let d = crate::common::max_abs_diff(a, b);
    assert_eq!(d, 0.0, "{name} differs by {d}");
}
