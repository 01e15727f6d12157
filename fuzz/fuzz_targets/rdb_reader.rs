//! Fuzz the RDB file reader, the payload decoder and the value walker: any input must produce
//! items or an error with an offset, never a panic, hang or huge allocation.
#![no_main]

use ferry::rdb::decode::{decode_payload, decode_value};
use ferry::rdb::reader::{Item, RdbReader, ReaderOptions};
use ferry::rdb::{types, walk};
use libfuzzer_sys::fuzz_target;

fn read(data: &[u8], known: bool, validate: bool) {
    let opts = ReaderOptions {
        known_size: known.then_some(data.len() as u64),
        validate_values: validate,
        ..ReaderOptions::default()
    };
    let Ok(reader) = RdbReader::with_options(data, opts) else {
        return;
    };
    for item in reader {
        match item {
            Ok(Item::Record(r)) => {
                let _ = decode_payload(&r.record.payload);
            }
            Ok(_) => {}
            Err(e) => {
                assert!(e.offset().is_some(), "error without offset: {e}");
                break;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Most inputs get a valid header so the fuzzer spends its time past the magic.
    let mut file = b"REDIS0011".to_vec();
    file.extend_from_slice(data);
    read(&file, true, true);
    read(&file, false, false);
    read(data, true, false);
    if let Some((&t, body)) = data.split_first() {
        let _ = decode_value(t, body);
        let _ = walk::value_len(t, body, types::Flavor::Redis);
        let _ = walk::value_len(t, body, types::Flavor::Valkey);
    }
    let _ = decode_payload(data);
});
