//! DNS and TLS from real peers in network namespaces: dnsmasq answering dig over UDP and
//! TCP, and nginx terminating TLS for curl. podtap must report one transaction per query
//! and per handshake, with the names, rcodes and server names the clients used.

mod common;

use common::*;
use std::process::Stdio;

#[test]
fn dns_queries_over_udp_and_tcp_are_paired_exactly() {
    require_root();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let _dnsmasq = Proc(Some(
        pair.server
            .cmd("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={SERVER_IP}"),
                &format!("--pid-file={}/dnsmasq.pid", dir.path().display()),
                "--address=/svc.test/10.9.9.9",
                // An empty address answers NXDOMAIN for the domain.
                "--address=/gone.test/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (make deps-test)"),
    ));
    let dig = |args: &[&str]| {
        for _ in 0..50 {
            let out = pair
                .client
                .cmd("dig")
                .arg(format!("@{SERVER_IP}"))
                .args(["+time=1", "+tries=1"])
                .args(args)
                .output()
                .expect("dig");
            if String::from_utf8_lossy(&out.stdout).contains("status:") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("dnsmasq did not answer {args:?}");
    };
    // Wait until dnsmasq answers, before the capture starts.
    dig(&["ready.svc.test"]);
    let pcap = dir.path().join("dns.pcap");
    let mut cap = tcpdump(&pair.server, &pair.server_if, &pcap);
    for i in 0..5 {
        dig(&[&format!("a{i}.svc.test"), "A"]);
    }
    for i in 0..3 {
        dig(&[&format!("n{i}.gone.test"), "A"]);
    }
    dig(&["+tcp", "t.svc.test", "A"]);
    dig(&["+tcp", "t.gone.test", "A"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    cap.interrupt();

    let all = replay(&[&pcap], &[]);
    let mut got: Vec<(String, i64, bool)> = records(&all, "transaction")
        .iter()
        .filter(|t| t["podtap.protocol"] == "dns")
        .map(|t| {
            let name = t["dns.question.name"].as_str().unwrap_or("").to_string();
            (
                name,
                t["podtap.status"].as_i64().unwrap_or(-1),
                t["podtap.complete"] == true,
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, i64, bool)> = (0..5)
        .map(|i| (format!("a{i}.svc.test"), 0, true))
        .collect();
    want.extend((0..3).map(|i| (format!("n{i}.gone.test"), 3, true)));
    want.push(("t.svc.test".into(), 0, true));
    want.push(("t.gone.test".into(), 3, true));
    want.sort();
    assert_eq!(
        got, want,
        "one complete transaction per query, NXDOMAIN = rcode 3"
    );
    let nx = records(&all, "transaction")
        .iter()
        .filter(|t| t["error.type"] == "NXDOMAIN")
        .count();
    assert_eq!(nx, 4);
}

#[test]
fn tls_handshakes_carry_the_server_name() {
    require_root();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    sh(std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=shop.test",
        ])
        .arg("-keyout")
        .arg(d.join("key.pem"))
        .arg("-out")
        .arg(d.join("cert.pem"))
        .stderr(Stdio::null()));
    let conf = format!(
        "daemon off; worker_processes 1; pid {p}/nginx.pid; error_log {p}/error.log;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {p}; proxy_temp_path {p}; fastcgi_temp_path {p}; uwsgi_temp_path {p}; scgi_temp_path {p};
  server {{ listen {SERVER_IP}:443 ssl; ssl_certificate {p}/cert.pem; ssl_certificate_key {p}/key.pem;
    location / {{ return 200 'secure hello'; }} }} }}",
        p = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
    let _nginx = Proc(Some(
        pair.server
            .cmd("nginx")
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    ));
    let curl = |name: &str| {
        pair.client
            .cmd("curl")
            .args([
                "-sk",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--resolve",
                &format!("{name}:443:{SERVER_IP}"),
                &format!("https://{name}/"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for _ in 0..50 {
        if curl("warmup.test") == "200" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pcap = d.join("tls.pcap");
    let mut cap = tcpdump(&pair.server, &pair.server_if, &pcap);
    let names = ["shop.test", "api.shop.test", "shop.test"];
    for n in names {
        assert_eq!(curl(n), "200");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    cap.interrupt();

    let all = replay(&[&pcap], &[]);
    let txs: Vec<_> = records(&all, "transaction")
        .into_iter()
        .filter(|t| t["podtap.protocol"] == "tls")
        .collect();
    let mut got: Vec<&str> = txs
        .iter()
        .map(|t| t["tls.client.server_name"].as_str().unwrap_or(""))
        .collect();
    got.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(
        got, want,
        "one handshake per connection, with the SNI curl sent"
    );
    // The version and cipher are whatever nginx and curl agree on; they must be decoded.
    assert!(
        txs.iter().all(|t| t["podtap.complete"] == true
            && matches!(t["tls.protocol.version"].as_str(), Some("1.2" | "1.3"))
            && t["tls.cipher"]
                .as_str()
                .is_some_and(|c| c.starts_with("TLS_"))),
        "{txs:?}"
    );
    let flows: Vec<_> = records(&all, "flow")
        .into_iter()
        .filter(|f| f["server.port"] == 443)
        .collect();
    assert_eq!(flows.len(), 3);
    for f in flows {
        assert_eq!(f["podtap.protocol"], "tls");
        assert!(
            f["podtap.tls.server.encrypted_bytes"].as_u64().unwrap_or(0) > 0,
            "{f}"
        );
    }
}
