//! Generates the client (and, for the spec tests' fake agent, the server) of the agent's CNI
//! backend API from the one proto file both sides are built against.

fn main() -> std::io::Result<()> {
    let proto = "../agent/proto/cni.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_protos(&[proto], &["../agent/proto"])
}
