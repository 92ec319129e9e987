//! Secrets: values that never print and compare in constant time, and the one constant-time
//! comparison every crate uses (from `subtle`).

use std::fmt;

use subtle::ConstantTimeEq as _;

/// Whether `a` and `b` are equal, in time that does not depend on where they differ (only on
/// their lengths, which for the random values compared here are no secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A secret string: a token, a key, a PKCE verifier. `Debug` shows `[redacted]`; there is no
/// `Display`, so it cannot end up in a log line or an error message by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a candidate.
    pub fn ct_eq(&self, candidate: &str) -> bool {
        ct_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_and_compares() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert!(s.ct_eq("hunter2"));
        assert!(!s.ct_eq("hunter"));
        assert!(!s.ct_eq("hunter22"));
        assert!(!s.ct_eq("hunter3"));
        assert_eq!(s, Secret::new("hunter2"));
        assert_ne!(s, Secret::new("Hunter2"));
    }

    #[test]
    fn compares_whole_values() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"secret2", b"secret"));
    }
}
