//! What is wrong with a configuration: every problem names its file, line and key, and all of
//! them are reported together so that one run of `check-config` shows everything to fix.

use std::fmt;
use std::path::PathBuf;

/// The "file" of a problem caused by an environment override.
pub const ENVIRONMENT: &str = "environment";

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file it is in, as given (or as found in the gates directory); `environment` for an
    /// environment override.
    pub file: PathBuf,
    /// The 1-based line, when the problem is in a file.
    pub line: Option<usize>,
    /// The key, e.g. `gates[deploy-prod].rules[security].approvers`; for an environment
    /// override, the variable's name. Empty when the problem is not about one key (a syntax
    /// error, an unreadable file).
    pub key: String,
    /// What is wrong, in lowercase, naming the offending input (never a secret).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, in file and line order (environment overrides last).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Problem>);

impl ConfigErrors {
    /// The problems.
    pub fn problems(&self) -> &[Problem] {
        &self.0
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_key_message() {
        let p = Problem {
            file: "countersign.toml".into(),
            line: Some(27),
            key: "gates[deploy-prod].rules[security].approvers".into(),
            message: "unknown variable 'aprover'".into(),
        };
        assert_eq!(
            p.to_string(),
            "countersign.toml:27: gates[deploy-prod].rules[security].approvers: unknown variable 'aprover'"
        );
        let e = Problem {
            file: ENVIRONMENT.into(),
            line: None,
            key: "COUNTERSIGN_SERVER__LISTEN".into(),
            message: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "environment: COUNTERSIGN_SERVER__LISTEN: bad"
        );
        let all = ConfigErrors(vec![p, e]);
        assert_eq!(all.to_string().lines().count(), 2);
    }
}
