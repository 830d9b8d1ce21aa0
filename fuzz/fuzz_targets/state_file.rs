//! Any bytes as a state file: parsing either fails or gives a document that writes back and
//! parses to the same document.
#![no_main]

use infra_core::state::StateDoc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = StateDoc::parse(data) else {
        return;
    };
    let bytes = doc.to_bytes();
    let again = StateDoc::parse(&bytes).expect("a written state parses");
    assert_eq!(again, doc);
});
