//! What `data findings` prints: the layout, images per split, what was left out, and per
//! label and split how the images mark it and what the uncertain-label policy makes of it.
use super::{FindingSet, MarkCounts, Policies, Uncertain};
use crate::data::split::SplitKind;
use std::fmt::Write;

/// The report of `set` under `policies`.
pub fn summary(set: &FindingSet, policies: &Policies) -> String {
    let mut s = String::new();
    let splits: Vec<Option<SplitKind>> = [
        None,
        Some(SplitKind::Train),
        Some(SplitKind::Valid),
        Some(SplitKind::Test),
    ]
    .into_iter()
    .filter(|k| set.images.iter().any(|im| im.split == *k))
    .collect();
    let name = |k: &Option<SplitKind>| k.map_or("no split", |k| k.name());
    let _ = writeln!(
        s,
        "{} data set in {}: {} labels, {} images ({})",
        set.layout,
        crate::files::shown(&set.root),
        set.labels.len(),
        set.images.len(),
        splits
            .iter()
            .map(|k| format!(
                "{} {}",
                name(k),
                set.images.iter().filter(|im| im.split == *k).count()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !set.missing.is_empty() {
        let _ = writeln!(
            s,
            "missing: {} listed files not found, e.g. {}",
            set.missing.len(),
            crate::files::shown(&set.missing[0])
        );
    }
    for n in &set.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let _ = writeln!(
        s,
        "blank (not mentioned) counts as negative; uncertain: {policies}"
    );
    let width = set.labels.iter().map(|l| l.len()).max().unwrap_or(5).max(5);
    let per_split: Vec<Vec<MarkCounts>> = splits.iter().map(|k| set.counts(*k)).collect();
    for (k, counts) in splits.iter().zip(&per_split) {
        let _ = writeln!(
            s,
            "\n{}: {:width$}  positive  negative  uncertain  blank   -> trains as",
            name(k),
            "label"
        );
        for (l, c) in set.labels.iter().zip(counts) {
            let becomes = match (c.uncertain, policies.of(l)) {
                (0, _) => String::new(),
                (u, Uncertain::Ignore) => format!("{u} uncertain masked out"),
                (u, Uncertain::Zeros) => format!("{u} uncertain as negative"),
                (u, Uncertain::Ones) => format!("{u} uncertain as positive"),
            };
            let _ = writeln!(
                s,
                "  {l:width$}  {:>8}  {:>8}  {:>9}  {:>5}   {becomes}",
                c.positive, c.negative, c.uncertain, c.blank
            );
        }
    }
    s
}
