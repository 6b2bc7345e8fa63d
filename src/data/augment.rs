//! Training augmentation as the paper used it (fastai v1 `get_transforms` semantics):
//! a flip (vertical in the paper preset), rotation uniform in +-15 degrees with probability
//! 0.75 and reflective borders, brightness (logit space, change in [0.4, 0.6]) and contrast
//! (log-uniform in [0.8, 1.25], logit space), each with probability 0.75.
//!
//! Every draw comes from (seed, epoch, sample index), never from thread timing.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which flips are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flip {
    /// No flips.
    None,
    /// Left-right with probability `p_flip`.
    Horizontal,
    /// Up-down with probability `p_flip` (the paper).
    #[default]
    Vertical,
    /// One of the 8 symmetries of the square, uniformly (fastai's `flip_vert=True`).
    Dihedral,
}

impl Flip {
    /// Every kind, in the order menus list them.
    pub const ALL: [Self; 4] = [Self::Vertical, Self::Horizontal, Self::Dihedral, Self::None];

    /// The kind in a user's words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Vertical => "vertical flips, as in the paper",
            Self::Horizontal => "horizontal flips only, as most chest X-ray work",
            Self::Dihedral => "all 8 flips and quarter turns",
            Self::None => "no flips",
        }
    }
}

/// Augmentation settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Master switch.
    pub enabled: bool,
    /// Flip kind.
    pub flip: Flip,
    /// Probability of a flip (Horizontal/Vertical).
    pub p_flip: f64,
    /// Largest rotation in degrees.
    pub max_rotate_deg: f64,
    /// Probability of the affine (rotation) transform.
    pub p_affine: f64,
    /// fastai `max_lighting`: brightness change 0.5 +- max/2, contrast in [1-max, 1/(1-max)].
    pub max_lighting: f64,
    /// Probability of each lighting transform.
    pub p_lighting: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::paper()
    }
}

impl AugmentConfig {
    /// The paper: vertical flips, rotation up to 15 degrees, lighting; fastai probabilities.
    pub fn paper() -> Self {
        Self {
            enabled: true,
            flip: Flip::Vertical,
            p_flip: 0.5,
            max_rotate_deg: 15.0,
            p_affine: 0.75,
            max_lighting: 0.2,
            p_lighting: 0.75,
        }
    }

    /// No augmentation (evaluation).
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::paper()
        }
    }
}

/// The random choices for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Draw {
    /// Mirror left-right.
    pub flip_h: bool,
    /// Mirror up-down.
    pub flip_v: bool,
    /// Swap the axes (dihedral only).
    pub transpose: bool,
    /// Rotation in degrees (0 = none).
    pub angle_deg: f64,
    /// Brightness change in (0, 1) (0.5 = unchanged), if drawn.
    pub brightness: Option<f64>,
    /// Contrast scale, if drawn.
    pub contrast: Option<f64>,
}

/// Mixes (seed, epoch, index) into one RNG seed.
pub fn sample_seed(seed: u64, epoch: u64, index: u64) -> u64 {
    let mut z = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [epoch, index] {
        z = (z ^ v).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 31;
        z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 29;
    }
    z
}

/// Draws the transforms of sample `index` in `epoch`.
pub fn draw(cfg: &AugmentConfig, seed: u64, epoch: u64, index: u64) -> Draw {
    if !cfg.enabled {
        return Draw::default();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(seed, epoch, index));
    let mut d = Draw::default();
    match cfg.flip {
        Flip::None => {}
        Flip::Horizontal => d.flip_h = rng.random_bool(cfg.p_flip.clamp(0.0, 1.0)),
        Flip::Vertical => d.flip_v = rng.random_bool(cfg.p_flip.clamp(0.0, 1.0)),
        Flip::Dihedral => {
            let k: u8 = rng.random_range(0..8);
            d.flip_h = k & 1 != 0;
            d.flip_v = k & 2 != 0;
            d.transpose = k & 4 != 0;
        }
    }
    if cfg.max_rotate_deg > 0.0 && rng.random_bool(cfg.p_affine.clamp(0.0, 1.0)) {
        d.angle_deg = rng.random_range(-cfg.max_rotate_deg..=cfg.max_rotate_deg);
    }
    let ml = cfg.max_lighting.clamp(0.0, 0.99);
    if ml > 0.0 {
        if rng.random_bool(cfg.p_lighting.clamp(0.0, 1.0)) {
            d.brightness = Some(rng.random_range(0.5 * (1.0 - ml)..=0.5 * (1.0 + ml)));
        }
        if rng.random_bool(cfg.p_lighting.clamp(0.0, 1.0)) {
            let (lo, hi) = ((1.0 - ml).ln(), -(1.0 - ml).ln());
            d.contrast = Some(rng.random_range(lo..=hi).exp());
        }
    }
    d
}

/// Reflects a coordinate into [0, n-1] about the pixel edges (-0.5 and n-0.5), as
/// PyTorch's `grid_sample(padding_mode="reflection")`.
fn reflect(x: f64, n: usize) -> f64 {
    let span = n as f64;
    let mut t = (x + 0.5).rem_euclid(2.0 * span);
    if t > span {
        t = 2.0 * span - t;
    }
    (t - 0.5).clamp(0.0, span - 1.0)
}

/// Applies the geometric part of `d` to a square `s`x`s` image (values in [0, 1]),
/// writing into `out`. Flips and transposes are exact index maps; rotation is bilinear.
pub fn apply_geometry(img: &[f32], s: usize, d: &Draw, out: &mut [f32]) {
    let src_of = |x: f64, y: f64| -> (f64, f64) {
        // Output -> source: undo the flips, then the rotation about the centre.
        let (mut x, mut y) = (x, y);
        if d.transpose {
            std::mem::swap(&mut x, &mut y);
        }
        if d.flip_h {
            x = (s - 1) as f64 - x;
        }
        if d.flip_v {
            y = (s - 1) as f64 - y;
        }
        (x, y)
    };
    if d.angle_deg == 0.0 {
        for oy in 0..s {
            for ox in 0..s {
                let (x, y) = src_of(ox as f64, oy as f64);
                out[oy * s + ox] = img[y as usize * s + x as usize];
            }
        }
        return;
    }
    let (sin, cos) = d.angle_deg.to_radians().sin_cos();
    let c = (s - 1) as f64 / 2.0;
    for oy in 0..s {
        for ox in 0..s {
            let (x, y) = src_of(ox as f64, oy as f64);
            let (dx, dy) = (x - c, y - c);
            let sx = reflect(cos * dx + sin * dy + c, s);
            let sy = reflect(-sin * dx + cos * dy + c, s);
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(s - 1), (y0 + 1).min(s - 1));
            let (fx, fy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let top = img[y0 * s + x0] * (1.0 - fx) + img[y0 * s + x1] * fx;
            let bottom = img[y1 * s + x0] * (1.0 - fx) + img[y1 * s + x1] * fx;
            out[oy * s + ox] = top * (1.0 - fy) + bottom * fy;
        }
    }
}

/// Applies brightness and contrast in logit space (fastai's `_brightness`, `_contrast`).
pub fn apply_lighting(px: &mut [f32], d: &Draw) {
    if d.brightness.is_none() && d.contrast.is_none() {
        return;
    }
    let shift = d
        .brightness
        .map(|b| (b / (1.0 - b)).ln() as f32)
        .unwrap_or(0.0);
    let scale = d.contrast.unwrap_or(1.0) as f32;
    const EPS: f32 = 1e-7;
    for v in px.iter_mut() {
        let p = v.clamp(EPS, 1.0 - EPS);
        let l = ((p / (1.0 - p)).ln() + shift) * scale;
        *v = 1.0 / (1.0 + (-l).exp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(s: usize) -> Vec<f32> {
        (0..s * s)
            .map(|i| ((i * 7919) % 251) as f32 / 250.0)
            .collect()
    }

    #[test]
    fn double_flip_and_zero_rotation_are_identity() {
        let s = 9;
        let img = ramp(s);
        let mut a = vec![0.0; s * s];
        let mut b = vec![0.0; s * s];
        apply_geometry(&img, s, &Draw::default(), &mut a);
        assert_eq!(a, img, "zero rotation, no flip");
        for d in [
            Draw {
                flip_v: true,
                ..Default::default()
            },
            Draw {
                flip_h: true,
                ..Default::default()
            },
            Draw {
                transpose: true,
                ..Default::default()
            },
        ] {
            apply_geometry(&img, s, &d, &mut a);
            assert_ne!(a, img);
            apply_geometry(&a, s, &d, &mut b);
            assert_eq!(b, img, "{d:?} twice");
        }
        let d = Draw {
            flip_v: true,
            ..Default::default()
        };
        apply_geometry(&img, s, &d, &mut a);
        assert_eq!(
            &a[..s],
            &img[(s - 1) * s..],
            "vertical flip moves the last row first"
        );
    }

    #[test]
    fn rotation_by_ninety_degrees_matches_the_index_map() {
        let s = 8;
        let img = ramp(s);
        let mut out = vec![0.0; s * s];
        apply_geometry(
            &img,
            s,
            &Draw {
                angle_deg: 90.0,
                ..Default::default()
            },
            &mut out,
        );
        // 90 degrees about the centre is a permutation: out(x, y) = img(y, s-1-x) or its mirror.
        let perm_a: Vec<f32> = (0..s * s)
            .map(|i| img[(i % s) * s + (s - 1 - i / s)])
            .collect();
        let perm_b: Vec<f32> = (0..s * s)
            .map(|i| img[(s - 1 - i % s) * s + i / s])
            .collect();
        let close = |p: &[f32]| p.iter().zip(&out).all(|(a, b)| (a - b).abs() < 1e-4);
        assert!(close(&perm_a) || close(&perm_b));
    }

    #[test]
    fn reflection_stays_inside() {
        for x in [-3.0, -0.5, 0.0, 4.2, 7.0, 7.5, 9.9, 20.0] {
            let r = reflect(x, 8);
            assert!((0.0..=7.0).contains(&r), "{x} -> {r}");
        }
        assert!((reflect(-1.0, 8) - 0.0).abs() < 1e-12);
        assert!((reflect(8.0, 8) - 7.0).abs() < 1e-12);
        assert!((reflect(-2.0, 8) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn lighting_stays_within_its_bounds() {
        let cfg = AugmentConfig::paper();
        let mut seen_b = 0;
        for i in 0..2000 {
            let d = draw(&cfg, 1, 0, i);
            if let Some(b) = d.brightness {
                assert!((0.4..=0.6).contains(&b), "{b}");
                seen_b += 1;
            }
            if let Some(c) = d.contrast {
                assert!((0.8 - 1e-12..=1.25 + 1e-12).contains(&c), "{c}");
            }
            assert!(d.angle_deg.abs() <= 15.0);
            assert!(
                !d.flip_h && !d.transpose,
                "paper preset flips vertically only"
            );
        }
        // p = 0.75: 1500 expected of 2000; 5 sigma is about 97.
        assert!((1400..1600).contains(&seen_b), "{seen_b}");
        // Brightness 0.6 on a mid-gray pixel: sigmoid(logit(0.5) + logit(0.6)) = 0.6 exactly.
        let mut px = vec![0.5f32, 0.0, 1.0];
        apply_lighting(
            &mut px,
            &Draw {
                brightness: Some(0.6),
                ..Default::default()
            },
        );
        assert!((px[0] - 0.6).abs() < 1e-6);
        assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
        // Contrast keeps mid-gray and pushes others away from it.
        let mut px = vec![0.5f32, 0.3];
        apply_lighting(
            &mut px,
            &Draw {
                contrast: Some(1.25),
                ..Default::default()
            },
        );
        assert!((px[0] - 0.5).abs() < 1e-6 && px[1] < 0.3);
    }

    #[test]
    fn same_seed_same_draw_different_epoch_different_draw() {
        let cfg = AugmentConfig::paper();
        assert_eq!(draw(&cfg, 7, 3, 11), draw(&cfg, 7, 3, 11));
        let differ = (0..50)
            .filter(|&i| draw(&cfg, 7, 3, i) != draw(&cfg, 7, 4, i))
            .count();
        assert!(differ > 40, "{differ}");
        assert_eq!(draw(&AugmentConfig::off(), 7, 3, 11), Draw::default());
    }
}
