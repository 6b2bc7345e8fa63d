//! The learning-rate range test (Smith 2017; fastai `lr_find`): an exponential sweep from
//! 1e-7 to 10 over 100 batches, the debiased exponentially smoothed loss, early stop on
//! divergence, and three suggestions (valley, steep, minimum). [`sweep`] is the loop; the
//! trainer gives it batches and a training step, and restores weights, BatchNorm statistics
//! and optimizer state after it.
use serde::{Deserialize, Serialize};

/// Range-test settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LrFinderConfig {
    /// First learning rate.
    pub start_lr: f64,
    /// Last learning rate.
    pub end_lr: f64,
    /// Iterations.
    pub num_iter: usize,
    /// Stop when the smoothed loss exceeds 4x its best, or is NaN.
    pub stop_div: bool,
}

impl Default for LrFinderConfig {
    fn default() -> Self {
        Self {
            start_lr: 1e-7,
            end_lr: 10.0,
            num_iter: 100,
            stop_div: true,
        }
    }
}

impl LrFinderConfig {
    /// `start * (end/start)^(t/num_iter)`.
    pub fn lr_at(&self, t: usize) -> f64 {
        self.start_lr * (self.end_lr / self.start_lr).powf(t as f64 / self.num_iter.max(1) as f64)
    }
}

/// fastai's `SmoothenValue`: `avg = beta*avg + (1-beta)*x`, reported as `avg / (1 - beta^n)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smoother {
    avg: f64,
    n: i32,
}

impl Smoother {
    /// Adds a value and returns the debiased mean.
    pub fn add(&mut self, x: f64) -> f64 {
        const BETA: f64 = 0.98;
        self.n += 1;
        self.avg = BETA * self.avg + (1.0 - BETA) * x;
        self.avg / (1.0 - BETA.powi(self.n))
    }
}

/// One point of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrPoint {
    /// Iteration.
    pub iter: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Raw batch loss.
    pub loss: f64,
    /// Debiased smoothed loss.
    pub smoothed: f64,
}

/// A suggested learning rate and the point it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Learning rate.
    pub lr: f64,
    /// Index into the points.
    pub index: usize,
}

/// The three suggestions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Suggestions {
    /// fastai v2 `valley` (the default).
    pub valley: Option<Suggestion>,
    /// fastai v1 `plot(suggestion=True)`: steepest descent.
    pub steep: Option<Suggestion>,
    /// Learning rate at the minimum loss, divided by 10.
    pub minimum: Option<Suggestion>,
}

/// Result of a range test.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LrFinderResult {
    /// Every point.
    pub points: Vec<LrPoint>,
    /// Suggestions.
    pub suggestions: Suggestions,
    /// True when it stopped on divergence before num_iter.
    pub stopped_early: bool,
}

/// Runs the range test: `next_batch()` gives the next training batch (None: no data),
/// `train(batch, lr)` trains on it at `lr` for every group and returns its loss,
/// `stopped()` is polled before each batch, and `on_point` sees every point as it comes.
pub fn sweep<B>(
    cfg: &LrFinderConfig,
    mut next_batch: impl FnMut() -> Option<crate::Result<B>>,
    mut train: impl FnMut(B, f64) -> crate::Result<f64>,
    stopped: impl Fn() -> bool,
    mut on_point: impl FnMut(LrPoint),
) -> crate::Result<LrFinderResult> {
    let mut points = Vec::with_capacity(cfg.num_iter);
    let mut smoother = Smoother::default();
    let mut best = f64::INFINITY;
    let mut stopped_early = false;
    for t in 0..cfg.num_iter {
        if stopped() {
            break;
        }
        let Some(b) = next_batch() else { break };
        let lr = cfg.lr_at(t);
        let loss = train(b?, lr)?;
        let smoothed = smoother.add(loss);
        let p = LrPoint {
            iter: t,
            lr,
            loss,
            smoothed,
        };
        points.push(p);
        on_point(p);
        if !smoothed.is_nan() && smoothed < best {
            best = smoothed;
        }
        if cfg.stop_div && (smoothed.is_nan() || smoothed > 4.0 * best) {
            stopped_early = true;
            break;
        }
    }
    Ok(LrFinderResult {
        suggestions: suggest(&points),
        points,
        stopped_early,
    })
}

/// The part of the curve worth looking at, as fastai's plot shows it: the points up to the
/// one where the smoothed loss diverged (over 4x its best so far, or NaN; the last a sweep
/// records), without the last five (fastai's `skip_end`), where the loss already shoots up.
pub fn view_range(points: &[LrPoint]) -> std::ops::Range<usize> {
    let mut best = f64::INFINITY;
    let mut end = points.len();
    for (i, p) in points.iter().enumerate() {
        if p.smoothed.is_nan() || p.smoothed > 4.0 * best {
            end = i + 1;
            break;
        }
        best = best.min(p.smoothed);
    }
    0..end.saturating_sub(5).max(end.min(2))
}

impl LrFinderResult {
    /// One line for logs: points, whether it stopped on divergence, the three suggestions.
    pub fn summary(&self) -> String {
        let s = &self.suggestions;
        let said = |v: Option<Suggestion>| {
            v.map(|s| crate::fmt::lr(s.lr))
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "LR finder: {} points{}; valley {}, steep {}, minimum/10 {}",
            self.points.len(),
            if self.stopped_early {
                " (stopped where the loss diverged)"
            } else {
                ""
            },
            said(s.valley),
            said(s.steep),
            said(s.minimum)
        )
    }
}

/// Suggestions over the smoothed losses, on the points from index 10 to len-5 (fastai).
pub fn suggest(points: &[LrPoint]) -> Suggestions {
    const SKIP_START: usize = 10;
    const SKIP_END: usize = 5;
    if points.len() < SKIP_START + SKIP_END + 2 {
        return Suggestions::default();
    }
    let pts = &points[SKIP_START..points.len() - SKIP_END];
    let losses: Vec<f64> = pts.iter().map(|p| p.smoothed).collect();
    let at = |i: usize| Suggestion {
        lr: pts[i].lr,
        index: i + SKIP_START,
    };
    // valley: fastai v2, longest strictly decreasing subsequence, 1/2 of the way in.
    let n = losses.len();
    let mut lds = vec![1usize; n];
    // Signed: when the whole curve falls, fastai's max_start is -1.
    let (mut max_start, mut max_end) = (0i64, 0usize);
    for i in 1..n {
        for j in 0..i {
            if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                lds[i] = lds[j] + 1;
            }
            if lds[max_end] < lds[i] {
                max_end = i;
                max_start = max_end as i64 - lds[max_end] as i64;
            }
        }
    }
    let sections = (max_end as i64 - max_start) as f64 / 3.0;
    let valley =
        (max_start + sections as i64 + (sections / 2.0) as i64).clamp(0, n as i64 - 1) as usize;
    // steep: where the smoothed loss falls fastest, as the least-squares slope over five
    // neighbouring points (log-spaced rates: index steps are equal steps of log lr), looked
    // for before the minimum. fastai takes the single steepest step, which on the noisy start
    // of a sweep from random weights lands on the first point (6.3e-7); the slope over a
    // window does not.
    let min_at = (0..n)
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .unwrap_or(0);
    let slope = |i: usize| -> f64 {
        let (lo, hi) = (i.saturating_sub(2), (i + 2).min(n - 1));
        let k = (hi - lo + 1) as f64;
        let mx = (lo + hi) as f64 / 2.0;
        let my = losses[lo..=hi].iter().sum::<f64>() / k;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (j, &y) in losses[lo..=hi].iter().enumerate() {
            let dx = (lo + j) as f64 - mx;
            sxy += dx * (y - my);
            sxx += dx * dx;
        }
        sxy / sxx.max(1e-12)
    };
    // Along a stretch that falls about as fast throughout, the middle of it (where a person
    // would pick), not its first point.
    let slopes: Vec<f64> = (0..=min_at).map(slope).collect();
    let steepest = slopes.iter().copied().fold(f64::INFINITY, f64::min);
    let cut = if steepest < 0.0 {
        0.95 * steepest
    } else {
        steepest
    };
    let near: Vec<usize> = (0..slopes.len()).filter(|&i| slopes[i] <= cut).collect();
    let steep = near.get(near.len() / 2).copied().unwrap_or(0);
    let mut minimum = at(min_at);
    minimum.lr /= 10.0;
    Suggestions {
        valley: Some(at(valley)),
        steep: Some(at(steep)),
        minimum: Some(minimum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(losses: &[f64]) -> Vec<LrPoint> {
        let cfg = LrFinderConfig::default();
        losses
            .iter()
            .enumerate()
            .map(|(i, &l)| LrPoint {
                iter: i,
                lr: cfg.lr_at(i),
                loss: l,
                smoothed: l,
            })
            .collect()
    }

    #[test]
    fn schedule_and_smoothing() {
        let c = LrFinderConfig::default();
        assert!((c.lr_at(0) - 1e-7).abs() < 1e-20);
        assert!((c.lr_at(100) - 10.0).abs() < 1e-9);
        assert!((c.lr_at(50) - 1e-3).abs() < 1e-12, "geometric midpoint");
        let mut s = Smoother::default();
        assert!(
            (s.add(2.0) - 2.0).abs() < 1e-12,
            "debiasing makes the first value exact"
        );
        // Second: avg = 0.98*0.04 + 0.02*4 = 0.1192; / (1 - 0.98^2) = 0.0396 -> 3.0101...
        assert!((s.add(4.0) - 0.1192 / 0.0396).abs() < 1e-12);
    }

    #[test]
    fn sweep_stops_on_divergence_and_the_view_ends_before_it() {
        let cfg = LrFinderConfig {
            num_iter: 50,
            ..Default::default()
        };
        // The loss falls from 2.0, then explodes from iteration 30 on.
        let mut seen = Vec::new();
        let r = sweep(
            &cfg,
            || Some(Ok(())),
            |_, lr| {
                let t = (lr / cfg.start_lr).ln() / (cfg.end_lr / cfg.start_lr).ln() * 50.0;
                Ok(if t < 30.0 { 2.0 - t / 40.0 } else { 1e3 })
            },
            || false,
            |p| seen.push(p.iter),
        )
        .unwrap();
        assert!(r.stopped_early);
        assert_eq!(seen.len(), r.points.len());
        let last = r.points.len() - 1;
        assert!(r.points[last].smoothed > 4.0 * r.points[29].smoothed);
        let v = view_range(&r.points);
        assert_eq!(
            v,
            0..last - 4,
            "the view stops five points before the spike's end"
        );
        assert!(r.points[v.clone()]
            .iter()
            .all(|p| p.smoothed <= r.points[0].smoothed + 1e-9));
        // A stop request ends the sweep at once; no data ends it too.
        let r = sweep(&cfg, || Some(Ok(())), |_, _| Ok(1.0), || true, |_| {}).unwrap();
        assert!(r.points.is_empty());
        let r = sweep::<()>(&cfg, || None, |_, _| Ok(1.0), || false, |_| {}).unwrap();
        assert!(r.points.is_empty() && !r.stopped_early);
    }

    #[test]
    fn steep_is_not_fooled_by_a_noisy_start() {
        // The start of a sweep from random weights: the smoothed loss wobbles over its first
        // points (one drop of 0.08 right after the skipped ten), stays flat, then falls
        // steadily by 0.03 a point from index 40 to its minimum at 69, and rises.
        let mut l: Vec<f64> = vec![2.3; 10];
        l.extend([2.38, 2.30, 2.33, 2.31, 2.32]);
        l.extend(vec![2.31; 25]);
        l.extend((1..=30).map(|i| 2.31 - 0.03 * i as f64));
        l.extend((1..=30).map(|i| 1.41 + 0.05 * i as f64));
        let p = pts(&l);
        let st = suggest(&p).steep.unwrap();
        assert!((40..=69).contains(&st.index), "{st:?}");
        // numpy.gradient's argmin (fastai's pick) would be the wobble: index 10's one-sided
        // difference -0.08 against -0.03 in the fall.
        let trimmed = &l[10..l.len() - 5];
        let g0 = trimmed[1] - trimmed[0];
        assert!(g0 < -0.03 - 1e-9);
    }

    #[test]
    fn suggestions_on_a_known_curve() {
        // Flat 2.0 for 20 points, falling linearly to 1.0 over points 20..60, rising after.
        let mut l: Vec<f64> = vec![2.0; 20];
        l.extend((0..40).map(|i| 2.0 - i as f64 / 40.0));
        l.extend((0..40).map(|i| 1.0 + i as f64 * 0.1));
        let p = pts(&l);
        let s = suggest(&p);
        // minimum: the lowest loss is 1.0 at index 60; its lr / 10.
        let m = s.minimum.unwrap();
        assert_eq!(m.index, 60);
        assert!((m.lr - p[60].lr / 10.0).abs() < 1e-18);
        // steep: the slope over five points is -1/40 inside the fall (indices 22..=58) and
        // shallower at its ends: the pick is inside the fall.
        let st = s.steep.unwrap();
        assert!((22..=58).contains(&st.index), "{st:?}");
        // valley (fastai v2): on the trimmed list (indices 10..95) the longest strictly
        // decreasing subsequence is one 2.0 then 21..=60: 41 points ending at trimmed index
        // 50, so max_start = 50 - 41 = 9, sections = 41/3, pick 9 + 13 + 6 = 28 -> index 38.
        assert_eq!(s.valley.unwrap().index, 38);
        assert!(suggest(&p[..10]).valley.is_none(), "too few points");
        // Regression: a curve that falls all the way made fastai's max_start -1 (an
        // underflow here); valley must still be a point of the curve.
        let falling: Vec<f64> = (0..40).map(|i| 3.0 - i as f64 * 0.05).collect();
        let v = suggest(&pts(&falling)).valley.unwrap();
        // Trimmed 10..35: 25 points, lds 25 at 24, max_start -1, sections 25/3: -1 + 8 + 4.
        assert_eq!(v.index, 10 + 11);
    }
}
