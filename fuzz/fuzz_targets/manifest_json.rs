//! JSON manifests: any bytes give objects or diagnostics, never a panic; and the hand-written
//! parser accepts exactly the documents serde_json accepts (below the shared nesting limit).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = drover::manifest::parse_file("fuzz.json", data);
    if let Err(diags) = &result {
        for d in diags {
            let shown = d.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let nesting = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if nesting < 100 && !text.starts_with('\u{feff}') {
        let ours = drover::manifest::node::parse_json(text);
        let reference = serde_json::from_str::<serde_json::Value>(text);
        assert_eq!(
            ours.is_ok(),
            reference.is_ok(),
            "ours: {ours:?}\nserde_json: {reference:?}"
        );
    }
});
