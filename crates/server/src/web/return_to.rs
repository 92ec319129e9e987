//! Where a browser may be sent after signing in: only a path on this site. Anything that a
//! browser could read as another origin (`//evil.example`, `/\evil.example`,
//! `https:evil.example`, `javascript:…`) is refused, so the login is never an open redirect
//! (C22).

/// The longest return path kept.
const MAX_LEN: usize = 2048;

/// Paths a sign-in must not return to: they would start another sign-in or sign-out.
const REFUSED_PREFIXES: [&str; 3] = ["/login", "/logout", "/auth/"];

/// `Some(path)` when `candidate` is a local path that is safe to redirect to after sign-in.
pub(super) fn local_path(candidate: &str) -> Option<&str> {
    let bytes = candidate.as_bytes();
    let safe = !candidate.is_empty()
        && candidate.len() <= MAX_LEN
        && bytes[0] == b'/'
        // `//host` and `/\host` are network paths to browsers.
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        // Browsers read a backslash as a slash; whitespace and controls are stripped or
        // mangled before parsing. None belongs in our paths.
        && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\');
    if !safe {
        return None;
    }
    // Percent-encoded slashes or backslashes right after the first slash would decode into a
    // network path in some stacks; refuse them too.
    let lowered = candidate.to_ascii_lowercase();
    if lowered.starts_with("/%2f") || lowered.starts_with("/%5c") {
        return None;
    }
    if REFUSED_PREFIXES.iter().any(|p| candidate.starts_with(p)) {
        return None;
    }
    Some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_kept() {
        for ok in [
            "/",
            "/requests/req_01J",
            "/requests/req_01J?confirm=approve&comment=ok%20go",
            "/new/deploy-prod",
            "/a/%2F/b",
        ] {
            assert_eq!(local_path(ok), Some(ok), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "%2F%2Fevil.example",
            "/%2F%2Fevil.example",
            "/%5cevil.example",
            "evil.example",
            "/ /evil.example",
            "/\t/evil.example",
            "/path\nLocation: x",
            "/login?issuer=x",
            "/logout",
            "/auth/callback?code=x",
            "/caf\u{e9}",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(MAX_LEN))), None);
    }
}
