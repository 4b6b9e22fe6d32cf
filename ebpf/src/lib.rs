//! Library target so the agent can declare a build-dependency on this crate (see agent/build.rs);
//! the programs themselves are in the `flotilla-datapath` binary target.
#![no_std]
