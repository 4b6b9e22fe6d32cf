//! The eBPF objects are linked by `bpf-linker`; rebuild when that binary changes (e.g. after
//! `cargo xtask setup` installs a new one), since cargo cannot express the dependency itself.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!(
            "cargo:warning=bpf-linker not found on PATH ({err}); run `cargo xtask setup` to install it"
        ),
    }
}
