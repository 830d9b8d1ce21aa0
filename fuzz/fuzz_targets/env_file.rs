//! Any text as an env file: parsing either fails with located errors or gives an env whose
//! stack builds, validates and is policy-checked without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        stacks::fuzz::check_env_text(text);
    }
});
