//! Compiles every .proto under this crate with protox (pure Rust, no system protoc) and
//! tonic-prost-build, and writes the encoded descriptor set for gRPC server reflection.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    collect(&root.join("onething"), &mut files)?;
    files.sort();
    // The folder too, so an added .proto rebuilds (cargo scans a directory recursively).
    println!("cargo:rerun-if-changed={}", root.join("onething").display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("onething_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // Type names give every message `prost::Name`, whose full name is the CloudEvents type.
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds_with_config(fds, config)?;
    Ok(())
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
