//! The local cluster's control planes. One runs on the host at the host's underlay address
//! (the default). With `up --control-planes N` (3 or 5) each runs on a "machine" of its own, the
//! namespace `flotilla-cp<K>` at 192.168.78.(1+K), with its own member of one etcd cluster (peer
//! TLS on the machine's address, client port on the machine's loopback), as kubeadm's stacked
//! control planes do; the host then runs an API balancer (`flotilla-agent api-balancer`) on its
//! underlay address, where the admin's kubeconfig and the nodes' join address point, so both
//! outlive any one control plane. Each control plane's state, pid file and log live in
//! `.flotilla/cluster/controlplanes/flotilla-cp<K>/` (for the host's, in `.flotilla/cluster/`).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use flotilla_testbed::Netns;

use super::{
    API_PORT, CLUSTER_DNS, ETCD_PORTS, PREFIX, binary, check, cluster_dir, host_ip,
    inventory::pid_from_file, server_url, spawn_daemon, testbed_config,
};
use crate::process::{output_of, run_quiet, tail, wait_for};

/// Control-plane counts `up --control-planes` accepts: etcd needs most of its members, so an
/// even count tolerates no more failures than the odd count below it.
pub(super) const COUNTS: [usize; 3] = [1, 3, 5];

/// Where one control plane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Site {
    /// On the host, at the host's underlay address (a cluster with one control plane).
    Host,
    /// In the namespace `flotilla-cp<number>`, at its underlay address.
    Machine(usize),
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Host => write!(f, "the control plane"),
            Self::Machine(number) => write!(f, "control plane {PREFIX}cp{number}"),
        }
    }
}

impl Site {
    /// The machine's namespace name.
    pub(super) fn netns_name(self) -> Option<String> {
        match self {
            Self::Host => None,
            Self::Machine(number) => Some(format!("{PREFIX}cp{number}")),
        }
    }

    /// The directory of its pid file, log and state.
    pub(super) fn dir(self) -> PathBuf {
        match self.netns_name() {
            None => cluster_dir(),
            Some(name) => machines_dir().join(name),
        }
    }

    /// Its `--state-dir`.
    pub(super) fn state(self) -> PathBuf {
        self.dir().join("controlplane")
    }

    /// Its pid file (the pid is its process group's, which holds its etcd too).
    pub(super) fn pid_file(self) -> PathBuf {
        self.dir().join("controlplane.pid")
    }

    /// Its log.
    pub(super) fn log(self) -> PathBuf {
        self.dir().join("controlplane.log")
    }

    /// The admin kubeconfig it writes, naming its own address.
    pub(super) fn own_kubeconfig(self) -> PathBuf {
        self.state().join("admin.kubeconfig")
    }

    /// Its address on the underlay.
    pub(super) fn ip(self) -> Ipv4Addr {
        match self {
            Self::Host => host_ip(),
            Self::Machine(number) => testbed_config(1).control_plane_ip(number),
        }
    }

    /// Where its API server listens.
    pub(super) fn address(self) -> SocketAddr {
        SocketAddr::from((self.ip(), API_PORT))
    }

    /// Its pid, if it runs.
    pub(super) fn running(self) -> Option<i32> {
        pid_from_file(&self.pid_file(), "flotilla-controlplane")
    }

    /// The pid recorded for it when it no longer runs (its process group may hold its etcd).
    pub(super) fn dead_group(self) -> Option<i32> {
        if self.running().is_some() {
            return None;
        }
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Its etcd member's name.
    fn etcd_name(self) -> String {
        match self {
            Self::Host => "flotilla".to_owned(),
            Self::Machine(number) => format!("cp{number}"),
        }
    }
}

/// Where the control-plane machines' directories live.
fn machines_dir() -> PathBuf {
    cluster_dir().join("controlplanes")
}

/// The sites of `count` control planes.
pub(super) fn sites_for(count: usize) -> Vec<Site> {
    if count <= 1 {
        vec![Site::Host]
    } else {
        (1..=count).map(Site::Machine).collect()
    }
}

/// The control planes of the cluster on this machine: the machines with a directory or a
/// namespace, else the host's.
pub(super) fn sites() -> Vec<Site> {
    let mut numbers: Vec<usize> = std::fs::read_dir(machines_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .chain(
            flotilla_testbed::leftovers(PREFIX)
                .into_iter()
                .filter(|path| path.starts_with(flotilla_testbed::netns::NETNS_DIR))
                .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned())),
        )
        .filter_map(|name| machine_number(&name))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.is_empty() {
        vec![Site::Host]
    } else {
        numbers.into_iter().map(Site::Machine).collect()
    }
}

/// The number of a control-plane machine from its name (`flotilla-cp2` -> 2).
pub(super) fn machine_number(name: &str) -> Option<usize> {
    name.strip_prefix(PREFIX)?.strip_prefix("cp")?.parse().ok()
}

/// Whether the cluster runs its control planes on machines behind the host's API balancer.
pub(super) fn balanced(sites: &[Site]) -> bool {
    sites.iter().any(|site| matches!(site, Site::Machine(_)))
}

/// The admin kubeconfig `up` prints: the host's control plane's own, or, with several, a copy
/// naming the API balancer.
pub(super) fn kubeconfig() -> PathBuf {
    if balanced(&sites()) {
        cluster_dir().join("admin.kubeconfig")
    } else {
        Site::Host.own_kubeconfig()
    }
}

/// Creates what the machines' control planes share in the first one's state directory (the CA,
/// certificates valid for every machine and the balancer's address, tokens) and copies it to
/// the others, as an admin does before starting stacked control planes together.
pub(super) fn share_state(sites: &[Site]) -> anyhow::Result<()> {
    let Some((first, others)) = sites.split_first() else {
        return Ok(());
    };
    let state = first.state();
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let mut certs = Command::new(binary("flotilla-controlplane"));
    certs.arg("--state-dir").arg(&state).arg("certs");
    for ip in sites.iter().map(|site| site.ip()).chain([host_ip()]) {
        certs.args(["--tls-san", &ip.to_string()]);
    }
    run_quiet("flotilla-controlplane certs", &mut certs)?;
    for other in others {
        let to = other.state();
        let pki = to.join("pki");
        std::fs::create_dir_all(&pki).with_context(|| format!("creating {}", pki.display()))?;
        for entry in std::fs::read_dir(state.join("pki"))? {
            let entry = entry?;
            std::fs::copy(entry.path(), pki.join(entry.file_name())).with_context(|| {
                format!("copying {} to {}", entry.path().display(), pki.display())
            })?;
        }
        std::fs::copy(state.join("tokens.csv"), to.join("tokens.csv"))
            .with_context(|| format!("copying tokens.csv to {}", to.display()))?;
    }
    Ok(())
}

/// Starts the control plane at `site` (one of `sites`, the cluster's) in a process group of its
/// own; the child, for `up` to notice its exit while it waits.
pub(super) fn start(site: Site, sites: &[Site]) -> anyhow::Result<std::process::Child> {
    let dir = site.dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let program = binary("flotilla-controlplane");
    let mut command = match site.netns_name() {
        None => Command::new(&program),
        Some(name) => Netns::open(&name)
            .with_context(|| format!("opening the namespace {name}"))?
            .command(&program)?,
    };
    command
        .arg("--state-dir")
        .arg(site.state())
        .args(["--listen", &site.address().to_string()])
        .args(["--tls-san", &site.ip().to_string()])
        .args(["--etcd-client-port", &ETCD_PORTS.0.to_string()])
        .args(["--etcd-peer-port", &ETCD_PORTS.1.to_string()])
        .args(["--cluster-dns", &CLUSTER_DNS.to_string()])
        .args(["--loadbalancer-pool", &super::loadbalancer_pool()]);
    if let Site::Machine(_) = site {
        let members: Vec<String> = sites
            .iter()
            .map(|member| {
                format!(
                    "{}=https://{}",
                    member.etcd_name(),
                    SocketAddr::from((member.ip(), ETCD_PORTS.1))
                )
            })
            .collect();
        command
            .args(["--etcd-name", &site.etcd_name()])
            .args(["--etcd-peer-address", &site.ip().to_string()])
            .args(["--etcd-initial-cluster", &members.join(",")])
            // A machine has no way out of the cluster's underlay, so names outside the cluster
            // domain are refused at once rather than forwarded into a timeout.
            .args(["--cluster-dns-upstream", "none"]);
    }
    let child = spawn_daemon(&mut command, &site.log(), &site.pid_file())?;
    eprintln!(
        "up: started {site} (pid {}, {}, log {})",
        child.id(),
        site.address(),
        site.log().display()
    );
    Ok(child)
}

/// Waits until the API server at `site` answers /readyz; fails at once if `child` exits (its
/// exit status says so for certain, where /proc of a process this young may not; see
/// `inventory::pid_from_file`).
pub(super) fn wait_ready(
    site: Site,
    child: &mut std::process::Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let kubeconfig = site.own_kubeconfig();
    wait_for(&format!("waiting for {site}'s API server"), timeout, || {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{site} exited during start-up ({status}); the end of its log:\n{}",
                tail(&site.log(), 15)
            );
        }
        let ready = kubeconfig.exists()
            && output_of(check::kubectl(&kubeconfig).args([
                "get",
                "--raw",
                "/readyz",
                "--request-timeout=2s",
            ]))
            .is_some_and(|body| body.trim() == "ok");
        Ok(ready.then_some(()))
    })
    .with_context(|| format!("see {}", site.log().display()))
}

/// Writes the admin kubeconfig of a balanced cluster: the first machine's, with the balancer's
/// address for the server.
pub(super) fn write_balanced_kubeconfig(sites: &[Site]) -> anyhow::Result<()> {
    let first = sites.first().context("no control planes")?;
    let own = first.own_kubeconfig();
    let text =
        std::fs::read_to_string(&own).with_context(|| format!("reading {}", own.display()))?;
    let direct = format!("https://{}", first.address());
    if !text.contains(&direct) {
        bail!("{} does not name {direct}", own.display());
    }
    let path = kubeconfig();
    // It holds the admin's credentials: readable by root only, as the control plane's own.
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(text.replace(&direct, &server_url()).as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

fn balancer_pid_file() -> PathBuf {
    cluster_dir().join("api-balancer.pid")
}

/// The API balancer's log.
pub(super) fn balancer_log() -> PathBuf {
    cluster_dir().join("api-balancer.log")
}

/// The API balancer's pid, if it runs.
pub(super) fn running_balancer() -> Option<i32> {
    pid_from_file(&balancer_pid_file(), "flotilla-agent")
}

/// Starts the API balancer on the host's underlay address, in front of every control plane.
pub(super) fn start_balancer(sites: &[Site]) -> anyhow::Result<()> {
    let mut command = Command::new(binary("flotilla-agent"));
    command
        .arg("api-balancer")
        .args(["--listen", &super::api_address().to_string()]);
    for site in sites {
        command.args(["--server", &site.address().to_string()]);
    }
    let child = spawn_daemon(&mut command, &balancer_log(), &balancer_pid_file())?;
    eprintln!(
        "up: started the API balancer (pid {}, {} -> {} control planes, log {})",
        child.id(),
        super::api_address(),
        sites.len(),
        balancer_log().display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_are_numbered_from_their_names() {
        assert_eq!(machine_number("flotilla-cp2"), Some(2));
        assert_eq!(machine_number("flotilla-node2"), None);
        assert_eq!(machine_number("flotilla-cpx"), None);
    }

    #[test]
    fn one_control_plane_runs_on_the_host_several_on_machines() {
        assert_eq!(sites_for(1), [Site::Host]);
        assert_eq!(
            sites_for(3),
            [Site::Machine(1), Site::Machine(2), Site::Machine(3)]
        );
        assert!(!balanced(&sites_for(1)));
        assert!(balanced(&sites_for(3)));
        assert_eq!(Site::Machine(2).ip(), Ipv4Addr::new(192, 168, 78, 3));
        assert_eq!(Site::Host.ip(), Ipv4Addr::new(192, 168, 78, 254));
        assert_eq!(Site::Machine(3).etcd_name(), "cp3");
    }
}
