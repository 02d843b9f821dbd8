//! `loadgen ready`: polls a URL with fresh connections every 200 µs until it answers 200, and
//! prints the wall-clock time of that answer (the caller knows when it started the server).

use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{die, parse_url, Target};

/// One GET with a fresh connection; true on a 200.
fn probe(t: &Target) -> bool {
    let Ok(mut s) = StdTcpStream::connect_timeout(&t.addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        t.path, t.authority
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return false,
            Ok(k) => n += k,
        }
    }
    buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200")
}

pub fn ready(url: &str, timeout: f64) {
    let t = parse_url(url);
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    while Instant::now() < deadline {
        if probe(&t) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970");
            println!("{}", now.as_micros());
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    die(format!(
        "{}{} did not answer 200 within {timeout} s",
        t.authority, t.path
    ))
}
