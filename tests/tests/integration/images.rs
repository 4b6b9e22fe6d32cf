//! Privileged test of `cargo xtask images`: the tarballs it writes are valid OCI image layouts
//! that a real containerd imports with the digests they claim, and the images run.
//!
//! A throwaway containerd (own root, state, socket and config under a temp dir) imports them;
//! the test app runs inside a network namespace the test creates (never the host network) and is
//! probed over HTTP, TCP and UDP from inside that namespace, and the flotilla-perf server it
//! carries answers the benchmark client there; the pause container exits 0 on SIGTERM. Containers, shims, mounts, the namespaces, containerd and the temp dir are removed
//! by guards, also when an assertion fails. Every wait is bounded.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_testbed::{Netlink, Netns, perf, unique_prefix};
use sha2::{Digest as _, Sha256};

const PAUSE: &str = "docker.io/flotilla/pause:3.10";
const TESTAPP_V1: &str = "docker.io/flotilla/testapp:v1";
const TESTAPP_V2: &str = "docker.io/flotilla/testapp:v2";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts containerd and creates network namespaces, so it needs root; run it via \
         `cargo xtask test`"
    );
}

/// Runs `command` to completion, killing it after `timeout`.
fn run_bounded(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    Ok(flotilla_testbed::containerd::run_bounded(command, timeout)?)
}

/// Runs `command` bounded and fails unless it succeeds; returns stdout.
fn run_ok(command: &mut Command, timeout: Duration) -> anyhow::Result<String> {
    let description = format!("{command:?}");
    let output = run_bounded(command, timeout)?;
    ensure!(
        output.status.success(),
        "{description} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A throwaway containerd under a temp dir (its own root, state, socket and config); the
/// containers it ran are removed and it is stopped on drop.
struct Containerd {
    dir: tempfile::TempDir,
    process: flotilla_testbed::containerd::Containerd,
    containers: Vec<String>,
}

impl Containerd {
    fn start() -> anyhow::Result<Self> {
        let dir = flotilla_testbed::run_dir("images")?;
        let root = dir.path();
        let socket = root.join("containerd.sock");
        for sub in ["root", "state", "cni/bin", "cni/conf"] {
            fs::create_dir_all(root.join(sub))?;
        }
        let config = root.join("config.toml");
        fs::write(&config, containerd_config(root, &socket))?;
        let process = flotilla_testbed::containerd::Containerd::start(
            &config,
            &socket,
            &root.join("containerd.log"),
            vec![root.to_path_buf()],
            None,
            Duration::from_secs(30),
        )?;
        Ok(Self {
            dir,
            process,
            containers: Vec::new(),
        })
    }

    fn ctr(&self) -> Command {
        self.process.ctr()
    }

    /// Starts `image` detached as container `id`, running `command` instead of the image's
    /// entrypoint if given; it is removed again on drop.
    fn run_detached(
        &mut self,
        image: &str,
        id: &str,
        extra: &[String],
        command: &[&str],
    ) -> anyhow::Result<()> {
        self.containers.push(id.to_owned());
        run_ok(
            self.ctr()
                .args(["run", "-d"])
                .args(extra)
                .args([image, id])
                .args(command),
            Duration::from_secs(30),
        )
        .map(|_| ())
    }

    fn remove_containers(&mut self) {
        for id in std::mem::take(&mut self.containers) {
            let quick = Duration::from_secs(10);
            let _ = run_bounded(
                self.ctr()
                    .args(["tasks", "kill", "--signal", "SIGKILL", &id]),
                quick,
            );
            let _ = run_bounded(self.ctr().args(["tasks", "delete", "--force", &id]), quick);
            let _ = run_bounded(self.ctr().args(["containers", "delete", &id]), quick);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_containers();
        self.process.stop();
    }
}

fn containerd_config(root: &Path, socket: &Path) -> String {
    let root = root.display();
    format!(
        r#"version = 2
root = "{root}/root"
state = "{root}/state"

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{root}/cni/bin"
    conf_dir = "{root}/cni/conf"
"#,
        socket = socket.display()
    )
}

/// A network namespace removed (with whatever still runs inside) on drop.
struct NetnsGuard(Netns);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(err) = self.0.delete() {
            eprintln!("removing network namespace {}: {err}", self.0.name());
        }
    }
}

/// Runs the benchmark client `config` inside `netns`, retrying for up to 10 s while the server
/// is not listening yet.
fn wait_for_perf(netns: &Netns, config: &perf::ClientConfig) -> anyhow::Result<perf::Report> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match netns.run(|| perf::run_client(config))? {
            Ok(report) => return Ok(report),
            Err(err) if Instant::now() < deadline => {
                eprintln!("flotilla-perf server not ready yet: {err}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => return Err(err).context("the image's flotilla-perf server never answered"),
        }
    }
}

/// Builds the image tarballs into `out` with `cargo xtask images`, as a user would.
fn build_images(out: &Path) -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate has a parent directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_ok(
        Command::new(cargo)
            .current_dir(workspace)
            .args([
                "run",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "images",
                "--out",
            ])
            .arg(out),
        Duration::from_secs(20 * 60),
    )?;
    Ok(())
}

/// Reads an OCI layout tarball, checks every blob against its digest and the manifest's
/// descriptors, and returns (image name, manifest digest).
fn verify_layout(tarball: &Path) -> anyhow::Result<(String, String)> {
    let mut archive = tar::Archive::new(fs::File::open(tarball)?);
    let mut blobs = std::collections::HashMap::new();
    let mut index = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        if path == "index.json" {
            index = Some(bytes);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
            ensure!(
                digest == format!("sha256:{hex}"),
                "{path} has digest {digest}"
            );
            blobs.insert(digest, bytes);
        }
    }
    let index: serde_json::Value = serde_json::from_slice(&index.context("no index.json")?)?;
    let descriptor = &index["manifests"][0];
    let name = descriptor["annotations"]["io.containerd.image.name"]
        .as_str()
        .context("index.json names no image")?
        .to_owned();
    let manifest_digest = descriptor["digest"]
        .as_str()
        .context("no digest")?
        .to_owned();
    let manifest = blobs
        .get(&manifest_digest)
        .context("manifest blob missing")?;
    ensure!(
        descriptor["size"] == manifest.len(),
        "manifest size differs"
    );
    let manifest: serde_json::Value = serde_json::from_slice(manifest)?;
    let config = &manifest["config"];
    let layer = &manifest["layers"][0];
    for blob in [config, layer] {
        let digest = blob["digest"]
            .as_str()
            .context("descriptor without digest")?;
        let bytes = blobs.get(digest).context("blob missing")?;
        ensure!(blob["size"] == bytes.len(), "size of {digest} differs");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&blobs[config["digest"].as_str().context("config digest")?])?;
    let mut layer_tar = Vec::new();
    flate2::read::GzDecoder::new(
        blobs[layer["digest"].as_str().context("layer digest")?].as_slice(),
    )
    .read_to_end(&mut layer_tar)?;
    ensure!(
        config["rootfs"]["diff_ids"][0] == format!("sha256:{:x}", Sha256::digest(&layer_tar)),
        "diff_id of {name} is not the sha256 of its uncompressed layer"
    );
    Ok((name, manifest_digest))
}

/// GET `path` from `address` (HTTP/1.0: the server closes after answering); returns the body.
fn http_get(address: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: testapp\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other(format!(
            "unexpected response: {response}"
        ))),
    }
}

fn tcp_echo(address: SocketAddr, message: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(message)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    Ok(back)
}

fn udp_ask(address: SocketAddr, message: &[u8]) -> std::io::Result<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(message, address)?;
    let mut buffer = [0_u8; 2048];
    let (read, _) = socket.recv_from(&mut buffer)?;
    Ok(buffer[..read].to_vec())
}

/// Waits (bounded) until the test app in `netns` answers `/healthz`.
fn wait_for_http(netns: &Netns, address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match netns.run(|| http_get(address, "/healthz"))? {
            Ok(body) if body == "ok" => return Ok(()),
            Ok(body) => bail!("/healthz answered {body:?}"),
            Err(err) if Instant::now() > deadline => {
                bail!("the test app did not answer on {address} within 20 s: {err}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Waits (bounded) for the pause task to run, sends SIGTERM and expects `ctr run` to end with 0.
fn stop_pause(containerd: &Containerd, id: &str, foreground: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = run_ok(
            containerd.ctr().args(["tasks", "ls"]),
            Duration::from_secs(10),
        )?;
        let running = tasks.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.first() == Some(&id) && fields.get(2) == Some(&"RUNNING")
        });
        if running {
            break;
        }
        ensure!(
            foreground.try_wait()?.is_none(),
            "ctr run of the pause image ended before its task ran"
        );
        ensure!(
            Instant::now() < deadline,
            "the pause task did not run within 20 s:\n{tasks}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run_ok(
        containerd
            .ctr()
            .args(["tasks", "kill", "--signal", "SIGTERM", id]),
        Duration::from_secs(10),
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = foreground.try_wait()? {
            ensure!(
                status.success(),
                "pause ended with {status} after SIGTERM, not 0"
            );
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "pause did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn built_images_import_into_containerd_and_run() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let mut containerd = Containerd::start()?;
    let out = containerd.dir.path().join("images");
    build_images(&out)?;
    eprintln!("images built in {:?}", started.elapsed());

    // The tarballs are valid layouts; containerd imports them with the digests they claim.
    let mut expected = Vec::new();
    for file in [
        "flotilla-pause-3.10.tar",
        "flotilla-testapp-v1.tar",
        "flotilla-testapp-v2.tar",
    ] {
        let tarball = out.join(file);
        expected.push(verify_layout(&tarball)?);
        run_ok(
            containerd.ctr().args(["images", "import"]).arg(&tarball),
            Duration::from_secs(60),
        )?;
    }
    let listing = run_ok(
        containerd.ctr().args(["images", "ls"]),
        Duration::from_secs(10),
    )?;
    for (name, digest) in &expected {
        let line = listing
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name.as_str()))
            .with_context(|| format!("ctr images ls does not list {name}:\n{listing}"))?;
        assert_eq!(
            line.split_whitespace().nth(2),
            Some(digest.as_str()),
            "{line}"
        );
    }
    let names: Vec<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, [PAUSE, TESTAPP_V1, TESTAPP_V2]);
    eprintln!("images imported and listed after {:?}", started.elapsed());

    // The test apps, each in a network namespace of its own, probed from inside it.
    let prefix = unique_prefix();
    let id_prefix = format!("flotilla-img-{}", std::process::id());
    let loopback: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut namespaces = Vec::new();
    for (image, version) in [(TESTAPP_V1, "v1"), (TESTAPP_V2, "v2")] {
        let netns = NetnsGuard(Netns::create(&format!("{prefix}img-{version}"))?);
        Netlink::connect(&netns.0)?.set_up("lo").await?;
        let log = containerd.dir.path().join(format!("testapp-{version}.log"));
        containerd.run_detached(
            image,
            &format!("{id_prefix}-{version}"),
            &[
                "--with-ns".to_owned(),
                format!("network:{}", netns.0.path().display()),
                "--log-uri".to_owned(),
                format!("file://{}", log.display()),
            ],
            &[],
        )?;
        wait_for_http(&netns.0, loopback)?;
        assert_eq!(netns.0.run(|| http_get(loopback, "/version"))??, version);
        namespaces.push((netns, log));
    }
    let v1 = &namespaces[0].0.0;
    let tcp: SocketAddr = "127.0.0.1:9000".parse()?;
    let udp: SocketAddr = "127.0.0.1:9001".parse()?;
    let hostname = v1.run(|| http_get(loopback, "/hostname"))??;
    assert!(!hostname.is_empty());
    assert_eq!(v1.run(|| http_get(loopback, "/"))??, hostname);
    assert_eq!(v1.run(|| http_get(loopback, "/echo?msg=hello"))??, "hello");
    assert_eq!(
        v1.run(|| tcp_echo(tcp, b"ping over tcp"))??,
        b"ping over tcp"
    );
    assert_eq!(v1.run(|| udp_ask(udp, b"hostname"))??, hostname.as_bytes());
    assert_eq!(
        v1.run(|| udp_ask(udp, b"ping over udp"))??,
        b"ping over udp"
    );
    // containerd copies the container's stdout to the log file on its own schedule: wait
    // (bounded) for the last lines instead of racing it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let logged = loop {
        let logged = fs::read_to_string(&namespaces[0].1)?;
        let complete =
            logged.contains("GET /echo?msg=hello 200") && logged.contains("udp 127.0.0.1:");
        if complete || Instant::now() > deadline {
            break logged;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(logged.contains("GET /echo?msg=hello 200"), "log:\n{logged}");
    assert!(logged.contains("udp 127.0.0.1:"), "log:\n{logged}");
    eprintln!("test apps answered after {:?}", started.elapsed());

    // The benchmark tool the test-app images carry: its server, started from the image in v1's
    // namespace, answers the client there.
    containerd.run_detached(
        TESTAPP_V1,
        &format!("{id_prefix}-perf"),
        &[
            "--with-ns".to_owned(),
            format!("network:{}", v1.path().display()),
        ],
        &[
            "/bin/flotilla-perf",
            "server",
            "--listen",
            "127.0.0.1:12865",
        ],
    )?;
    let perf_server: SocketAddr = "127.0.0.1:12865".parse()?;
    for test in [perf::Test::TcpRr, perf::Test::UdpRr] {
        let config =
            perf::ClientConfig::new(perf_server, test).with_duration(Duration::from_millis(300));
        let report = wait_for_perf(v1, &config)?;
        ensure!(
            report.transactions > 0 && report.errors == 0,
            "{test} against the image's flotilla-perf server: {report}"
        );
    }
    eprintln!(
        "flotilla-perf from the image answered after {:?}",
        started.elapsed()
    );

    // The pause program exits 0 on SIGTERM (as PID 1, where default actions do not apply):
    // `ctr run` in the foreground exits with the task's status.
    let pause_id = format!("{id_prefix}-pause");
    containerd.containers.push(pause_id.clone());
    let mut foreground = containerd
        .ctr()
        .args(["run", "--rm", PAUSE, &pause_id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = stop_pause(&containerd, &pause_id, &mut foreground);
    let _ = foreground.kill();
    let _ = foreground.wait();
    result?;
    eprintln!("done after {:?}", started.elapsed());

    drop(namespaces);
    drop(containerd);
    Ok(())
}
