//! Request parameters as OAuth reads them: form-encoded, each at most once (RFC 6749 §3.1).

use std::collections::HashMap;

/// Parsed parameters. Empty values count as absent, as RFC 6749 §3.1 asks.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` input; a repeated parameter is an error that
    /// names it.
    pub(crate) fn parse(input: &[u8]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            if map.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(format!("parameter `{name}` is repeated"));
            }
        }
        Ok(Self(map))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_values_and_drops_empty_ones() {
        let params = Params::parse(b"a=x%20y&b=&c=%3Cz%3E").expect("valid input");
        assert_eq!(params.get("a"), Some("x y"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some("<z>"));
    }

    #[test]
    fn a_repeated_parameter_is_refused_by_name() {
        let error = Params::parse(b"state=1&state=2").expect_err("repeated");
        assert!(error.contains("state"));
    }
}
