//! Opening a URL in the user's browser, when there is one: `$BROWSER` if set, `open` on
//! macOS, `xdg-open` where a graphical session is running. The URL is always printed too, so
//! a failed or absent browser only costs a copy and paste.

use std::process::{Command, Stdio};

/// Tries to open `url`; whether a browser was started.
pub fn open(url: &str) -> bool {
    let Some(mut command) = opener() else {
        return false;
    };
    match command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reap it whenever it exits, without waiting here.
            std::thread::spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}

fn opener() -> Option<Command> {
    if let Some(browser) = std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        // $BROWSER may list several, separated by colons; the first is tried.
        let browser = browser.to_string_lossy().into_owned();
        let first = browser.split(':').next().unwrap_or_default().trim();
        return (!first.is_empty()).then(|| Command::new(first));
    }
    if cfg!(target_os = "macos") {
        return Some(Command::new("open"));
    }
    if cfg!(windows) {
        let mut command = Command::new("cmd");
        command.args(["/C", "start", ""]);
        return Some(command);
    }
    let graphical = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    graphical.then(|| Command::new("xdg-open"))
}
