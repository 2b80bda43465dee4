//! The regions fixture itself: real delay between regions and none inside, partitions
//! that time out and heal, processes spawned inside hosts, nothing left behind.
//! Needs root, as CI has (the fixture says so if not).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_test_support::{
    Host, Process, Regions, output_within, start_haproxy_in, text, wait_until,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const DELAY: Duration = Duration::from_millis(40);
/// What a round trip may take beyond the delays: the relay, the veths, scheduling on a
/// shared 2-core machine.
const SLACK: Duration = Duration::from_millis(20);

/// An echo server on `host`, port `port`, serving every connection on its own thread
/// until the test process ends.
fn echo_server(host: &Host, port: u16) -> SocketAddr {
    let listener: TcpListener = host.listen(port);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    host.addr(port)
}

/// The shortest of seven echo round trips of one byte.
fn echo_rtt(stream: &mut TcpStream) -> Duration {
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (0..7)
        .map(|_| {
            let started = Instant::now();
            stream.write_all(b"x").unwrap();
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).unwrap();
            started.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn round_trips_take_twice_the_delay_between_regions_and_little_inside() {
    let regions = Regions::new(&["eu", "us", "ap"], DELAY);
    regions.set_delay("eu", "ap", Duration::from_millis(10));
    let server = regions.add_host("eu");
    let near = regions.add_host("eu");
    let far = regions.add_host("us");
    let closer = regions.add_host("ap");
    assert_eq!(server.ip().to_string(), "10.1.0.1");
    assert_eq!(far.ip().to_string(), "10.2.0.1");
    let echo = echo_server(&server, 7000);

    let mut inside = near.connect(echo, Duration::from_secs(5)).unwrap();
    let inside_rtt = echo_rtt(&mut inside);
    let mut across = far.connect(echo, Duration::from_secs(5)).unwrap();
    let across_rtt = echo_rtt(&mut across);
    let mut shorter = closer.connect(echo, Duration::from_secs(5)).unwrap();
    let shorter_rtt = echo_rtt(&mut shorter);
    eprintln!("RTT inside eu {inside_rtt:?}, eu-us {across_rtt:?}, eu-ap {shorter_rtt:?}");
    assert!(inside_rtt < Duration::from_millis(5), "{inside_rtt:?}");
    assert!(
        across_rtt >= 2 * DELAY && across_rtt < 2 * DELAY + SLACK,
        "{across_rtt:?}"
    );
    let ten = Duration::from_millis(10);
    assert!(
        shorter_rtt >= 2 * ten && shorter_rtt < 2 * ten + SLACK,
        "{shorter_rtt:?}"
    );

    // Bulk data crosses intact (whole frames, checksums filled in by the relay).
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let started = Instant::now();
    let mut writer = across.try_clone().unwrap();
    let sent = data.clone();
    let sender = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    // Bounded: a relay that loses big frames still gets there, by retransmission, slowly.
    let mut back = vec![0u8; data.len()];
    let mut got = 0;
    while got < back.len() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "4 MiB not echoed within 10 s ({got} bytes)"
        );
        got += across.read(&mut back[got..]).unwrap();
    }
    sender.join().unwrap();
    assert!(back == data, "echoed data differs");
    eprintln!("4 MiB echoed across eu-us in {:?}", started.elapsed());
}

#[test]
fn processes_run_inside_hosts_and_reach_other_regions() {
    let regions = Regions::new(&["eu", "us"], Duration::from_millis(20));
    let server = regions.add_host("eu");
    let client = regions.add_host("us");
    let echo = echo_server(&server, 7000);
    // The host's own view: its address, and a route out through its region's router.
    let addresses = output_within(
        client.command("ip").args(["-4", "-o", "addr", "show"]),
        None,
        Duration::from_secs(10),
    );
    let addresses = text(&addresses.stdout);
    assert!(addresses.contains("10.2.0.1/24"), "{addresses}");
    // A program inside `us` talks to the server in `eu` by address (bash's /dev/tcp).
    let script = format!(
        "exec 3<>/dev/tcp/{}/{}; printf 'across\\n' >&3; head -n 1 <&3",
        echo.ip(),
        echo.port()
    );
    let out = output_within(
        client.command("bash").args(["-c", &script]),
        None,
        Duration::from_secs(10),
    );
    assert_eq!(text(&out.stdout), "across\n", "{}", text(&out.stderr));
    // The same through `wrap`, keeping an environment variable.
    let mut command = std::process::Command::new("bash");
    command
        .args(["-c", "echo $REGION_TEST"])
        .env("REGION_TEST", "kept");
    let out = output_within(&mut client.wrap(&command), None, Duration::from_secs(10));
    assert_eq!(text(&out.stdout), "kept\n");
}

#[test]
fn haproxy_runs_inside_a_host() {
    let regions = Regions::new(&["eu", "us"], Duration::from_millis(10));
    let backend = regions.add_host("eu");
    let balancer = regions.add_host("eu");
    let client = regions.add_host("us");
    let echo = echo_server(&backend, 7000);
    let dir = tempfile::tempdir().unwrap();
    let _haproxy = start_haproxy_in(
        &balancer,
        dir.path(),
        &format!(
            "frontend lb\n  bind 0.0.0.0:8000\n  default_backend echo\nbackend echo\n  server e {echo}\n"
        ),
        &[8000],
    );
    let mut stream = client
        .connect(balancer.addr(8000), Duration::from_secs(5))
        .unwrap();
    let rtt = echo_rtt(&mut stream);
    assert!(rtt >= Duration::from_millis(20), "{rtt:?}");
}

#[test]
fn partitions_time_out_and_heal() {
    let regions = Regions::new(&["eu", "us"], Duration::from_millis(20));
    let server = regions.add_host("eu");
    let neighbour = regions.add_host("eu");
    let client = regions.add_host("us");
    let echo = echo_server(&server, 7000);
    let mut held = client.connect(echo, Duration::from_secs(5)).unwrap();
    echo_rtt(&mut held);

    regions.cut("eu", "us");
    let started = Instant::now();
    let err = client
        .connect(echo, Duration::from_secs(1))
        .expect_err("connected across a cut");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // An open connection hears nothing either, but is not closed.
    held.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    held.write_all(b"y").unwrap();
    let mut byte = [0u8; 1];
    let err = held.read_exact(&mut byte).expect_err("echo across a cut");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    // Inside the region, all is well.
    neighbour.connect(echo, Duration::from_secs(2)).unwrap();

    regions.heal("eu", "us");
    client.connect(echo, Duration::from_secs(2)).unwrap();
    // The byte sent during the cut arrives by TCP's retransmission.
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    held.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"y");

    // One host cut off: its neighbour in the same region cannot reach it.
    regions.isolate(&server);
    let err = neighbour
        .connect(echo, Duration::from_secs(1))
        .expect_err("connected to an isolated host");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    regions.rejoin(&server);
    neighbour.connect(echo, Duration::from_secs(2)).unwrap();
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[test]
fn dropping_removes_namespaces_and_processes_and_stale_ones_are_swept() {
    // A namespace left by a test process that is gone (no process has this PID: it is
    // above the kernel's largest).
    let stale = "jgns-4294967295-0-eu-1";
    let out = output_within(
        std::process::Command::new("ip").args(["netns", "add", stale]),
        None,
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let regions = Regions::new(&["eu", "us"], Duration::from_millis(5));
    assert!(!netns_exists(stale), "a stale namespace was not swept");
    let host = regions.add_host("us");
    let dir = tempfile::tempdir().unwrap();
    let mut sleeper = Process::spawn(
        host.command("sleep").arg("600"),
        "sleep",
        &dir.path().join("sleep.log"),
    );
    let namespaces = regions.namespaces();
    assert_eq!(namespaces.len(), 4, "{namespaces:?}");
    assert!(namespaces.iter().all(|name| netns_exists(name)));

    let started = Instant::now();
    drop(regions);
    eprintln!("dropped in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
    for name in &namespaces {
        assert!(!netns_exists(name), "{name} left behind");
    }
    assert!(
        wait_until(Duration::from_secs(5), || sleeper.has_exited()),
        "a process inside a host outlived the fixture"
    );
}
