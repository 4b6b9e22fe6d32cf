//! Attaching a loaded TC program to an interface as a TCX link pinned under the node's `links/`,
//! so the attachment outlives the agent; a later agent swaps the program inside the pinned link
//! atomically instead of detaching (no packet sees no program).

use std::io;

use aya::{
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::TcAttachOptions,
    },
    sys::SyscallError,
};

use super::{
    DatapathError,
    pins::{Direction, NodePins},
};

/// What [`attach_pinned`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachOutcome {
    /// The program was attached to the interface for the first time.
    Attached,
    /// A link pinned by an earlier agent existed; its program was replaced atomically, so no
    /// packet was missed or dropped in between.
    Replaced,
}

/// Attaches `program` (already loaded, named `name`) to `iface` in `direction` and pins the link.
pub fn attach_pinned(
    program: &mut SchedClassifier,
    name: &'static str,
    pins: &NodePins,
    iface: &str,
    direction: Direction,
) -> Result<AttachOutcome, DatapathError> {
    let program_error = |source| DatapathError::Program {
        program: name,
        source,
    };
    let link_path = pins.link(name, iface, direction);
    let (link_id, outcome) = match PinnedLink::from_pin(&link_path) {
        Ok(old) => {
            let link =
                FdLink::from(old)
                    .try_into()
                    .map_err(|err: LinkError| DatapathError::Link {
                        path: link_path.clone(),
                        message: format!(
                            "the pinned link is not a TCX link: {}",
                            error_chain(&err)
                        ),
                    })?;
            match program.attach_to_link(link) {
                Ok(id) => (id, AttachOutcome::Replaced),
                // The interface the pinned link belonged to is gone (a deleted veth leaves a
                // defunct link behind): forget it and attach afresh.
                Err(_) if !interface_exists(iface) => {
                    let _ = std::fs::remove_file(&link_path);
                    return Err(DatapathError::NoSuchInterface {
                        iface: iface.to_owned(),
                    });
                }
                Err(err) => return Err(program_error(err)),
            }
        }
        Err(LinkError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            if !interface_exists(iface) {
                return Err(DatapathError::NoSuchInterface {
                    iface: iface.to_owned(),
                });
            }
            let attach_type = match direction {
                Direction::Ingress => TcAttachType::Ingress,
                Direction::Egress => TcAttachType::Egress,
            };
            let id = program
                .attach_with_options(
                    iface,
                    attach_type,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(program_error)?;
            (id, AttachOutcome::Attached)
        }
        Err(err) => {
            return Err(DatapathError::Link {
                path: link_path,
                message: error_chain(&err),
            });
        }
    };

    let link = program.take_link(link_id).map_err(program_error)?;
    let fd_link: FdLink = link
        .try_into()
        .map_err(|err: LinkError| DatapathError::Link {
            path: link_path.clone(),
            message: format!(
                "the new link is not a TCX link (kernel older than 6.6?): {}",
                error_chain(&err)
            ),
        })?;
    if outcome == AttachOutcome::Replaced {
        // The old pin still refers to the same kernel link, now running the new program.
        return Ok(outcome);
    }
    let links_dir = pins.links_dir();
    std::fs::create_dir_all(&links_dir).map_err(|source| DatapathError::Io {
        action: "creating",
        path: links_dir,
        source,
    })?;
    fd_link.pin(&link_path).map_err(|err| DatapathError::Link {
        path: link_path.clone(),
        message: error_chain(&err),
    })?;
    Ok(outcome)
}

/// Detaches `name` from `iface` by removing its pinned link (the kernel detaches when the last
/// reference goes). Detaching what is not attached succeeds, so callers can clean up blindly.
pub fn detach_pinned(
    pins: &NodePins,
    name: &str,
    iface: &str,
    direction: Direction,
) -> Result<(), DatapathError> {
    let link_path = pins.link(name, iface, direction);
    match std::fs::remove_file(&link_path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DatapathError::Io {
            action: "removing",
            path: link_path,
            source,
        }),
    }
}

/// `err` and its sources, joined with ": " (aya's errors keep the errno in the source).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Asks the kernel (not /sys, which shows the netns of whoever mounted it) whether `iface` exists in
/// this thread's network namespace.
pub fn interface_exists(iface: &str) -> bool {
    nix::net::if_::if_nametoindex(iface).is_ok()
}
