//! `covid-resnet bench train|infer`: times full training steps (forward, cross-entropy,
//! backward, Adam step of the whole classifier) or inference, after a warm-up, and prints
//! one `RESULT key=value ...` line. With `--torch-python` it also runs PyTorch's reference
//! script on the same shapes and prints the ratio.
use crate::device::{describe, DeviceChoice};
use crate::model::classifier::NUM_GROUPS;
use crate::model::{Backbone, Classifier};
use crate::train::optim::{Adam, AdamConfig};
use anyhow::Context;
use candle_core::{DType, Device, Tensor, D};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKind {
    /// Training steps.
    Train,
    /// Inference (eval-mode forward + softmax).
    Infer,
}

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// train or infer.
    pub kind: BenchKind,
    /// resnet18, resnet34 or resnet50.
    #[arg(long, default_value = "resnet50")]
    pub backbone: Backbone,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Input side in pixels.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Timed iterations (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Python with torch + torchvision: also run PyTorch's reference on the same shapes.
    #[arg(long)]
    pub torch_python: Option<PathBuf>,
    /// PyTorch's reference script.
    #[arg(long, default_value = "../shared/reference/torch_bench.py")]
    pub torch_script: PathBuf,
}

/// A benchmark's outcome.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Median seconds per iteration.
    pub median_s: f64,
    /// Images per second at the median.
    pub img_per_s: f64,
}

/// Times `a.kind` on `device`.
pub fn measure(a: &BenchArgs, device: &Device) -> crate::Result<BenchResult> {
    let model = Classifier::new(a.backbone, 4, 0, device)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let n = a.batch * 3 * a.size * a.size;
    let data: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    let x = Tensor::from_vec(data, (a.batch, 3, a.size, a.size), device)?;
    let y = Tensor::from_vec(
        (0..a.batch as u32).map(|i| i % 4).collect::<Vec<_>>(),
        a.batch,
        device,
    )?;
    let mut opt = Adam::new(
        model.store().params(),
        NUM_GROUPS,
        1e-3,
        AdamConfig {
            weight_decay: 0.0,
            ..AdamConfig::default()
        },
    )?;
    let mut step = || -> crate::Result<()> {
        match a.kind {
            BenchKind::Train => {
                let logits = model.forward_t(&x, true)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
                let grads = loss.backward()?;
                opt.step(&grads)?;
                // Wait for the device so the time covers the whole step.
                loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            }
            BenchKind::Infer => {
                let logits = model.forward_t(&x, false)?;
                let p = candle_nn::ops::softmax(&logits, D::Minus1)?;
                p.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
            }
        }
        Ok(())
    };
    for _ in 0..a.warmup {
        step()?;
    }
    let mut times = Vec::with_capacity(a.iters.max(1));
    for _ in 0..a.iters.max(1) {
        let t0 = Instant::now();
        step()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median_s = times[times.len() / 2];
    Ok(BenchResult {
        median_s,
        img_per_s: a.batch as f64 / median_s,
    })
}

/// Runs `bench` and prints the result lines.
pub fn run(a: &BenchArgs, choice: DeviceChoice) -> anyhow::Result<ExitCode> {
    let device = choice.open()?;
    let kind = match a.kind {
        BenchKind::Train => "train",
        BenchKind::Infer => "infer",
    };
    eprintln!(
        "bench {kind}: {} batch {} at {} px on {}, {} warm-up + {} timed iterations",
        a.backbone,
        a.batch,
        a.size,
        describe(&device),
        a.warmup,
        a.iters
    );
    let r = measure(a, &device)?;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "RESULT impl=candle kind={kind} backbone={} batch={} size={} device={} threads={threads} median_s={:.4} img_per_s={:.3}",
        a.backbone, a.batch, a.size, choice, r.median_s, r.img_per_s
    );
    if let Some(py) = &a.torch_python {
        let out = std::process::Command::new(py)
            .arg(&a.torch_script)
            .arg(kind)
            .args(["--arch", a.backbone.name()])
            .args(["--batch", &a.batch.to_string()])
            .args(["--size", &a.size.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(["--warmup", &a.warmup.to_string()])
            .args(["--iters", &a.iters.to_string()])
            .output()
            .with_context(|| format!("cannot run {} {}", py.display(), a.torch_script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .with_context(|| {
                format!(
                    "PyTorch reference printed no RESULT line: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let torch_ips: f64 = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("img_per_s="))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no img_per_s in {line:?}"))?;
        println!("{}", line.replacen("RESULT", "RESULT impl=pytorch", 1));
        println!(
            "RATIO kind={kind} backbone={} batch={} size={} candle_img_per_s={:.3} pytorch_img_per_s={torch_ips:.3} ratio={:.3}",
            a.backbone,
            a.batch,
            a.size,
            r.img_per_s,
            r.img_per_s / torch_ips
        );
    }
    Ok(ExitCode::SUCCESS)
}
