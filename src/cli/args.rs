//! Library enums as command-line values: clap learns their names here, so the engine's
//! modules do not depend on clap.
use crate::data::split::SplitKind;
use crate::model::conv::ConvImpl;
use crate::train::config::SuggestionKind;
use crate::train::schedule::Trainable;
use clap::builder::PossibleValue;

/// Implements `clap::ValueEnum` for a library enum from (variant, name, help) triples.
macro_rules! value_enum {
    ($t:ty, $(($v:expr, $name:literal, $help:literal)),+ $(,)?) => {
        impl clap::ValueEnum for $t {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($v),+]
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                $(if *self == $v {
                    return Some(PossibleValue::new($name).help($help));
                })+
                None
            }
        }
    };
}

value_enum!(
    SuggestionKind,
    (
        SuggestionKind::Valley,
        "valley",
        "fastai v2's default: in the longest descent"
    ),
    (
        SuggestionKind::Steep,
        "steep",
        "fastai v1: the steepest descent"
    ),
    (
        SuggestionKind::Minimum,
        "minimum",
        "the minimum's rate divided by 10"
    ),
);

value_enum!(
    Trainable,
    (Trainable::All, "all", "the whole network"),
    (
        Trainable::Head,
        "head",
        "the head and BatchNorm layers; the body is frozen"
    ),
);

value_enum!(
    SplitKind,
    (SplitKind::Test, "test", "the test split"),
    (SplitKind::Train, "train", "the training split"),
);

value_enum!(
    ConvImpl,
    (
        ConvImpl::Gemm,
        "gemm",
        "im2col + GEMM custom ops (the default)"
    ),
    (ConvImpl::Stock, "stock", "candle's own conv2d"),
);

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_parse_back() {
        for k in SuggestionKind::ALL {
            assert_eq!(SuggestionKind::from_str(k.name(), false).unwrap(), k);
        }
        assert_eq!(Trainable::from_str("head", false).unwrap(), Trainable::Head);
        assert_eq!(
            SplitKind::from_str("train", false).unwrap(),
            SplitKind::Train
        );
        assert!(ConvImpl::from_str("fast", false).is_err());
    }
}
