//! Other people's verifiers: PyJWT (Python) and `jose` (Node.js), each given only an issuer's
//! discovery URL, the expected audience and a token. Tests use them to show that our grant
//! tokens verify anywhere, and that a tampered token verifies nowhere.

use std::path::PathBuf;
use std::process::Command;

/// What a verifier said: the claims it accepted, or why it refused.
pub type Verdict = Result<serde_json::Value, String>;

fn run(mut cmd: Command) -> Verdict {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the verifier: {e}"))?;
    if out.status.success() {
        serde_json::from_slice(&out.stdout).map_err(|e| format!("verifier printed no JSON: {e}"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Verifies `token` with PyJWT (`verifiers/verify_pyjwt.py`).
pub fn verify_with_pyjwt(issuer: &str, audience: &str, token: &str) -> Verdict {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("verifiers/verify_pyjwt.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([issuer, audience, token]);
    run(cmd)
}

/// Verifies `token` with node `jose` (`oidc-provider/verify_jose.mjs`, which uses that
/// folder's `node_modules`).
pub fn verify_with_jose(issuer: &str, audience: &str, token: &str) -> Verdict {
    let dir = crate::node::provider_dir();
    crate::node::ensure_installed(&dir).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg("verify_jose.mjs")
        .args([issuer, audience, token]);
    run(cmd)
}
