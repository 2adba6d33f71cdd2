//! The store's object records: observed minions and pods read back into an `Observation`, and
//! applied objects prepared for display (secret masking) — any text, never a panic.
#![no_main]

use drover::model::{Kind, ObjectKey};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [Kind::Pod, Kind::Minion] {
        let records = BTreeMap::from([(ObjectKey::new(kind, "x"), text.to_string())]);
        let _ = drover::plan::observed::from_records(&records);
    }
    let key = drover::plan::objects::MaskKey::new([0; 32]);
    let _ = drover::plan::objects::display_text(text, &key);
    let _ = ObjectKey::parse(text);
});
