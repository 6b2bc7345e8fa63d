//! Which kernel runs bf16 products on this CPU: the fastest of those it can run, timed on
//! products of the shapes a ResNet's convolutions make, after each has been checked against
//! the exact products. What a CPU has does not decide: on an Intel Xeon with AMX, AVX-512
//! BF16's `vdpbf16ps` was slower than the float32 GEMM it is meant to beat.
//!
//! The program asks once ([`enable`] at start-up, [`ensure`] when a bf16 model is set up):
//! the choice is kept in the user's cache folder (`kernels.json`), one entry per CPU model,
//! thread count, set of candidate kernels and program version, and measured again when any
//! of those changes. `COVID_RESNET_BF16=avx512|amx|f32` names a kernel instead. Without
//! [`enable`] (the library in tests) nothing is measured: AVX-512 where the CPU has it, else
//! the float32 GEMM.
use super::exact::{data, reference, within_bound};
use super::{product, set_kernel, FillRow, Kernel, Mat, PackedA, Right};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// One measured kernel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timed {
    /// The kernel.
    pub kernel: Kernel,
    /// Seconds for the shapes (best of the repeats, summed), or None when it failed its
    /// check.
    pub seconds: Option<f64>,
    /// Why it was refused, if it was.
    pub refused: Option<String>,
}

/// The outcome for one CPU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Choice {
    /// The CPU's model name.
    pub cpu: String,
    /// Threads the products ran on.
    pub threads: usize,
    /// The program version that measured.
    pub program: String,
    /// The kernel chosen.
    pub kernel: Kernel,
    /// Seconds of the float32 GEMM on the same shapes.
    pub f32_seconds: f64,
    /// Each candidate.
    pub candidates: Vec<Timed>,
    /// Where the choice came from (not stored).
    #[serde(skip)]
    pub source: Source,
}

/// Where a [`Choice`] came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Source {
    /// Measured by this process.
    #[default]
    Measured,
    /// Read from this file.
    Cached(PathBuf),
    /// Named by `COVID_RESNET_BF16`.
    Named,
}

impl Choice {
    /// The speed of `k`'s products relative to the float32 GEMM's (> 1: faster), if measured.
    pub fn speedup(&self, k: Kernel) -> Option<f64> {
        let t = self.candidates.iter().find(|t| t.kernel == k)?.seconds?;
        Some(self.f32_seconds / t)
    }

    /// One line for `info`: the kernel, each candidate's speed against float32, the source.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for t in &self.candidates {
            parts.push(match (&t.refused, self.speedup(t.kernel)) {
                (Some(why), _) => format!("{} refused: {why}", t.kernel.name()),
                (None, Some(x)) => format!("{} {x:.2}x", t.kernel.name()),
                (None, None) => format!("{} not measured", t.kernel.name()),
            });
        }
        let from = match &self.source {
            Source::Measured => "measured now".to_string(),
            Source::Cached(p) => format!("measured earlier, kept in {}", crate::files::shown(p)),
            Source::Named => "named by COVID_RESNET_BF16".to_string(),
        };
        if parts.is_empty() {
            format!("{} ({from})", self.kernel.describe())
        } else {
            format!(
                "{} ({}; products' speed against float32's: {}; {from})",
                self.kernel.describe(),
                self.kernel.name(),
                parts.join(", ")
            )
        }
    }
}

/// What [`enable`] set up.
struct Setup {
    cache: Option<PathBuf>,
    named: Option<Kernel>,
}

static SETUP: OnceLock<Setup> = OnceLock::new();
static CHOICE: OnceLock<Choice> = OnceLock::new();

/// Lets [`ensure`] choose (by name, from `cache`, else by measuring and writing `cache`).
/// Called once by the program at start-up; later calls change nothing.
pub fn enable(cache: Option<PathBuf>, named: Option<Kernel>) {
    let _ = SETUP.set(Setup { cache, named });
}

/// The choice, if [`ensure`] made it.
pub fn made() -> Option<&'static Choice> {
    CHOICE.get()
}

/// `COVID_RESNET_BF16`: a kernel's name, or why it cannot be used.
pub fn named_by_env() -> Result<Option<Kernel>, String> {
    match std::env::var("COVID_RESNET_BF16").ok().as_deref() {
        None | Some("") => Ok(None),
        Some(v) => match Kernel::named(v) {
            Some(k) if k.available() => Ok(Some(k)),
            Some(k) => Err(format!(
                "COVID_RESNET_BF16={v:?}: this CPU cannot run {}",
                k.describe()
            )),
            None => Err(format!(
                "COVID_RESNET_BF16={v:?}: expected one of {}",
                Kernel::ALL.map(|k| k.name()).join(", ")
            )),
        },
    }
}

/// The choice for this process, made on the first call after [`enable`] (outside any
/// product: call it where a bf16 model is set up); None without [`enable`].
pub fn ensure() -> Option<&'static Choice> {
    let setup = SETUP.get()?;
    let c = CHOICE.get_or_init(|| match setup.named {
        Some(k) => Choice {
            cpu: cpu_model(),
            threads: rayon::current_num_threads(),
            program: crate::build_info::VERSION_LINE.to_string(),
            kernel: k,
            f32_seconds: f64::NAN,
            candidates: Vec::new(),
            source: Source::Named,
        },
        None => cached_or_measured(setup.cache.as_deref()),
    });
    set_kernel(c.kernel);
    Some(c)
}

/// How many measurements `kernels.json` keeps (other CPUs, thread counts and versions).
const KEPT_ENTRIES: usize = 8;

/// The entry for this CPU in `cache`, else a new measurement (written to `cache`, failures
/// to write ignored: the cache only saves time).
fn cached_or_measured(cache: Option<&Path>) -> Choice {
    let threads = rayon::current_num_threads();
    let (cpu, candidates) = (cpu_model(), available());
    let mut entries: Vec<Choice> = cache
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let same = |c: &Choice| {
        c.cpu == cpu
            && c.threads == threads
            && c.program == crate::build_info::VERSION_LINE
            && c.candidates
                .iter()
                .map(|t| t.kernel)
                .eq(candidates.iter().copied())
            && c.kernel.available()
    };
    if let (Some(p), Some(c)) = (cache, entries.iter().find(|c| same(c))) {
        return Choice {
            source: Source::Cached(p.to_path_buf()),
            ..c.clone()
        };
    }
    let c = measure(&candidates, threads);
    if let Some(p) = cache {
        entries.retain(|e| !same(e));
        entries.push(c.clone());
        // The newest entries only: each build of the program measures anew, so the file
        // would otherwise grow by one entry a version.
        let old = entries.len().saturating_sub(KEPT_ENTRIES);
        entries.drain(..old);
        if let Ok(json) = serde_json::to_vec_pretty(&entries) {
            let _ = p.parent().map(std::fs::create_dir_all);
            let _ = crate::files::write_atomic(p, &json);
        }
    }
    c
}

/// The kernels this CPU can run, in [`Kernel::ALL`]'s order.
pub fn available() -> Vec<Kernel> {
    Kernel::ALL.into_iter().filter(|k| k.available()).collect()
}

/// The products timed: (rows, inner, columns, how the right operand comes), shapes of a
/// ResNet-50's convolutions at 128-224 px (a 3x3 forward with its im2col rows made while
/// packed, a 1x1 forward, a deep 3x3 with several images side by side, a weight gradient's
/// transposed right operand).
const SHAPES: [(usize, usize, usize, Operand); 4] = [
    (64, 576, 1568, Operand::Rows),
    (256, 64, 3136, Operand::RowMajor),
    (512, 2304, 196, Operand::Rows),
    (576, 1568, 64, Operand::Transposed),
];

#[derive(Clone, Copy)]
enum Operand {
    Rows,
    RowMajor,
    Transposed,
}

/// Times every candidate and the float32 GEMM on [`SHAPES`] (best of [`ROUNDS`] rounds,
/// summed), after checking each candidate against the exact products; the fastest that passed
/// wins (the float32 GEMM on rounded operands always can run).
pub fn measure(candidates: &[Kernel], threads: usize) -> Choice {
    let checked: Vec<(Kernel, Result<(), String>)> =
        candidates.iter().map(|&k| (k, verify(k))).collect();
    let passed: Vec<Kernel> = checked
        .iter()
        .filter(|(_, v)| v.is_ok())
        .map(|(k, _)| *k)
        .collect();
    let mut runs: Vec<Run<'_>> = passed
        .iter()
        .map(|&k| Box::new(move |o: &Operands| run_bf16(k, o, threads)) as Box<_>)
        .collect();
    runs.push(Box::new(move |o: &Operands| run_f32(o, threads)));
    let seconds = time_shapes(&runs);
    let f32_seconds = seconds[passed.len()];
    let timed: Vec<Timed> = checked
        .into_iter()
        .map(|(k, v)| match v {
            Err(why) => Timed {
                kernel: k,
                seconds: None,
                refused: Some(why),
            },
            Ok(()) => Timed {
                kernel: k,
                seconds: passed.iter().position(|&p| p == k).map(|i| seconds[i]),
                refused: None,
            },
        })
        .collect();
    let kernel = timed
        .iter()
        .filter_map(|t| Some((t.kernel, t.seconds?)))
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .map_or(Kernel::F32, |x| x.0);
    Choice {
        cpu: cpu_model(),
        threads,
        program: crate::build_info::VERSION_LINE.to_string(),
        kernel,
        f32_seconds,
        candidates: timed,
        source: Source::Measured,
    }
}

/// `k`'s products against the exact ones on a product with every edge of the blockings.
pub fn verify(k: Kernel) -> Result<(), String> {
    let (m, kk, n) = (70, 451, 101);
    let (av, bv) = (data(m * kk, 21), data(kk * n, 22));
    let (a, b) = (Mat::rm(&av, m, kk), Mat::rm(&bv, kk, n));
    let (want, s) = reference(a, b);
    let mut y = vec![f32::NAN; m * n];
    product(&mut y, n, false, &PackedA::for_kernel(k, a), b, 2);
    within_bound(&y, &want, &s, kk, None).map_err(|e| format!("wrong product ({e})"))
}

/// Rounds of timing: in each, every run takes every shape once, the runs one after the other,
/// so that a slow spell of the machine (they come and go within seconds on a shared one) falls
/// on all of them instead of deciding against the one it met. A kernel measured in one block
/// of its own once lost to the float32 GEMM that way (0.0039 s against 0.0036, where it
/// usually takes 0.6x its time), and the choice is kept.
const ROUNDS: usize = 7;

/// One timed way to compute a shape's product.
type Run<'a> = Box<dyn Fn(&Operands) -> Vec<f32> + 'a>;

/// Seconds of each of `runs` over the shapes: for each shape the best of [`ROUNDS`], summed.
fn time_shapes(runs: &[Run<'_>]) -> Vec<f64> {
    let ops: Vec<Operands> = SHAPES
        .iter()
        .map(|&(m, k, n, how)| Operands::new(m, k, n, how))
        .collect();
    let mut best = vec![vec![f64::INFINITY; ops.len()]; runs.len()];
    for _ in 0..ROUNDS {
        for (run, best) in runs.iter().zip(&mut best) {
            for (o, b) in ops.iter().zip(best.iter_mut()) {
                let t = Instant::now();
                std::hint::black_box(run(o));
                *b = b.min(t.elapsed().as_secs_f64());
            }
        }
    }
    best.iter().map(|b| b.iter().sum()).collect()
}

/// A shape's operands.
struct Operands {
    a: Vec<f32>,
    b: Vec<f32>,
    m: usize,
    k: usize,
    n: usize,
    how: Operand,
}

impl Operands {
    fn new(m: usize, k: usize, n: usize, how: Operand) -> Self {
        Self {
            a: data(m * k, 1),
            b: data(k * n, 2),
            m,
            k,
            n,
            how,
        }
    }
}

fn run_bf16(kern: Kernel, o: &Operands, threads: usize) -> Vec<f32> {
    let (m, k, n) = (o.m, o.k, o.n);
    let pa = PackedA::for_kernel(kern, Mat::rm(&o.a, m, k));
    let mut y = vec![0.0f32; m * n];
    match o.how {
        Operand::RowMajor => product(&mut y, n, false, &pa, Mat::rm(&o.b, k, n), threads),
        Operand::Transposed => product(&mut y, n, false, &pa, Mat::tr(&o.b, n, k), threads),
        Operand::Rows => {
            let fill = |l: usize, j0: usize, out: &mut [f32]| {
                out.copy_from_slice(&o.b[l * n + j0..][..out.len()]);
            };
            let fill: FillRow<'_> = &fill;
            let b = Right::Rows {
                rows: k,
                cols: n,
                fill,
                fill16: None,
            };
            product(&mut y, n, false, &pa, b, threads)
        }
    }
    y
}

/// The float32 GEMM on the same shapes (a row-by-row operand written out first, as the
/// float32 convolution writes its im2col matrix).
fn run_f32(o: &Operands, threads: usize) -> Vec<f32> {
    let (m, k, n) = (o.m, o.k, o.n);
    let par = if threads > 1 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    let mut y = vec![0.0f32; m * n];
    let a = Mat::rm(&o.a, m, k);
    match o.how {
        Operand::RowMajor => super::super::gemm::matmul(&mut y, false, a, Mat::rm(&o.b, k, n), par),
        Operand::Transposed => {
            super::super::gemm::matmul(&mut y, false, a, Mat::tr(&o.b, n, k), par)
        }
        Operand::Rows => {
            let col = o.b.clone();
            super::super::gemm::matmul(&mut y, false, a, Mat::rm(&col, k, n), par)
        }
    }
    y
}

/// The CPU's model name: CPUID's brand string, else Linux's `/proc/cpuinfo`, else "unknown
/// CPU".
pub fn cpu_model() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        if __cpuid(0x8000_0000).eax >= 0x8000_0004 {
            let mut b = Vec::with_capacity(48);
            for leaf in 0x8000_0002u32..=0x8000_0004 {
                let r = __cpuid(leaf);
                for v in [r.eax, r.ebx, r.ecx, r.edx] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            let s = String::from_utf8_lossy(&b)
                .trim_matches(char::from(0))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if !s.is_empty() {
                return s;
            }
        }
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown CPU".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_this_cpu_runs_passes_its_check_and_the_fastest_is_chosen() {
        let c = measure(&available(), 2);
        assert!(c.candidates.iter().all(|t| t.refused.is_none()), "{c:?}");
        let best = c
            .candidates
            .iter()
            .min_by(|x, y| x.seconds.unwrap().total_cmp(&y.seconds.unwrap()))
            .unwrap();
        assert_eq!(c.kernel, best.kernel);
        assert!(c.f32_seconds > 0.0 && c.describe().contains(c.kernel.name()));
    }

    #[test]
    fn a_cached_choice_is_reused_for_the_same_cpu_and_measured_again_for_another() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kernels.json");
        let first = cached_or_measured(Some(&p));
        assert_eq!(first.source, Source::Measured);
        let again = cached_or_measured(Some(&p));
        assert_eq!(again.source, Source::Cached(p.clone()));
        assert_eq!(again.kernel, first.kernel);
        // Another CPU's entry in the file is kept and does not answer for this one.
        let mut entries: Vec<Choice> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        entries[0].cpu = "Another CPU".into();
        std::fs::write(&p, serde_json::to_vec(&entries).unwrap()).unwrap();
        let third = cached_or_measured(Some(&p));
        assert_eq!(third.source, Source::Measured);
        let entries: Vec<Choice> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(entries.len(), 2);
        // The file keeps the newest KEPT_ENTRIES, this measurement last.
        let mut entries: Vec<Choice> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let other = entries[0].clone();
        entries = (0..KEPT_ENTRIES + 3)
            .map(|i| Choice {
                cpu: format!("CPU {i}"),
                ..other.clone()
            })
            .collect();
        std::fs::write(&p, serde_json::to_vec(&entries).unwrap()).unwrap();
        let fourth = cached_or_measured(Some(&p));
        assert_eq!(fourth.source, Source::Measured);
        let entries: Vec<Choice> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(entries.len(), KEPT_ENTRIES);
        assert_eq!(entries[0].cpu, "CPU 4");
        assert_eq!(entries[KEPT_ENTRIES - 1].cpu, fourth.cpu);
        // An unreadable file is measured over, not an error.
        std::fs::write(&p, b"not json").unwrap();
        assert_eq!(cached_or_measured(Some(&p)).source, Source::Measured);
    }
}
