//! TOML manifests: any bytes give objects or diagnostics, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(diags) = drover::manifest::parse_file("fuzz.toml", data) {
        for d in diags {
            let shown = d.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }
});
