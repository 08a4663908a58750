//! Any text given to the trace replayer is replayed, reported as a divergence, or rejected as
//! malformed with a line number: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = snpsim_trace::replay::replay(text);
    }
});
