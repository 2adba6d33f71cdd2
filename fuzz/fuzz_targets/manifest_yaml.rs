//! YAML manifests (and JSON read the way `--validate=warn` reads it, falling back to YAML): any
//! bytes give objects, warnings or diagnostics, never a panic, a hang or an alias bomb.
#![no_main]

use drover::manifest::{parse_file_with, Options, Validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let warn = Options {
        validate: Validate::Warn,
        ..Options::default()
    };
    for (file, opts) in [
        ("fuzz.yaml", Options::default()),
        ("fuzz.json", warn),
    ] {
        let shown: Vec<String> = match parse_file_with(file, data, &opts) {
            Ok((_, warnings)) => warnings.iter().map(|d| d.to_string()).collect(),
            Err(invalid) => invalid
                .errors
                .iter()
                .chain(&invalid.warnings)
                .map(|d| d.to_string())
                .collect(),
        };
        for s in shown {
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
    }
});
