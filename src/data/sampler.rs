//! The order of samples in an epoch: shuffled (seeded by seed and epoch), sequential, or
//! class-balanced (sampling with replacement, each class equally likely; COVID-Net
//! oversampled COVID-19 this way; off in the paper preset).
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How an epoch's order is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// In file order (evaluation).
    Sequential,
    /// A seeded permutation per epoch (training).
    #[default]
    Shuffle,
    /// As many draws as samples, each class equally likely.
    Balanced,
}

fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(super::augment::sample_seed(seed, epoch, u64::MAX))
}

/// Indices of an epoch over samples with these `labels`.
pub fn epoch_order(labels: &[usize], sampling: Sampling, seed: u64, epoch: u64) -> Vec<usize> {
    let n = labels.len();
    match sampling {
        Sampling::Sequential => (0..n).collect(),
        Sampling::Shuffle => {
            let mut v: Vec<usize> = (0..n).collect();
            v.shuffle(&mut epoch_rng(seed, epoch));
            v
        }
        Sampling::Balanced => {
            let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
            let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
            for (i, &l) in labels.iter().enumerate() {
                by_class[l].push(i);
            }
            let present: Vec<&Vec<usize>> = by_class.iter().filter(|c| !c.is_empty()).collect();
            if present.is_empty() {
                return Vec::new();
            }
            let mut rng = epoch_rng(seed, epoch);
            (0..n)
                .map(|_| {
                    let c = present[rng.random_range(0..present.len())];
                    c[rng.random_range(0..c.len())]
                })
                .collect()
        }
    }
}

/// At most `max` of `v`, a subset drawn from `seed`, in their original order (demos and
/// tests train on a part of a data set).
pub fn seeded_subset<T: Clone>(v: Vec<T>, max: Option<usize>, seed: u64) -> Vec<T> {
    match max {
        Some(m) if m < v.len() => {
            let labels = vec![0; v.len()];
            let order = epoch_order(&labels, Sampling::Shuffle, seed, u64::MAX - 1);
            let mut keep: Vec<usize> = order[..m].to_vec();
            keep.sort_unstable();
            keep.into_iter().map(|i| v[i].clone()).collect()
        }
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let labels = vec![0; 100];
        let a = epoch_order(&labels, Sampling::Shuffle, 5, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(&labels, Sampling::Shuffle, 5, 0));
        assert_ne!(a, epoch_order(&labels, Sampling::Shuffle, 5, 1));
        assert_ne!(a, epoch_order(&labels, Sampling::Shuffle, 6, 0));
    }

    #[test]
    fn balanced_draws_classes_evenly() {
        // 1000 of class 0, 10 of class 3.
        let mut labels = vec![0usize; 1000];
        labels.extend([3; 10]);
        let o = epoch_order(&labels, Sampling::Balanced, 1, 0);
        assert_eq!(o.len(), 1010);
        let rare = o.iter().filter(|&&i| labels[i] == 3).count();
        // Expected 505, sd ~16.
        assert!((420..590).contains(&rare), "{rare}");
    }
}
