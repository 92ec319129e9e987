//! Output capture for the child processes the testkit starts, so a failing start can say why.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// The most recent output of a child process, bounded so a chatty child cannot grow it forever.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutputLog(Arc<Mutex<String>>);

impl OutputLog {
    /// How much output is kept (the newest part).
    const LIMIT: usize = 64 * 1024;

    fn push_line(&self, line: &str) {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.push_str(line);
        log.push('\n');
        if log.len() > Self::LIMIT {
            let mut cut = log.len() - Self::LIMIT;
            while !log.is_char_boundary(cut) {
                cut += 1;
            }
            log.drain(..cut);
        }
    }

    /// Everything kept so far.
    pub(crate) fn contents(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reads `reader` line by line on a thread of its own until it closes, appending to `log`.
/// The first line goes to `first_line` instead when given (the child's "ready" message).
///
/// A thread rather than a task: the child may outlive the async runtime that started it (a
/// provider shared by every test of a process), and its pipes must be drained all that time.
pub(crate) fn drain(
    reader: impl Read + Send + 'static,
    log: OutputLog,
    mut first_line: Option<Sender<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            log.push_line(text);
            if let Some(sender) = first_line.take() {
                // The receiver may have stopped waiting; the line is logged all the same.
                let _ = sender.send(text.to_owned());
            }
        }
    })
}
