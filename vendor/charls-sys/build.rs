// covid-resnet's copy of charls-sys: CharLS is compiled with the `cc` crate instead of CMake,
// so the default build needs only a C++ compiler (see vendor/README.md).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let src = [
        "charls_jpegls_decoder.cpp",
        "charls_jpegls_encoder.cpp",
        "jpeg_stream_reader.cpp",
        "jpeg_stream_writer.cpp",
        "jpegls.cpp",
        "jpegls_error.cpp",
        "validate_spiff_header.cpp",
        "version.cpp",
    ];
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++14")
        .include("charls/include")
        .define("CHARLS_STATIC", None)
        .define("CHARLS_LIBRARY_BUILD", None)
        .flag_if_supported("-fvisibility=hidden")
        .warnings(false);
    for f in src {
        let p = format!("charls/src/{f}");
        println!("cargo:rerun-if-changed={p}");
        build.file(p);
    }
    build.compile("charls");
}
