//! Everything the binary writes for people goes through here: results on stdout, progress,
//! prompts and errors on stderr, colour only on a terminal and never with `NO_COLOR`.
//!
//! Writes ignore errors on purpose: `countersign ls | head -1` closes the pipe early, and that
//! is not a failure of the command.

use std::io::{IsTerminal as _, Write as _};

/// How read commands print their result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// The server's JSON, pretty-printed, for scripts.
    Json,
}

/// Whether standard input is a terminal (a person could answer a question).
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Whether standard error is a terminal (a spinner can be drawn there).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

fn colour_allowed() -> bool {
    // https://no-color.org: present and not empty disables colour.
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Colours for text written to stdout.
pub fn stdout_paint() -> Paint {
    Paint(colour_allowed() && std::io::stdout().is_terminal())
}

/// Colours for text written to stderr.
pub fn stderr_paint() -> Paint {
    Paint(colour_allowed() && stderr_is_tty())
}

/// ANSI colours, or plain text when off.
#[derive(Clone, Copy, Debug)]
pub struct Paint(bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_string()
        }
    }

    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    /// Dimmed.
    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }

    /// Red.
    pub fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }

    /// Green.
    pub fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }

    /// Yellow.
    pub fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }

    /// A request state in its colour: approved green, rejected red, pending yellow, the other
    /// ends dimmed.
    pub fn state(self, state: &str) -> String {
        match state {
            "approved" => self.green(state),
            "rejected" => self.red(state),
            "pending" => self.yellow(state),
            _ => self.dim(state),
        }
    }
}

/// Prints a line of the command's result on stdout.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

/// Prints a JSON value on stdout, pretty.
pub fn json(value: &impl serde::Serialize) {
    out(&serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned()));
}

/// Prints a line of progress or information on stderr.
pub fn note(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
    let _ = stderr.flush();
}

/// Writes a question on stderr without a newline, and reads the answer from stdin.
pub fn ask(question: &str) -> Option<String> {
    {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{question}");
        let _ = stderr.flush();
    }
    let mut answer = String::new();
    match std::io::stdin().read_line(&mut answer) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(answer.trim().to_string()),
    }
}

/// Prints an error as one line on stderr: `error: …`.
pub fn error(message: &str) {
    let paint = stderr_paint();
    // Whatever the message holds, it stays on one line.
    let line = message.replace(['\r', '\n'], " ");
    note(&format!("{} {line}", paint.red(&paint.bold("error:"))));
}
