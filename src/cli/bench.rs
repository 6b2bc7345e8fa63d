//! `covid-resnet bench train|infer|load`: times full training steps (forward, cross-entropy,
//! backward, Adam step of the whole classifier) or inference, after a warm-up, and prints
//! one `RESULT key=value ...` line. With `--torch-python` it also runs PyTorch's reference
//! script on the same shapes and prints the ratio.
//! `bench decode` is in bench_decode.rs.
use crate::device::{describe, DeviceChoice};
use crate::model::layers::classifier::NUM_GROUPS;
use crate::model::{Backbone, Classifier};
use crate::train::optim::{Adam, AdamConfig};
use anyhow::Context;
use candle_core::{DType, Device, Tensor, D};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKind {
    /// Training steps.
    Train,
    /// Inference (eval-mode forward + softmax).
    Infer,
    /// The training data loader (decode, resize, augment, normalise, batch).
    Load,
    /// Decoding the `--file` images (DICOM or not) to the grey image the model reads.
    Decode,
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
    /// Dataset folder for `load` (default: $COVID_RESNET_DATA).
    #[arg(long, env = "COVID_RESNET_DATA")]
    pub data: Option<PathBuf>,
    /// Training images read by `load`.
    #[arg(long, default_value_t = 640)]
    pub images: usize,
    /// Loader worker threads for `load`.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Python with torch + torchvision: also run PyTorch's reference on the same shapes.
    #[arg(long)]
    pub torch_python: Option<PathBuf>,
    /// PyTorch's reference script.
    #[arg(long, default_value = "../shared/reference/torch_bench.py")]
    pub torch_script: PathBuf,
    /// CPU convolution kernel: gemm (ours) or stock (candle's); default: $COVID_RESNET_CONV,
    /// else gemm.
    #[arg(long, value_enum)]
    pub conv: Option<crate::model::ops::conv::ConvImpl>,
    /// Precision of the convolutions (PyTorch's reference runs the same: bf16 autocast).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::model::ops::precision::Precision,
    /// Also print the time per step of each CPU op kind (PROFILE lines).
    #[arg(long)]
    pub profile: bool,
    /// `train` as a head step: the body frozen (its BatchNorm layers still train, as
    /// fastai's `train_bn`), so its convolutions compute no weight gradients.
    #[arg(long)]
    pub frozen: bool,
    /// Image files timed by `decode` (repeat the flag for more).
    #[arg(long)]
    pub file: Vec<PathBuf>,
    /// Python with pydicom and the pylibjpeg plug-ins: `decode` also times pydicom on the
    /// same files.
    #[arg(long)]
    pub pydicom_python: Option<PathBuf>,
}

/// A benchmark's outcome.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Median seconds per iteration.
    pub median_s: f64,
    /// Images per second at the median.
    pub img_per_s: f64,
    /// Mean seconds per timed iteration in forward, backward and the optimizer step
    /// (training only; inference puts everything in forward).
    pub phases: [f64; 3],
    /// Seconds of each timed iteration, in the order they ran.
    pub steps: Vec<f64>,
}

/// The kernel and precision `a` asks for.
fn compute(a: &BenchArgs) -> crate::model::ops::pass::Compute {
    crate::model::ops::pass::Compute {
        kernel: a
            .conv
            .unwrap_or_else(crate::model::ops::pass::startup_kernel),
        precision: a.precision,
    }
}

/// The CPU's model as one `key=value` field (spaces as underscores).
pub fn cpu_field() -> String {
    crate::model::ops::conv::bf16_choice::cpu_model().replace(char::is_whitespace, "_")
}

/// Times `a.kind` on `device` with `a`'s kernel and precision.
pub fn measure(a: &BenchArgs, device: &Device) -> crate::Result<BenchResult> {
    let mut model = Classifier::new(a.backbone, 4, 0, device)?;
    model.set_compute(compute(a));
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
    if a.frozen {
        for g in 0..NUM_GROUPS - 1 {
            let h = crate::train::optim::GroupHyper {
                frozen: true,
                ..opt.groups()[g]
            };
            opt.set_group(g, h)?;
        }
    }
    let frozen = opt.frozen_ids();
    // Phase boundaries wait for the device only where that costs nothing (the CPU), so that
    // GPU timings are not slowed by extra synchronisation.
    let sync = |t: &Tensor| -> crate::Result<()> {
        if device.is_cpu() {
            t.flatten_all()?.narrow(0, 0, 1)?.to_vec1::<f32>()?;
        }
        Ok(())
    };
    // Inference keeps bf16 weights packed between images, as a loaded model (`Predictor`)
    // does; the first (warm-up) step packs them.
    let packed = crate::model::ops::conv::PackedWeights::new();
    let mut step = |phases: &mut [f64; 3]| -> crate::Result<()> {
        let t0 = Instant::now();
        match a.kind {
            BenchKind::Train => {
                let fwd = model.train_forward(&x, &frozen)?;
                let loss = candle_nn::loss::cross_entropy(fwd.logits(), &y)?;
                sync(&loss)?;
                let t1 = Instant::now();
                let grads = fwd.backward(&loss)?;
                let t2 = Instant::now();
                opt.step(&grads)?;
                // Wait for the device so the time covers the whole step.
                loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
                let t3 = Instant::now();
                phases[0] += (t1 - t0).as_secs_f64();
                phases[1] += (t2 - t1).as_secs_f64();
                phases[2] += (t3 - t2).as_secs_f64();
            }
            BenchKind::Infer | BenchKind::Load | BenchKind::Decode => {
                let logits = model.infer_packed(&x, &packed)?;
                let p = candle_nn::ops::softmax(&logits, D::Minus1)?;
                p.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
                phases[0] += t0.elapsed().as_secs_f64();
            }
        }
        Ok(())
    };
    for _ in 0..a.warmup {
        step(&mut [0.0; 3])?;
    }
    let iters = a.iters.max(1);
    crate::model::ops::prof::enable(a.profile);
    let mut times = Vec::with_capacity(iters);
    let mut phases = [0.0; 3];
    for _ in 0..iters {
        let t0 = Instant::now();
        step(&mut phases)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let steps = times.clone();
    times.sort_by(|a, b| a.total_cmp(b));
    let median_s = times[times.len() / 2];
    Ok(BenchResult {
        steps,
        median_s,
        img_per_s: a.batch as f64 / median_s,
        phases: phases.map(|p| p / iters as f64),
    })
}

/// Runs PyTorch's reference script with `args`; returns its RESULT line and img_per_s.
fn torch_reference(a: &BenchArgs, py: &Path, args: &[String]) -> anyhow::Result<(String, f64)> {
    let out = std::process::Command::new(py)
        .arg(&a.torch_script)
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "cannot run {} {}",
                crate::files::shown(py),
                crate::files::shown(&a.torch_script)
            )
        })?;
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
    let ips: f64 = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("img_per_s="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no img_per_s in {line:?}"))?;
    Ok((line.replacen("RESULT", "RESULT impl=pytorch", 1), ips))
}

/// Loader throughput: the first epoch (decoding) and a later one (cached), images per second.
pub fn measure_load(a: &BenchArgs) -> anyhow::Result<(f64, f64, usize)> {
    use crate::data::loader::{DataLoader, LoaderConfig};
    let root = a
        .data
        .as_ref()
        .context("bench load needs --data DIR (or COVID_RESNET_DATA)")?;
    let ds = crate::data::split::Dataset::open(root)?;
    ds.train.check_complete("train")?;
    let mut samples = ds.train.samples;
    let order = crate::data::sampler::epoch_order(
        &vec![0; samples.len()],
        crate::data::sampler::Sampling::Shuffle,
        0,
        0,
    );
    let n = a.images.min(samples.len());
    samples = order[..n].iter().map(|&i| samples[i].clone()).collect();
    let mut cfg = LoaderConfig::train(a.batch, a.size as u32, 0);
    cfg.threads = a.threads.max(1);
    let loader = DataLoader::new(samples, cfg)?;
    let mut secs = [0.0; 2];
    for (epoch, s) in secs.iter_mut().enumerate() {
        let t0 = Instant::now();
        let mut count = 0;
        for b in loader.epoch(epoch as u64) {
            count += b?.labels.len();
        }
        *s = t0.elapsed().as_secs_f64();
        anyhow::ensure!(count == n, "loader gave {count} of {n} images");
    }
    Ok((n as f64 / secs[0], n as f64 / secs[1], n))
}

fn run_load(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    eprintln!(
        "bench load: {} images at {} px, batch {}, {} loader thread(s), paper augmentation",
        a.images, a.size, a.batch, a.threads
    );
    let (first, cached, n) = measure_load(a)?;
    println!(
        "RESULT impl=candle kind=load size={} threads={} cpu={} images={n} first_epoch_img_per_s={first:.1} cached_epoch_img_per_s={cached:.1}",
        a.size,
        a.threads,
        cpu_field()
    );
    if let Some(py) = &a.torch_python {
        let data = a.data.as_ref().context("--data")?;
        let args: Vec<String> = vec![
            "load".into(),
            "--data".into(),
            crate::files::shown(data).to_string(),
            "--size".into(),
            a.size.to_string(),
            "--workers".into(),
            a.threads.to_string(),
            "--images".into(),
            n.to_string(),
            "--threads".into(),
            "1".into(),
        ];
        let (line, torch) = torch_reference(a, py, &args)?;
        println!("{line}");
        println!(
            "RATIO kind=load size={} threads={} first_epoch_ratio={:.2} cached_epoch_ratio={:.2}",
            a.size,
            a.threads,
            first / torch,
            cached / torch
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One PROFILE line per op kind (seconds per step, share of the step), then what the
/// instrumented ops leave of each phase (candle's own ops, gradient sums, allocation).
/// Lines named `in conv: ...` are parts of the convolution ops, summed over the threads
/// that ran them (thread-seconds, so they can add up to more than the op's wall time).
fn print_profile(r: &BenchResult, iters: usize) {
    let step: f64 = r.phases.iter().sum();
    let (mut fwd, mut bwd) = (0.0, 0.0);
    for (name, secs, calls) in crate::model::ops::prof::report() {
        let s = secs / iters as f64;
        if name.starts_with("in conv: ") {
            // Parts of the conv ops above, summed over their threads: not added again.
        } else if name.contains("gradient") || name.contains("backward") {
            bwd += s;
        } else {
            fwd += s;
        }
        println!(
            "PROFILE op={:?} s_per_step={s:.4} share={:.1}% calls_per_step={}",
            name,
            100.0 * s / step,
            calls as usize / iters
        );
    }
    let rest = [
        ("other forward", r.phases[0] - fwd),
        ("other backward", r.phases[1] - bwd),
        ("optimizer", r.phases[2]),
    ];
    for (name, s) in rest {
        println!(
            "PROFILE op={name:?} s_per_step={s:.4} share={:.1}%",
            100.0 * s / step
        );
    }
}

/// Runs `bench` and prints the result lines.
pub fn run(a: &BenchArgs, choice: DeviceChoice) -> anyhow::Result<ExitCode> {
    let kind = match a.kind {
        BenchKind::Train => "train",
        BenchKind::Infer => "infer",
        BenchKind::Load => return run_load(a),
        BenchKind::Decode => return super::bench_decode::run(a),
    };
    let device = choice.open()?;
    eprintln!(
        "bench {kind}: {} batch {} at {} px on {}, {} warm-up + {} timed iterations",
        a.backbone,
        a.batch,
        a.size,
        describe(&device),
        a.warmup,
        a.iters
    );
    let conv = compute(a).kernel;
    let r = measure(a, &device)?;
    let threads = candle_core::utils::get_num_threads();
    let products = if !device.is_cpu() || conv == crate::model::ops::conv::ConvImpl::Stock {
        "device".to_string()
    } else if a.precision == crate::model::ops::precision::Precision::Bf16 {
        format!("bf16-{}", crate::model::ops::conv::bf16_kernel().name())
    } else if crate::model::ops::conv::f32_direct() {
        "f32-gemm+direct".to_string()
    } else {
        "f32-gemm".to_string()
    };
    println!(
        "RESULT impl=candle kind={kind} backbone={} batch={} size={} device={} conv={conv} precision={} products={products} cpu={} threads={threads} frozen={} median_s={:.4} img_per_s={:.3}",
        a.backbone, a.batch, a.size, choice, a.precision, cpu_field(), a.frozen, r.median_s, r.img_per_s
    );
    let steps: Vec<String> = r.steps.iter().map(|s| format!("{s:.4}")).collect();
    println!("STEPS s={}", steps.join(","));
    if a.kind == BenchKind::Train {
        println!(
            "PHASES forward_s={:.4} backward_s={:.4} optimizer_s={:.4}",
            r.phases[0], r.phases[1], r.phases[2]
        );
    }
    if a.profile {
        print_profile(&r, a.iters.max(1));
    }
    if let Some(py) = &a.torch_python {
        let mut args: Vec<String> = [
            kind,
            "--arch",
            a.backbone.name(),
            "--batch",
            &a.batch.to_string(),
            "--size",
            &a.size.to_string(),
            "--threads",
            &threads.to_string(),
            "--warmup",
            &a.warmup.to_string(),
            "--iters",
            &a.iters.to_string(),
            "--precision",
            a.precision.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if device.is_cuda() {
            // The reference script runs on the CPU unless told otherwise.
            args.extend(["--device".to_string(), "cuda".to_string()]);
        }
        let (line, torch_ips) = torch_reference(a, py, &args)?;
        println!("{line}");
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
