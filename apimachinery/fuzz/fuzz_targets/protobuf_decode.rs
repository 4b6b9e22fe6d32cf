//! Any bytes given to the protobuf decoder come back as an object or an error, never a panic,
//! and an object it accepts encodes and decodes to itself again.

#![no_main]

use flotilla_apimachinery::protobuf::{decode_object, decode_watch_event, encode_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_watch_event(data);
    if let Ok(object) = decode_object(data) {
        if let Ok(encoded) = encode_object(&object) {
            let again = decode_object(&encoded).expect("the codec's own output decodes");
            assert_eq!(
                again, object,
                "a decoded object survives a second round trip"
            );
        }
    }
});
