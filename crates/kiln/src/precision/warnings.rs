//! Warnings through the `log` facade, at most once per distinct cause (configurable), and
//! counted so that tests and summaries can see them. CPU fallbacks are counted here too.

use super::config::WarnMode;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

/// One warning as emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    /// A stable key for the cause, e.g. `downcast:float64->float32@sim:mps`.
    pub cause: String,
    /// The message logged.
    pub message: String,
}

static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
static FALLBACKS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

thread_local! {
    static CAPTURE: RefCell<Option<Vec<Warning>>> = const { RefCell::new(None) };
}

/// Logs `message` at warn level unless this cause was already warned about (mode `Once`)
/// or warnings are off. Returns whether it was logged.
pub fn warn(cause: &str, message: &str, mode: WarnMode) -> bool {
    let first = {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        seen.get_or_insert_with(HashSet::new)
            .insert(cause.to_string())
    };
    let emit = match mode {
        WarnMode::Off => false,
        WarnMode::Always => true,
        WarnMode::Once => first,
    };
    if emit {
        log::warn!(target: "kiln::precision", "{message}");
        CAPTURE.with(|c| {
            if let Some(v) = c.borrow_mut().as_mut() {
                v.push(Warning {
                    cause: cause.to_string(),
                    message: message.to_string(),
                });
            }
        });
    }
    emit
}

/// Forgets which causes were warned about, so each warns once more. For tests and for
/// long-running programs that want a fresh report per run.
pub fn reset() {
    *SEEN.lock().unwrap_or_else(|e| e.into_inner()) = None;
    FALLBACKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Runs `f` and returns, with its result, every warning logged on this thread meanwhile.
///
/// ```
/// let (_, w) = kiln::precision::warnings::capture(|| ());
/// assert!(w.is_empty());
/// ```
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<Warning>) {
    let outer = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let got = CAPTURE
        .with(|c| std::mem::replace(&mut *c.borrow_mut(), outer))
        .unwrap_or_default();
    // Nested captures see what their inner ones saw, too.
    CAPTURE.with(|c| {
        if let Some(v) = c.borrow_mut().as_mut() {
            v.extend(got.iter().cloned());
        }
    });
    (r, got)
}

/// Counts one CPU fallback under `cause`.
pub fn count_fallback(cause: &str) {
    *FALLBACKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(cause.to_string())
        .or_default() += 1;
}

/// Every CPU fallback so far, by cause.
pub fn fallback_summary() -> BTreeMap<String, usize> {
    FALLBACKS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
