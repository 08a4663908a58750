//! Any bytes given to the scenario parser give a scenario or a located error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = snpsim_scenario::parse_scenario("fuzz.toml", text)
    {
        assert!(e.line >= 1 && e.column >= 1);
    }
});
