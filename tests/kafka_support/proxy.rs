//! A TCP proxy on 127.0.0.1 that can be frozen: while frozen it forwards nothing either way
//! and keeps every connection open, so the broker behind it stops answering without closing
//! anything (what a hung broker or a network partition looks like to a client). Test-only.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FreezableProxy {
    pub port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezableProxy {
    /// A proxy on a free port forwarding to 127.0.0.1:`target`.
    pub fn start(target: u16) -> FreezableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone(), server.try_clone());
                if let (Ok(c2), Ok(s2)) = (c2, s2) {
                    let (fa, fb) = (f.clone(), f.clone());
                    std::thread::spawn(move || pump(client, server, &fa));
                    std::thread::spawn(move || pump(s2, c2, &fb));
                }
            }
        });
        FreezableProxy { port, frozen }
    }

    /// From now on nothing is forwarded (bytes in flight stay in the sockets' buffers).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either side closes; while frozen it reads nothing.
fn pump(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
