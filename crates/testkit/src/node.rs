//! Node.js checks and the one-time `npm ci` of the testkit's Node.js folders (the OpenID
//! provider's, the Adaptive Cards validator's).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context as _, bail};

/// The folder holding `server.js`, `package.json` and `package-lock.json`.
pub(crate) fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// The folder holding the Adaptive Cards validator (`validate.cjs` and its lockfile).
pub(crate) fn adaptivecards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("adaptivecards")
}

/// Checks that `node` and `npm` run, and installs the provider's packages (`npm ci`) unless they
/// are already there. Parallel tests in one process wait on a mutex; parallel test processes wait
/// on `flock(1)` over a lock file, and whoever comes second finds the packages installed.
pub(crate) fn ensure_installed(dir: &Path) -> anyhow::Result<()> {
    ensure_package(dir, "oidc-provider")
}

/// [`ensure_installed`] for any folder with a lockfile: `package` is the dependency whose
/// presence in `node_modules` says the install is done.
pub(crate) fn ensure_package(dir: &Path, package: &str) -> anyhow::Result<()> {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(PoisonError::into_inner);

    tool_version("node")?;
    let marker = dir.join("node_modules").join(package).join("package.json");
    if marker.exists() {
        return Ok(());
    }
    tool_version("npm")?;

    let install =
        format!("test -f node_modules/{package}/package.json || npm ci --no-audit --no-fund");
    let lock = std::env::temp_dir().join("countersign-testkit-npm.lock");
    let output = if tool_version("flock").is_ok() {
        Command::new("flock")
            .arg(&lock)
            .args(["sh", "-c", &install])
            .current_dir(dir)
            .output()
    } else {
        Command::new("sh")
            .args(["-c", &install])
            .current_dir(dir)
            .output()
    }
    .with_context(|| format!("cannot run npm ci in {}", dir.display()))?;
    if !output.status.success() {
        bail!(
            "npm ci in {} failed ({}):\n{}",
            dir.display(),
            output.status,
            both_streams(&output)
        );
    }
    if !marker.exists() {
        bail!(
            "npm ci in {} did not install {package}:\n{}",
            dir.display(),
            both_streams(&output)
        );
    }
    Ok(())
}

/// Runs `<tool> --version`, failing with a message that says what to install.
fn tool_version(tool: &str) -> anyhow::Result<String> {
    match Command::new(tool).arg("--version").output() {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        Ok(output) => bail!(
            "`{tool} --version` failed ({}): {}",
            output.status,
            both_streams(&output)
        ),
        Err(err) if err.kind() == ErrorKind::NotFound => bail!(
            "{tool} is not installed or not on PATH: the test OpenID provider needs Node.js 20 \
             or newer with npm (e.g. `apt-get install -y nodejs npm`)"
        ),
        Err(err) => Err(err).with_context(|| format!("cannot run {tool}")),
    }
}

pub(crate) fn both_streams(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
