//! Records the version, the git commit (when git is available) and the compiled-in backends,
//! so `covid-resnet --version`, `info`, the About box and model files can report them.
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let commit = if dirty && commit != "unknown" {
        format!("{commit}-dirty")
    } else {
        commit
    };
    println!("cargo:rustc-env=COVID_RESNET_GIT_COMMIT={commit}");

    let mut backends = vec!["cpu"];
    for (feature, name) in [
        ("CARGO_FEATURE_CUDA", "cuda"),
        ("CARGO_FEATURE_CUDNN", "cudnn"),
        ("CARGO_FEATURE_METAL", "metal"),
    ] {
        if std::env::var_os(feature).is_some() {
            backends.push(name);
        }
    }
    println!(
        "cargo:rustc-env=COVID_RESNET_BACKENDS={}",
        backends.join(",")
    );
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=COVID_RESNET_PROFILE={profile}");

    // Re-run when the checked-out commit moves; a missing .git (tarball build) is fine.
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
