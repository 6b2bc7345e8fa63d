//! torchvision's ImageNet ResNet weights: where they are published, the SHA-256 each file's
//! name abbreviates (in full, from public manifests that pin them), and where this program
//! keeps them once fetched.
use crate::model::Backbone;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Where torchvision publishes its weights.
pub const DEFAULT_BASE_URL: &str = "https://download.pytorch.org/models";

/// One published weights file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZooEntry {
    /// The name users give (`resnet50`, `resnet50-v2`).
    pub name: &'static str,
    /// The body it fits.
    pub backbone: Backbone,
    /// torchvision's name for the weights (`IMAGENET1K_V1`).
    pub variant: &'static str,
    /// The file name under the base URL; its 8 hex digits start the SHA-256.
    pub file: &'static str,
    /// The file's SHA-256, hex.
    pub sha256: &'static str,
    /// Its exact length in bytes: a server that announces or sends more is refused.
    pub bytes: u64,
}

impl ZooEntry {
    /// The size in MB as torchvision's documentation gives it (MiB: 44.7 for ResNet-18).
    pub fn size_mb(&self) -> f64 {
        self.bytes as f64 / (1u64 << 20) as f64
    }
}

/// Every file `weights fetch` knows. torchvision publishes IMAGENET1K_V2 weights for
/// ResNet-50 (not for ResNet-18 or -34). The lengths are those of the published files
/// (torchvision's `_file_size` gives them in MiB: 44.661, 83.275, 97.781, 97.790).
pub const ZOO: &[ZooEntry] = &[
    ZooEntry {
        name: "resnet18",
        backbone: Backbone::Resnet18,
        variant: "IMAGENET1K_V1",
        file: "resnet18-f37072fd.pth",
        sha256: "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        bytes: 46830571,
    },
    ZooEntry {
        name: "resnet34",
        backbone: Backbone::Resnet34,
        variant: "IMAGENET1K_V1",
        file: "resnet34-b627a593.pth",
        sha256: "b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f",
        bytes: 87319819,
    },
    ZooEntry {
        name: "resnet50",
        backbone: Backbone::Resnet50,
        variant: "IMAGENET1K_V1",
        file: "resnet50-0676ba61.pth",
        sha256: "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
        bytes: 102530333,
    },
    ZooEntry {
        name: "resnet50-v2",
        backbone: Backbone::Resnet50,
        variant: "IMAGENET1K_V2",
        file: "resnet50-11ad3fa6.pth",
        sha256: "11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca",
        bytes: 102540417,
    },
];

/// The entry named `name` (case-insensitive; `resnet50-v1` is `resnet50`).
pub fn find(name: &str) -> Option<&'static ZooEntry> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.strip_suffix("-v1").unwrap_or(&n);
    ZOO.iter().find(|e| e.name == n)
}

/// The V1 weights of `backbone` (what the paper's fastai used).
pub fn for_backbone(backbone: Backbone) -> &'static ZooEntry {
    ZOO.iter()
        .find(|e| e.backbone == backbone && e.variant == "IMAGENET1K_V1")
        .unwrap_or(&ZOO[0])
}

/// The names, for messages.
pub fn names() -> String {
    ZOO.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

/// The program's folder for the user's data: `COVID_RESNET_HOME`, else the platform's data
/// folder (`$XDG_DATA_HOME` or `~/.local/share` on Linux, `~/Library/Application Support`
/// on macOS, `%APPDATA%` on Windows) + `covid-resnet`.
pub fn user_data_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COVID_RESNET_HOME") {
        return Some(PathBuf::from(p));
    }
    crate::files::user_folder(crate::files::UserFolder::Data)
}

/// Where fetched weights are kept.
pub fn weights_dir() -> Result<PathBuf> {
    user_data_dir().map(|d| d.join("weights")).ok_or_else(|| {
        Error::invalid(
            "weights folder",
            "no home folder is known: set COVID_RESNET_HOME to a folder for the program's data",
        )
    })
}

/// The fetched file of `entry` in `dir`, if it is there.
pub fn stored_in(dir: &Path, entry: &ZooEntry) -> Option<PathBuf> {
    let p = dir.join(entry.file);
    p.is_file().then_some(p)
}

/// `--weights` as given: an existing file, or the name of fetched weights.
pub fn resolve_weights(arg: &Path) -> Result<PathBuf> {
    if arg.exists() {
        return Ok(arg.to_path_buf());
    }
    let Some(entry) = arg.to_str().and_then(find) else {
        return Ok(arg.to_path_buf());
    };
    let dir = weights_dir()?;
    stored_in(&dir, entry).ok_or_else(|| {
        Error::invalid(
            "weights",
            format!(
                "{} is not fetched yet: run `covid-resnet weights fetch {}` (or give a file)",
                entry.name, entry.name
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hash_starts_with_its_file_names_tag() {
        for e in ZOO {
            let tag = e.file.trim_end_matches(".pth").rsplit('-').next().unwrap();
            assert_eq!(tag.len(), 8, "{}", e.file);
            assert!(e.sha256.starts_with(tag), "{}: {}", e.file, e.sha256);
            assert_eq!(e.sha256.len(), 64);
            assert!(e.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_eq!(find("ResNet50-V1"), find("resnet50"));
        assert_eq!(
            for_backbone(Backbone::Resnet50).file,
            "resnet50-0676ba61.pth"
        );
        assert!(find("resnet152").is_none());
    }

    #[test]
    fn every_length_agrees_with_torchvisions_file_size() {
        // torchvision's weights metadata: `_file_size` in MiB, to three decimals.
        for (file, mib) in [
            ("resnet18-f37072fd.pth", 44.661),
            ("resnet34-b627a593.pth", 83.275),
            ("resnet50-0676ba61.pth", 97.781),
            ("resnet50-11ad3fa6.pth", 97.790),
        ] {
            let e = ZOO.iter().find(|e| e.file == file).unwrap();
            let got = e.bytes as f64 / (1 << 20) as f64;
            assert!((got - mib).abs() < 0.0005, "{file}: {got} MiB");
        }
    }
}
