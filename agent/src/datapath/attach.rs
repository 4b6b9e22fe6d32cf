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

/// Detaches `name` from `iface` and removes its pinned link. The link is detached explicitly
/// (BPF_LINK_DETACH) before its pin goes: removing the last reference alone releases the link
/// from a kernel work queue, later, so packets sent right after such a detach were still seen by
/// the program. Detaching what is not attached succeeds, so callers can clean up blindly.
pub fn detach_pinned(
    pins: &NodePins,
    name: &str,
    iface: &str,
    direction: Direction,
) -> Result<(), DatapathError> {
    /// `union bpf_attr` for BPF_LINK_DETACH, padded to the size of its largest neighbour.
    #[repr(C)]
    struct LinkDetach {
        link_fd: u32,
        pad: [u32; 3],
    }
    use std::os::fd::AsRawFd as _;

    let link_path = pins.link(name, iface, direction);
    let link = match open_pinned_link(&link_path) {
        Ok(link) => link,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(link_error(&link_path, "opening the pinned link", err)),
    };
    let detach = LinkDetach {
        link_fd: link.as_raw_fd() as u32,
        pad: [0; 3],
    };
    match bpf_syscall(BPF_LINK_DETACH, &detach) {
        // ENOLINK: the interface went away and took the attachment with it.
        Ok(_) => {}
        Err(err) if err.raw_os_error() == Some(libc::ENOLINK) => {}
        Err(err) => return Err(link_error(&link_path, "detaching the pinned link", err)),
    }
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

/// `BPF_OBJ_GET`, `BPF_LINK_UPDATE` and `BPF_LINK_DETACH` from `enum bpf_cmd`
/// (include/uapi/linux/bpf.h).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// A link error about the pin at `pin`.
fn link_error(pin: &std::path::Path, action: &str, err: io::Error) -> DatapathError {
    DatapathError::Link {
        path: pin.to_owned(),
        message: format!("{action}: {err}"),
    }
}

/// Opens the BPF object pinned at `pin` (BPF_OBJ_GET).
fn open_pinned_link(pin: &std::path::Path) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;

    /// `union bpf_attr` for BPF_OBJ_GET. The padding is explicit: the kernel refuses (EINVAL)
    /// any non-zero byte after the last field it knows, and implicit padding is uninitialised.
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        pad: u32,
    }
    let path =
        std::ffi::CString::new(pin.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    let fd = bpf_syscall(BPF_OBJ_GET, &get)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The bpf(2) system call with `attr` as its `union bpf_attr`.
fn bpf_syscall<T>(command: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised value of the size passed, alive for the call; the
    // callers pass the `union bpf_attr` layout of `command`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Swaps the program inside the link pinned at `pin` for `program`, atomically: the kernel's
/// BPF_LINK_UPDATE, which aya offers for TCX and XDP links but not for cgroup ones.
pub fn update_pinned_link(
    pin: &std::path::Path,
    program: std::os::fd::BorrowedFd<'_>,
) -> Result<(), DatapathError> {
    use std::os::fd::AsRawFd as _;

    /// `union bpf_attr` for BPF_LINK_UPDATE.
    #[repr(C)]
    struct LinkUpdate {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let link =
        open_pinned_link(pin).map_err(|err| link_error(pin, "opening the pinned link", err))?;
    let update = LinkUpdate {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: program.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    bpf_syscall(BPF_LINK_UPDATE, &update)
        .map_err(|err| link_error(pin, "replacing the pinned link's program", err))?;
    Ok(())
}
