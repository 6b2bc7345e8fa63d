//! Splits drawn from a data set's own images, by patient (a patient's images stay together),
//! seeded: the validation split from the training images, and the test split of a folder of
//! classes that has none.
use super::{Sample, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeSet;

/// The share of patients a folder of classes alone sets aside as its test split.
pub const TEST_PERCENT: f64 = 20.0;
/// The seed of that draw: fixed, so that every run, evaluation and review of the folder
/// sees the same test images whatever the training seed.
pub const TEST_SEED: u64 = 0;

/// Moves `percent` % of the patients of `from` (seeded by `seed` and `salt`, which keeps
/// the validation and test draws apart) into a new split; at least one patient moves and
/// at least one stays when there are two or more.
pub fn draw_patients(from: &mut Split, percent: f64, seed: u64, salt: u64) -> Split {
    let mut patients: Vec<String> = from.patients().into_iter().map(String::from).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ salt);
    patients.shuffle(&mut rng);
    let take = ((patients.len() as f64 * percent / 100.0).round() as usize).clamp(
        usize::from(patients.len() > 1),
        patients.len().saturating_sub(1),
    );
    let chosen: BTreeSet<String> = patients.into_iter().take(take).collect();
    let (drawn, keep): (Vec<Sample>, Vec<Sample>) = std::mem::take(&mut from.samples)
        .into_iter()
        .partition(|s| chosen.contains(&s.patient));
    from.samples = keep;
    Split {
        samples: drawn,
        ..Split::default()
    }
}

/// The validation draw's salt (its value unchanged since drawn splits began).
pub const VALID_SALT: u64 = 0x7661_6c69_6420_7370;
/// The test draw's salt.
pub const TEST_SALT: u64 = 0x7465_7374_2073_706c;
