//! Class names as data sets write them, and the order classes take.
//!
//! A label is first made canonical: spelling variants of the paper's four classes become
//! `Normal`, `Bacterial`, `Viral` and `COVID-19` (the table below, case, `_` and spaces
//! ignored); any other label is kept as written, trimmed. The classes are the distinct
//! canonical labels, in the order the user fixes (`--classes`, or `classes` in the data set's
//! `dataset.toml`), else the paper's order when every label is one of its four, else
//! alphabetical (as fastai orders them).
use crate::{Error, Result};

/// The paper's four classes, in its order.
pub const PAPER_CLASSES: [&str; 4] = ["Normal", "Bacterial", "Viral", "COVID-19"];

/// The paper's four classes as owned names.
pub fn paper_classes() -> Vec<String> {
    PAPER_CLASSES.iter().map(|s| s.to_string()).collect()
}

/// Spellings of the paper's classes (compared lower-case, `_` and spaces read as `-`).
/// "negative" and "positive" are not here: in COVIDx CXR-3/4 they mean COVID-19 negative
/// and positive, which is not the same as Normal.
pub const ALIASES: &[(&str, &[&str])] = &[
    ("Normal", &["normal", "healthy", "no-finding"]),
    (
        "Bacterial",
        &[
            "bacteria",
            "bacterial",
            "pneumonia-bacterial",
            "bacterial-pneumonia",
            "pneumonia-bacteria",
        ],
    ),
    (
        "Viral",
        &[
            "viral",
            "virus",
            "pneumonia-viral",
            "viral-pneumonia",
            "pneumonia-virus",
        ],
    ),
    (
        "COVID-19",
        &[
            "covid-19",
            "covid19",
            "covid",
            "sars-cov-2",
            "covid-19-pneumonia",
            "pneumonia-covid-19",
        ],
    ),
];

fn key(s: &str) -> String {
    s.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .collect()
}

/// The canonical spelling of a label (see the module's documentation).
pub fn canonical(label: &str) -> String {
    let k = key(label);
    ALIASES
        .iter()
        .find(|(_, spellings)| spellings.contains(&k.as_str()))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| label.trim().to_string())
}

/// The index of a paper class for a label (None for labels of other schemes).
pub fn paper_index(label: &str) -> Option<usize> {
    let c = canonical(label);
    PAPER_CLASSES.iter().position(|p| *p == c)
}

/// The classes of a data set whose canonical labels are `found`, in the order described in
/// the module's documentation. An explicit order must name every label found; classes it
/// names without images are kept (the caller warns about them).
pub fn class_order(found: &[String], explicit: Option<&[String]>) -> Result<Vec<String>> {
    let mut distinct: Vec<String> = Vec::new();
    for f in found {
        if !distinct.contains(f) {
            distinct.push(f.clone());
        }
    }
    if let Some(order) = explicit {
        let order: Vec<String> = order.iter().map(|c| canonical(c)).collect();
        let missing: Vec<&String> = distinct.iter().filter(|d| !order.contains(d)).collect();
        if !missing.is_empty() {
            return Err(Error::invalid(
                "classes",
                format!(
                    "the data set has labels {missing:?} that the class list {order:?} does not \
                     name"
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(d) = order.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(Error::invalid(
                "classes",
                format!("{d:?} is named twice in {order:?}"),
            ));
        }
        return Ok(order);
    }
    if distinct.iter().all(|d| PAPER_CLASSES.contains(&d.as_str())) {
        return Ok(PAPER_CLASSES
            .iter()
            .filter(|p| distinct.iter().any(|d| d == *p))
            .map(|p| p.to_string())
            .collect());
    }
    distinct.sort_by_key(|c| c.to_lowercase());
    Ok(distinct)
}

/// The table of aliases as the README shows it.
pub fn alias_table() -> String {
    ALIASES
        .iter()
        .map(|(name, spellings)| format!("| {name} | {} |", spellings.join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn aliases_and_orders() {
        assert_eq!(canonical("pneumonia_viral"), "Viral");
        assert_eq!(canonical(" COVID19 "), "COVID-19");
        assert_eq!(canonical("positive"), "positive");
        assert_eq!(paper_index("Bacteria"), Some(1));
        assert_eq!(paper_index("negative"), None);
        // The paper's labels keep the paper's order (only those present).
        let f = s(&["COVID-19", "Normal", "Viral", "Bacterial"]);
        assert_eq!(class_order(&f, None).unwrap(), s(&PAPER_CLASSES));
        assert_eq!(
            class_order(&s(&["COVID-19", "Normal"]), None).unwrap(),
            s(&["Normal", "COVID-19"])
        );
        // Other schemes: alphabetical, or as the user says.
        let cxr2 = s(&["pneumonia", "Normal", "COVID-19"]);
        assert_eq!(
            class_order(&cxr2, None).unwrap(),
            s(&["COVID-19", "Normal", "pneumonia"])
        );
        let mine = s(&["normal", "pneumonia", "covid"]);
        assert_eq!(
            class_order(&cxr2, Some(&mine)).unwrap(),
            s(&["Normal", "pneumonia", "COVID-19"])
        );
        let e = class_order(&cxr2, Some(&s(&["normal", "covid"])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pneumonia"), "{e}");
        assert!(class_order(&cxr2, Some(&s(&["normal", "Normal", "covid", "pneumonia"]))).is_err());
    }
}
