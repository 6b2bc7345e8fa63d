//! fastai v1's one-cycle policy (`callbacks/one_cycle.py`): cosine warm-up of the learning
//! rate from lr_max/div_factor to lr_max over pct_start of the iterations, cosine decay to
//! lr_max/final_div, and beta1 going 0.95 -> 0.85 -> 0.95 the other way round.
use serde::{Deserialize, Serialize};

/// `end + (start - end) / 2 * (1 + cos(pi * p))`.
pub fn cos_anneal(start: f64, end: f64, p: f64) -> f64 {
    end + (start - end) / 2.0 * (1.0 + (std::f64::consts::PI * p).cos())
}

/// One-cycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OneCycleConfig {
    /// Fraction of iterations spent warming up.
    pub pct_start: f64,
    /// Start lr = lr_max / div_factor.
    pub div_factor: f64,
    /// End lr = lr_max / final_div (fastai v1: div_factor * 1e4; v2 uses 1e5).
    pub final_div: f64,
    /// beta1 at the start and end.
    pub mom_max: f64,
    /// beta1 at the peak.
    pub mom_min: f64,
}

impl Default for OneCycleConfig {
    fn default() -> Self {
        Self {
            pct_start: 0.3,
            div_factor: 25.0,
            final_div: 25.0 * 1e4,
            mom_max: 0.95,
            mom_min: 0.85,
        }
    }
}

/// The schedule of one `fit_one_cycle` call with `total` iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    cfg: OneCycleConfig,
    total: usize,
    warmup: usize,
}

impl OneCycle {
    /// A schedule over `total` iterations (fastai: a1 = int(total * pct_start)).
    pub fn new(cfg: OneCycleConfig, total: usize) -> Self {
        let warmup = (total as f64 * cfg.pct_start) as usize;
        Self { cfg, total, warmup }
    }

    /// Iterations in the cycle.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Where iteration `i` sits: (phase 1?, progress in the phase). Batch i of phase 1 uses
    /// p = i / a1 (so batch a1 is at the peak); phase 2 batch a1 + j uses p = j / a2.
    fn phase(&self, i: usize) -> (bool, f64) {
        let a1 = self.warmup;
        let a2 = (self.total - a1).max(1);
        if a1 > 0 && i <= a1 {
            (true, i as f64 / a1 as f64)
        } else {
            (false, (i - a1) as f64 / a2 as f64)
        }
    }

    /// Learning rate of iteration `i` for a group whose maximum is `lr_max`.
    pub fn lr(&self, lr_max: f64, i: usize) -> f64 {
        let c = &self.cfg;
        match self.phase(i) {
            (true, p) => cos_anneal(lr_max / c.div_factor, lr_max, p),
            (false, p) => cos_anneal(lr_max, lr_max / c.final_div, p),
        }
    }

    /// Adam beta1 of iteration `i`.
    pub fn beta1(&self, i: usize) -> f64 {
        let c = &self.cfg;
        match self.phase(i) {
            (true, p) => cos_anneal(c.mom_max, c.mom_min, p),
            (false, p) => cos_anneal(c.mom_min, c.mom_max, p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_peak_end_and_midpoints_follow_the_formula() {
        let oc = OneCycle::new(OneCycleConfig::default(), 100);
        let lr = 1e-3;
        // Start: lr_max / 25, beta1 0.95.
        assert!((oc.lr(lr, 0) - 4e-5).abs() < 1e-15);
        assert!((oc.beta1(0) - 0.95).abs() < 1e-15);
        // Peak at int(100 * 0.3) = 30: lr_max, beta1 0.85.
        assert!((oc.lr(lr, 30) - lr).abs() < 1e-15);
        assert!((oc.beta1(30) - 0.85).abs() < 1e-15);
        // Warm-up midpoint (p = 0.5): the mean of start and peak.
        assert!((oc.lr(lr, 15) - (4e-5 + 1e-3) / 2.0).abs() < 1e-15);
        assert!((oc.beta1(15) - 0.90).abs() < 1e-12);
        // Decay midpoint: iteration 30 + 35 = 65, p = 0.5.
        assert!((oc.lr(lr, 65) - (1e-3 + 1e-3 / 2.5e5) / 2.0).abs() < 1e-15);
        // Last iteration 99: p = 69/70, close to lr_max / 2.5e5 but not yet there.
        let p: f64 = 69.0 / 70.0;
        let want = 4e-9 + (1e-3 - 4e-9) / 2.0 * (1.0 + (std::f64::consts::PI * p).cos());
        assert!((oc.lr(lr, 99) - want).abs() < 1e-18);
        assert!(oc.lr(lr, 99) < 1e-6);
        // Monotone up then down.
        assert!((1..=30).all(|i| oc.lr(lr, i) > oc.lr(lr, i - 1)));
        assert!((31..100).all(|i| oc.lr(lr, i) < oc.lr(lr, i - 1)));
    }

    #[test]
    fn tiny_cycles_do_not_divide_by_zero() {
        for total in 1..4 {
            let oc = OneCycle::new(OneCycleConfig::default(), total);
            for i in 0..total {
                assert!(oc.lr(1e-3, i).is_finite() && oc.beta1(i).is_finite());
            }
        }
    }
}
