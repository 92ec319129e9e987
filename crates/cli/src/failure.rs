//! How a client command ends: an exit code scripts branch on, and for failures one line that
//! says what went wrong and what to do next. Never a token in it.

/// Exit codes, as documented in `--help` and the README.
pub mod exit {
    /// Done; for waits: approved.
    pub const OK: u8 = 0;
    /// Any other error (bad input, unreachable server, a refused change…).
    pub const ERROR: u8 = 1;
    /// The request was rejected.
    pub const REJECTED: u8 = 2;
    /// The request expired, was cancelled or was revoked.
    pub const ENDED: u8 = 3;
    /// Not authenticated, or not allowed.
    pub const DENIED: u8 = 4;
    /// Interrupted (Ctrl-C) while waiting, as shells report SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

/// The exit codes, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done; for request --wait, wait and run: approved (run exits with the command's own code)
  1  any other error (bad input, server unreachable, a refused change)
  2  the request was rejected
  3  the request expired, was cancelled or was revoked
  4  not authenticated (log in again) or not allowed";

/// A command that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process exit code.
    pub exit: u8,
    /// One lowercase line: what went wrong; what to do next.
    pub message: String,
    /// The API's error code, when the server refused the call.
    pub code: Option<String>,
}

impl Failure {
    /// Exit code 1.
    pub fn error(message: impl Into<String>) -> Self {
        Self::with_exit(exit::ERROR, message)
    }

    /// Exit code 4: not authenticated or not allowed.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::with_exit(exit::DENIED, message)
    }

    /// Any exit code.
    pub fn with_exit(exit: u8, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            code: None,
        }
    }

    /// The same failure with another message.
    pub fn reworded(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// What client commands return: an exit code, or a failure to print.
pub type Outcome = Result<u8, Failure>;
