//! Microsoft's Adaptive Cards parser (npm `adaptivecards`) as a validator: the cards countersign
//! posts to Teams are checked by the library that renders them, not by our reading of the schema.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Validates an Adaptive Card (the `content` of a Teams attachment) with the `adaptivecards`
/// npm package (`adaptivecards/validate.cjs`): no parse or validation problem, no property the
/// parser does not know (`msteams` on the card excepted), version at most 1.5 (what Teams
/// renders), and `Action.OpenUrl` as the only action. `Err` lists what is wrong, or why the
/// validator could not run.
pub fn validate_adaptive_card(card: &Value) -> Result<(), String> {
    let dir = crate::node::adaptivecards_dir();
    crate::node::ensure_package(&dir, "adaptivecards").map_err(|e| format!("{e:#}"))?;
    let mut child = Command::new("node")
        .arg("validate.cjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run node validate.cjs: {e}"))?;
    let input = serde_json::to_vec(card).map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(|e| format!("cannot write the card to the validator: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("the validator did not finish: {e}"))?;
    let verdict: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "the validator printed no verdict ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    if verdict["ok"] == Value::Bool(true) && output.status.success() {
        Ok(())
    } else {
        Err(verdict["errors"].to_string())
    }
}
