//! The store's index (`state.json`): any bytes give an index or an error, never a panic; an
//! accepted index names only ids that are valid file names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("state.json");
    if let Ok(index) = drover::store::parse_index(path, data) {
        for key in index.applied.keys().chain(index.observed.keys()) {
            assert!(!key.id.contains('/') && !key.id.starts_with('.'), "{key}");
        }
        // A current-format index writes back and reads again as the same index (an older
        // format is only read: the next commit writes the current one).
        if index.format != drover::store::FORMAT_VERSION {
            return;
        }
        let text = serde_json::to_vec(&index).unwrap();
        let again = drover::store::parse_index(path, &text).unwrap();
        assert_eq!(again.applied, index.applied);
        assert_eq!(again.observed, index.observed);
    }
});
