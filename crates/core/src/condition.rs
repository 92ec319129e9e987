//! Conditions are CEL expressions, compiled once when the configuration loads and evaluated
//! against plain JSON-shaped variables. A condition that fails to evaluate, or yields anything
//! but a boolean, is false: access fails closed, and the error travels with the result so it
//! can be logged and audited.

use std::fmt;
use std::sync::{Arc, LazyLock};

use serde_json::Value;

/// A compiled CEL condition and its source text.
#[derive(Clone)]
pub struct Condition {
    source: Arc<str>,
    program: Arc<cel::Program>,
}

/// Why a condition could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConditionError {
    /// The expression is not valid CEL.
    #[error("not a valid CEL expression: {0}")]
    Syntax(String),
    /// The expression names a variable this condition does not receive.
    #[error("unknown variable '{name}' (this condition can use: {allowed})")]
    UnknownVariable {
        /// The name as written.
        name: String,
        /// The variables this kind of condition receives.
        allowed: String,
    },
}

/// The result of one evaluation: the boolean that counts, and the error that made it false,
/// if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// Whether the condition holds. False whenever `error` is set.
    pub value: bool,
    /// Why evaluation failed, when it did.
    pub error: Option<String>,
}

impl Condition {
    /// Compiles `source`, refusing references to variables outside `allowed`.
    pub fn compile(source: &str, allowed: &[&str]) -> Result<Self, ConditionError> {
        let program = cel::Program::compile(source)
            .map_err(|e| ConditionError::Syntax(one_line(&e.to_string())))?;
        let references = program.references();
        let mut unknown: Vec<&str> = references
            .variables()
            .into_iter()
            .filter(|v| !allowed.contains(v))
            .collect();
        unknown.sort_unstable();
        if let Some(name) = unknown.first() {
            // Comprehension variables (`x` in `list.exists(x, ...)`) are references too; only
            // report names that are not bound by a macro in the expression.
            if !is_bound_by_macro(source, name) {
                return Err(ConditionError::UnknownVariable {
                    name: (*name).to_string(),
                    allowed: allowed.join(", "),
                });
            }
        }
        Ok(Self {
            source: source.into(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with the given variables. Never panics, never errors: see [`Evaluated`].
    pub fn evaluate(&self, variables: &[(&str, &Value)]) -> Evaluated {
        // The standard environment is built once per process, not once per evaluation: it is
        // most of the cost of evaluating a small condition.
        static STDLIB: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));
        let mut context = cel::Context::with_env(Arc::clone(&STDLIB));
        for (name, value) in variables {
            match cel::to_value(value) {
                Ok(v) => context.add_variable_from_value(*name, v),
                Err(e) => {
                    return Evaluated {
                        value: false,
                        error: Some(format!("variable {name}: {e}")),
                    };
                }
            }
        }
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Evaluated {
                value: b,
                error: None,
            },
            Ok(other) => Evaluated {
                value: false,
                error: Some(format!(
                    "the condition returned {:?}, not a boolean",
                    other.type_of()
                )),
            },
            Err(e) => Evaluated {
                value: false,
                error: Some(one_line(&e.to_string())),
            },
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&&*self.source).finish()
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when `name` is introduced as the iteration variable of a macro such as
/// `exists(name, ...)`, `all(name, ...)`, `map(name, ...)`, `filter(name, ...)`.
fn is_bound_by_macro(source: &str, name: &str) -> bool {
    ["exists", "all", "exists_one", "map", "filter"]
        .iter()
        .any(|m| {
            source.match_indices(&format!("{m}(")).any(|(i, _)| {
                let rest = &source[i + m.len() + 1..];
                rest.trim_start()
                    .strip_prefix(name)
                    .is_some_and(|r| r.trim_start().starts_with(','))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VARS: &[&str] = &["approver", "request", "now"];

    #[test]
    fn evaluates_membership() {
        let c = Condition::compile(r#""sre" in approver.groups"#, VARS).unwrap();
        let yes = json!({"groups": ["sre", "dev"]});
        let no = json!({"groups": ["dev"]});
        assert!(c.evaluate(&[("approver", &yes)]).value);
        assert!(!c.evaluate(&[("approver", &no)]).value);
    }

    #[test]
    fn errors_fail_closed() {
        let c = Condition::compile("approver.claims.team == 'x'", VARS).unwrap();
        let r = c.evaluate(&[("approver", &json!({"claims": {}}))]);
        assert!(!r.value);
        assert!(r.error.is_some());
        let c = Condition::compile("1 + 1", VARS).unwrap();
        assert!(!c.evaluate(&[]).value);
    }

    #[test]
    fn rejects_unknown_variables_and_bad_syntax() {
        assert!(matches!(
            Condition::compile("aprover.groups == []", VARS),
            Err(ConditionError::UnknownVariable { .. })
        ));
        assert!(matches!(
            Condition::compile("approver.groups ==", VARS),
            Err(ConditionError::Syntax(_))
        ));
        assert!(Condition::compile("approver.groups.exists(g, g == 'sre')", VARS).is_ok());
    }
}
