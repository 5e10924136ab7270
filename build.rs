//! Stamps the commit the binary was built from into `RISK_ENGINE_BUILD`, which every signed
//! decision carries as `provenance.build` (`<version>+<commit>`), so an auditor knows which
//! source re-derives it. `BUILD_COMMIT` overrides git (container builds have no .git).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BUILD_COMMIT");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        });
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let build = match commit {
        Some(c) => format!("{version}+{c}"),
        None => version,
    };
    println!("cargo:rustc-env=RISK_ENGINE_BUILD={build}");
}
