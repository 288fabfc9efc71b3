//! A multipart body (boundary `XyZ`) → the image routes' body parser and their text-field parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let _ =
        rt.block_on(siamese::api::fuzz::parse_image_body("multipart/form-data; boundary=XyZ", data.to_vec(), 1 << 20));
});
