//! Version, commit and backends recorded at build time by build.rs.
use serde::{Deserialize, Serialize};

/// Crate version from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit of the build ("unknown" when built outside git).
pub const GIT_COMMIT: &str = env!("COVID_RESNET_GIT_COMMIT");
/// Comma-separated list of compiled-in backends, e.g. "cpu,cuda".
pub const BACKENDS: &str = env!("COVID_RESNET_BACKENDS");
/// Cargo profile of the build ("release", "debug").
pub const PROFILE: &str = env!("COVID_RESNET_PROFILE");

/// One line for `--version`: version, commit, backends, profile.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("COVID_RESNET_GIT_COMMIT"),
    ", backends ",
    env!("COVID_RESNET_BACKENDS"),
    ", ",
    env!("COVID_RESNET_PROFILE"),
    " build)"
);

/// Build facts stored in model files and reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildInfo {
    /// Crate version.
    pub version: String,
    /// Git commit.
    pub commit: String,
    /// Compiled-in backends.
    pub backends: String,
}

impl BuildInfo {
    /// The facts of the running binary.
    pub fn current() -> Self {
        Self {
            version: VERSION.into(),
            commit: GIT_COMMIT.into(),
            backends: BACKENDS.into(),
        }
    }
}
