//! How much the networks of an ensemble disagree on one image: the spread of their
//! probabilities for the class the ensemble predicts, and how many of them predict it.
use serde::{Deserialize, Serialize};

/// The members' disagreement on one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    /// Standard deviation over the members (population, divided by their number) of each
    /// member's probability for the ensemble's predicted class: 0 when they agree exactly.
    pub spread: f32,
    /// Members whose own most probable class is the ensemble's prediction.
    pub agree: usize,
    /// Members in the ensemble.
    pub members: usize,
}

impl Disagreement {
    /// The disagreement of members with probability rows `member_probs` (one per member)
    /// about the ensemble's prediction `predicted`.
    pub fn of(member_probs: &[&[f32]], predicted: usize) -> Self {
        let n = member_probs.len().max(1) as f64;
        let p: Vec<f64> = member_probs
            .iter()
            .map(|r| r.get(predicted).copied().unwrap_or(0.0) as f64)
            .collect();
        let mean = p.iter().sum::<f64>() / n;
        let var = p.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self {
            spread: var.sqrt() as f32,
            agree: member_probs
                .iter()
                .filter(|r| super::probs::argmax(r) == predicted)
                .count(),
            members: member_probs.len(),
        }
    }

    /// "3 of 5 agree, spread 0.21".
    pub fn describe(&self) -> String {
        format!(
            "{} of {} networks agree, spread {:.2}",
            self.agree, self.members, self.spread
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed numbers: members give the predicted class 0.9, 0.5 and 0.1; their mean is 0.5
    /// and the population variance (0.16 + 0 + 0.16) / 3, so the spread is sqrt(0.32/3).
    #[test]
    fn the_spread_and_the_agreement_come_from_the_members_rows() {
        let rows: [&[f32]; 3] = [&[0.9, 0.1], &[0.5, 0.5], &[0.1, 0.9]];
        let d = Disagreement::of(&rows, 0);
        assert!(
            (d.spread as f64 - (0.32f64 / 3.0).sqrt()).abs() < 1e-6,
            "{d:?}"
        );
        // argmax takes the first on ties: the second member counts for class 0.
        assert_eq!((d.agree, d.members), (2, 3));
        let same: [&[f32]; 2] = [&[0.2, 0.8], &[0.2, 0.8]];
        let d = Disagreement::of(&same, 1);
        assert_eq!((d.spread, d.agree), (0.0, 2));
    }
}
