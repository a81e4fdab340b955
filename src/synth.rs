//! `podtap synth`: write a capture of synthetic but well-formed traffic, so that a fresh
//! checkout can run podtap end to end (and benchmark it) without capturing anything.
//!
//! Each TCP connection is a full handshake, `requests` HTTP/1.1 request/response pairs
//! (keep-alive) and a FIN exchange; each UDP flow is request/response datagrams. Payload
//! sizes and flow counts are parameters. With `--protocol redis` each exchange is instead a
//! pipeline of 16 Redis commands (SETs or GETs of `key:<n>`) and their 16 replies.

use etherparse::PacketBuilder;
use std::io::Write;

use crate::capture::pcap_file::PcapWriter;
use crate::time::Timestamp;

#[derive(Clone, Debug, clap::Args)]
pub struct SynthOptions {
    /// TCP connections to write.
    #[arg(long, default_value_t = 100)]
    pub tcp_flows: u32,
    /// UDP flows to write.
    #[arg(long, default_value_t = 0)]
    pub udp_flows: u32,
    /// Request/response exchanges per flow.
    #[arg(long, default_value_t = 10)]
    pub requests: u32,
    /// TCP/UDP payload bytes per packet; 0 writes real requests and responses.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// What the TCP connections speak (with `--payload 0`).
    #[arg(long, value_enum, default_value_t = SynthProtocol::Http)]
    pub protocol: SynthProtocol,
}

/// The application protocol of [`SynthOptions::protocol`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthProtocol {
    /// Keep-alive HTTP/1.1 GETs of a JSON resource, on port 80.
    #[default]
    Http,
    /// Pipelines of 16 Redis commands, alternately SETs and GETs, on port 6379.
    Redis,
}

/// Commands in one synthetic Redis pipeline.
const PIPELINE: u32 = 16;

/// The request and response of exchange `r` of connection `i`.
fn exchange(o: &SynthOptions, i: u32, r: u32) -> (String, String) {
    match o.protocol {
        SynthProtocol::Http => {
            let req = format!(
                "GET /api/items/{r} HTTP/1.1\r\nHost: synth\r\nUser-Agent: podtap-synth\r\n\r\n"
            );
            let body = "{\"ok\":true}";
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            (req, resp)
        }
        SynthProtocol::Redis => {
            let (mut req, mut resp) = (String::new(), String::new());
            for k in 0..PIPELINE {
                let n = (u64::from(i) * u64::from(o.requests) + u64::from(r)) * u64::from(PIPELINE);
                let key = format!("key:{:012}", n + u64::from(k));
                if r.is_multiple_of(2) {
                    req.push_str(&format!(
                        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$3\r\nxxx\r\n",
                        key.len()
                    ));
                    resp.push_str("+OK\r\n");
                } else {
                    req.push_str(&format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()));
                    resp.push_str("$3\r\nxxx\r\n");
                }
            }
            (req, resp)
        }
    }
}

struct Clock(u64);
impl Clock {
    fn tick(&mut self, us: u64) -> Timestamp {
        self.0 += us * 1000;
        Timestamp(self.0)
    }
}

/// Write the synthetic capture; returns the number of frames written.
pub fn write<W: Write>(out: W, o: &SynthOptions) -> std::io::Result<u64> {
    let mut w = PcapWriter::new(out, 1)?;
    let mut clock = Clock(1_790_000_000 * 1_000_000_000);
    let mut frames = 0u64;
    let mut frame = Vec::with_capacity(2048);
    let fixed = vec![b'x'; o.payload];
    let server_port = match o.protocol {
        SynthProtocol::Http => 80,
        SynthProtocol::Redis => 6379,
    };
    for i in 0..o.tcp_flows {
        let c_ip = [10, 1, (i >> 8) as u8, i as u8];
        let s_ip = [10, 2, 0, 1];
        let c_port = 30_000 + (i % 30_000) as u16;
        let (mut cs, mut ss) = (1000u32, 5000u32);
        let mut send = |from_client: bool,
                        flags: u8,
                        payload: &[u8],
                        cs: &mut u32,
                        ss: &mut u32,
                        ts: Timestamp| {
            frame.clear();
            let (src, dst, sp, dp, seq, ack) = if from_client {
                (c_ip, s_ip, c_port, server_port, *cs, *ss)
            } else {
                (s_ip, c_ip, server_port, c_port, *ss, *cs)
            };
            let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, 64)
                .tcp(sp, dp, seq, 64_000);
            if flags & 0x02 != 0 {
                b = b.syn();
            }
            if flags & 0x10 != 0 {
                b = b.ack(ack);
            }
            if flags & 0x01 != 0 {
                b = b.fin();
            }
            if !payload.is_empty() {
                b = b.psh();
            }
            b.write(&mut frame, payload)
                .map_err(std::io::Error::other)?;
            let adv = payload.len() as u32 + u32::from(flags & 0x03 != 0);
            if from_client {
                *cs = cs.wrapping_add(adv);
            } else {
                *ss = ss.wrapping_add(adv);
            }
            w.write(ts, &frame)
        };
        send(true, 0x02, b"", &mut cs, &mut ss, clock.tick(10))?;
        send(false, 0x12, b"", &mut cs, &mut ss, clock.tick(50))?;
        send(true, 0x10, b"", &mut cs, &mut ss, clock.tick(20))?;
        frames += 3;
        for r in 0..o.requests {
            let (req, resp);
            let (req_b, resp_b): (&[u8], &[u8]) = if o.payload == 0 {
                (req, resp) = exchange(o, i, r);
                (req.as_bytes(), resp.as_bytes())
            } else {
                (&fixed, &fixed)
            };
            send(true, 0x10, req_b, &mut cs, &mut ss, clock.tick(5))?;
            send(false, 0x10, resp_b, &mut cs, &mut ss, clock.tick(200))?;
            frames += 2;
        }
        send(true, 0x11, b"", &mut cs, &mut ss, clock.tick(5))?;
        send(false, 0x11, b"", &mut cs, &mut ss, clock.tick(30))?;
        send(true, 0x10, b"", &mut cs, &mut ss, clock.tick(20))?;
        frames += 3;
    }
    for i in 0..o.udp_flows {
        let c_ip = [10, 3, (i >> 8) as u8, i as u8];
        let s_ip = [10, 4, 0, 1];
        let c_port = 20_000 + (i % 40_000) as u16;
        let payload: &[u8] = if o.payload == 0 {
            b"synthetic datagram"
        } else {
            &fixed
        };
        for _ in 0..o.requests {
            for (src, dst, sp, dp) in [(c_ip, s_ip, c_port, 9999u16), (s_ip, c_ip, 9999, c_port)] {
                frame.clear();
                PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
                    .ipv4(src, dst, 64)
                    .udp(sp, dp)
                    .write(&mut frame, payload)
                    .map_err(std::io::Error::other)?;
                w.write(clock.tick(3), &frame)?;
                frames += 1;
            }
        }
    }
    w.into_inner().flush()?;
    Ok(frames)
}
