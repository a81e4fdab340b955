use super::*;
use crate::proto::AttrValue;

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn attr(tx: &Transaction, k: &str) -> Option<String> {
    tx.attr(k).map(|v| match v {
        AttrValue::Str(s) => s.to_string(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    })
}

fn a(tx: &Transaction, k: &str) -> String {
    attr(tx, k).unwrap_or_else(|| panic!("no {k} in {:?}", tx.attrs))
}

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;
const T0: Timestamp = Timestamp(5_000_000_000);
const T1: Timestamp = Timestamp(5_020_000_000);
const T2: Timestamp = Timestamp(5_040_000_000);
const T3: Timestamp = Timestamp(5_060_000_000);

// packetbeat tls-sample2.pcap: a TLS 1.2 handshake with example.net.
// Frame 4: ClientHello (SNI, ALPN h2/http1.1, no supported_versions).
const CH12: &str = "16030100d9010000d50303d7c809b4ac3a60b62f53c9d9366ca89a703d25491ff2a246a89f32f945f7b42b000054c030c02cc028c024c014c00a009f006b0039cca9cca8ccaaff8500c400880081009d003d003500c00084c02fc02bc027c023c013c009009e0067003300be0045009c003c002f00ba0041c012c0080016000a00ff0100005800000010000e00000b6578616d706c652e6e6574000b00020100000a00080006001d00170018000d001c001a06010603efef0501050304010403eeeeeded03010303020102030010000e000c02683208687474702f312e31";
// Frame 6, first record: ServerHello (ECDHE-RSA-AES128-GCM, ALPN h2).
const SH12: &str = "1603030066020000620303d1fd553a5a270f08e09eda6690fb3c8f9884e9a9fe7949e9444f574e475244012023bb2aed5d215e1228220b0a51d7aa220785e9e4b83b4f430229117971e9913fc02f00001aff0100010000000000000b000403000102001000050003026832";
// Frame 14: ClientKeyExchange, ChangeCipherSpec, encrypted Finished (type 22).
const CKE12: &str = "16030300461000004241043487c4377b7d6e175bc6ff4848f4b4cc69bfcef9d1d29f5a22b88ca7573f55d3acaf698df905ae817131f35ed867f9ddb518c36137940fcd702c3b12f820703314030300010116030300280000000000000000ef92019e43f30d2aff307359e5151ae516a46afc237bddf0c16668983dbd0d26";
// Frame 15: the server's ChangeCipherSpec and encrypted Finished.
const CCS12: &str = "14030300010116030300283b5f69645967e8024ea30671361310daabd49a9c2cf5dbcaa73cea3f03d30bcca15fa6ad50d78a95";
// Frame 16: two application_data records (63 + 37 payload bytes).
const APP12: &str = "170303003f3b5f69645967e803c3d457120bf2ef2b710c5ecf99e965f167c7204157b4fdb39ced35aa1227db365afa23a091a04d4843bf0eb5af7564128cc0323dd34ae617030300253b5f69645967e804a254f24c9ed7f9b9f95d75e9021bfe2ffe03804bbe1699095d9e0bbfab";

// packetbeat tls-version-13.pcap: a resumed TLS 1.3 handshake with play.google.com.
// Frame 4: ClientHello (supported_versions 1.3..1.0, ALPN, PSK).
const CH13: &str = "16030102720100026e030303ce74e1536e0272c1d55b0c8cdf324e82f80a276e478645572324ce25910c00205d2b9f80d34143b5764ba6b23e1d4f9d1f172148b6fd83c81f42663459eaf6f60024130113031302c02bc02fcca9cca8c02cc030c00ac009c013c01400330039002f0035000a0100020100000014001200000f706c61792e676f6f676c652e636f6d00170000ff01000100000a000e000c001d00170018001901000101000b000201000010000e000c02683208687474702f312e310005000501000000000033006b0069001d0020497d511d90b35a73f5058604375017f32d3dec08c0620a7a27b226df8f1ecd2c00170041049072102c48f886daf4620bdbde091780713e40d137951e11fd3dc3fe0cc193f6450e0c6c34c1e151f085aae0a67dc1cc04e5344178f9535539ce96f89e73ecae002b0009080304030303020301000d0018001604030503060308040805080604010501060102030201002d00020101001c000240010029010500e000da00054c6013ef3918c6c6709a8628df28c895e48922cad4976138f4fa3342c617560e88b4baca7c475329b66280d9b829cec6434d0a34c0027ad2b2118e8a6e2ad441bb29dbb1cca083bad85ef422885279974a9c4899788ba4a46da73a9a7f1503f26c81561aef8c0f7bb8a3456c66e63628b4b08eba1c393108d7599b1a1888816c3bd0267c46ca8521123a1713a5bb4ab6178755f6fbc7b44af10d8ae847ef290d46ff472b8995612ccd3e4d2acde6dfc7772feaf314f96e124a4eb22ccef7393371f8614097530107e5e7d40897c0d0a5fab7c9208fabf2fc8e7088880021206442362024b442a88dc4c9b30a3d8502e7ba39889e2c19f14581232ed4204788";
// Frame 6: ServerHello (1.3, AES128-GCM, pre_shared_key), dummy CCS, first encrypted
// record (68 bytes).
const SH13: &str = "16030300800200007c0303ebd86864767a7782922db6712f487c22c6cb65e54a895fefd3f60bc851591f19205d2b9f80d34143b5764ba6b23e1d4f9d1f172148b6fd83c81f42663459eaf6f6130100003400290002000000330024001d0020e7af8809ec95b873851c9e4d6bc7f2bfc18c26214150340f54147edff80a4632002b000203041403030001011703030044789179887b5b9c4d46411baff5ef859e194ba73830ce83e6a8c6ffd8a135139e370763073e42bd8ee710c3b9ca6f7d729fd468079ea135fb0159aff2b242163a3d67c4d3";
// Frame 8: the client's dummy CCS and encrypted Finished (53 bytes).
const FIN13: &str = "140303000101170303003541a7585b2016b710bbafa924d465c89922125bb8964747430a106313de5e0bf4fb1d89c9c84ad2b9d2bffaa03987d8ff054cb057b9";

fn run(chunks: &[(Direction, Vec<u8>, Timestamp)]) -> (TlsParser, Vec<Transaction>) {
    let mut p = TlsParser::default();
    let mut out = Vec::new();
    for (dir, bytes, ts) in chunks {
        assert_eq!(p.on_data(*dir, bytes, *ts, &mut out), Progress::Continue);
    }
    (p, out)
}

fn summary(out: &[Transaction]) -> Vec<String> {
    out.iter()
        .map(|t| {
            format!(
                "{} {} {:?} {:?} {}..{} {}/{} {:?} {:?}",
                t.operation,
                t.resource,
                t.status,
                t.error,
                t.start.0,
                t.end.0,
                t.req_bytes,
                t.resp_bytes,
                t.completeness,
                t.attrs
            )
        })
        .collect()
}

/// The handshake message inside a one-record hello.
fn record_body(rec: &[u8]) -> &[u8] {
    &rec[RECORD_HEADER_LEN..]
}

#[test]
fn client_hello_view() {
    let rec = hex(CH12);
    let h = RecordHeader::parse(&rec).unwrap();
    assert_eq!((h.content_type, h.version, h.length), (22, 0x0301, 217));
    assert!(h.is_plausible());
    let msg = record_body(&rec);
    assert_eq!(msg[0], HANDSHAKE_CLIENT_HELLO);
    let ch = ClientHello::parse(&msg[4..]).unwrap();
    assert_eq!(ch.legacy_version, 0x0303);
    assert!(ch.session_id.is_empty());
    assert_eq!(ch.cipher_suites().count(), 42);
    assert_eq!(ch.cipher_suites().next(), Some(0xc030));
    assert_eq!(ch.server_name(), Some(&b"example.net"[..]));
    let alpn: Vec<_> = ch.alpn().collect();
    assert_eq!(alpn, [&b"h2"[..], &b"http/1.1"[..]]);
    assert_eq!(ch.supported_versions().count(), 0);
    assert_eq!(ch.compression_methods(), [0]);

    let rec = hex(CH13);
    let ch = ClientHello::parse(&record_body(&rec)[4..]).unwrap();
    assert_eq!(ch.server_name(), Some(&b"play.google.com"[..]));
    let versions: Vec<_> = ch.supported_versions().collect();
    assert_eq!(versions, [0x0304, 0x0303, 0x0302, 0x0301]);
    assert_eq!(ch.session_id.len(), 32);
    assert!(ch.extension(EXT_PRE_SHARED_KEY).is_some());
    assert_eq!(ch.extensions().count(), 13);

    // Every truncation is an error, never a panic.
    let body = &record_body(&rec)[4..];
    for cut in 0..body.len() {
        let _ = ClientHello::parse(&body[..cut]);
    }
    assert_eq!(
        ClientHello::parse(&body[..40]).err(),
        Some(TlsError::Truncated)
    );
}

#[test]
fn server_hello_view() {
    let rec = hex(SH12);
    let sh = ServerHello::parse(&record_body(&rec)[4..]).unwrap();
    assert_eq!((sh.legacy_version, sh.selected_version()), (0x0303, 0x0303));
    assert_eq!(sh.cipher_suite, 0xc02f);
    assert_eq!(sh.alpn(), Some(&b"h2"[..]));
    assert!(!sh.is_hello_retry_request());
    assert_eq!(sh.session_id.len(), 32);
    // The TLS 1.3 downgrade sentinel "DOWNGRD\x01" ends the random.
    assert_eq!(&sh.random[24..], b"DOWNGRD\x01");

    let rec = hex(SH13);
    let h = RecordHeader::parse(&rec).unwrap();
    let sh = ServerHello::parse(&rec[9..5 + h.length as usize]).unwrap();
    assert_eq!((sh.legacy_version, sh.selected_version()), (0x0303, 0x0304));
    assert_eq!(sh.cipher_suite, 0x1301);
    assert_eq!(sh.alpn(), None);
    assert!(sh.extension(EXT_PRE_SHARED_KEY).is_some());
}

#[test]
fn names() {
    assert_eq!(
        cipher_suite_name(0xc02f),
        Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    );
    assert_eq!(cipher_suite_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(
        cipher_suite_name(0x1303),
        Some("TLS_CHACHA20_POLY1305_SHA256")
    );
    assert_eq!(cipher_suite_name(0xffff), None);
    assert_eq!(alert_name(40), Some("handshake_failure"));
    assert_eq!(alert_text(200), "200");
    assert_eq!(version_name(0x0303), Some(("tls", "1.2")));
    assert_eq!(version_name(0x0300), Some(("ssl", "3")));
    assert_eq!(version_name(0x7f1c), Some(("tls", "1.3")));
    assert_eq!(version_text(0x7f1c), "0x7f1c");
    assert!(is_grease(0x2a2a) && is_grease(0xfafa) && !is_grease(0x2a3a) && !is_grease(0x0303));
    assert_eq!(
        Alert::parse(&[2, 40]),
        Ok(Alert {
            level: 2,
            description: 40
        })
    );
    assert_eq!(Alert::parse(&[2]), Err(TlsError::Truncated));
    assert!(
        !Alert {
            level: 1,
            description: 112
        }
        .ends_handshake()
    );
    assert!(
        Alert {
            level: 1,
            description: 0
        }
        .ends_handshake()
    );
}

fn tls12_flow() -> Vec<(Direction, Vec<u8>, Timestamp)> {
    vec![
        (C, hex(CH12), T0),
        (S, hex(SH12), T1),
        (C, hex(CKE12), T2),
        (S, hex(CCS12), T3),
        (S, hex(APP12), T3.add_nanos(1000)),
    ]
}

#[test]
fn tls12_handshake() {
    let (p, out) = run(&tls12_flow());
    assert_eq!(out.len(), 1);
    let tx = &out[0];
    assert_eq!(tx.protocol, Protocol::Tls);
    assert_eq!(
        (tx.operation.as_str(), tx.resource.as_str()),
        ("handshake", "example.net")
    );
    assert_eq!((tx.start, tx.end), (T0, T3));
    assert_eq!((tx.status, tx.error.as_deref()), (None, None));
    assert!(tx.completeness.is_complete());
    // Client: hello + key exchange flight; server: hello + its ChangeCipherSpec.
    assert_eq!(tx.req_bytes, 222 + 126);
    assert_eq!(tx.resp_bytes, 107 + 6);
    assert_eq!(a(tx, "tls.protocol.name"), "tls");
    assert_eq!(a(tx, "tls.protocol.version"), "1.2");
    assert_eq!(a(tx, "tls.client.server_name"), "example.net");
    assert_eq!(a(tx, "tls.cipher"), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(a(tx, "podtap.tls.cipher_id"), "0xc02f");
    assert_eq!(a(tx, "tls.client.alpn"), "h2,http/1.1");
    assert_eq!(a(tx, "tls.next_protocol"), "h2");
    assert_eq!(a(tx, "tls.resumed"), "false");
    assert_eq!(a(tx, "tls.established"), "true");
    assert_eq!(a(tx, "podtap.tls.client.cipher_suites"), "42");
    assert_eq!(a(tx, "podtap.tls.handshake_duration_ns"), "60000000");
    assert_eq!(attr(tx, "tls.client.supported_versions"), None);
    assert_eq!(attr(tx, "podtap.tls.hello_retry"), None);
    assert_eq!(p.server_name(), Some("example.net"));
    assert!(p.handshake_reported());
    // The encrypted Finished records (type 22) are skipped, not parsed; the
    // application_data of frame 16 is counted.
    assert_eq!(*p.stats(), TlsStats::default());
    assert_eq!(p.encrypted_bytes(), [0, 63 + 37]);
}

#[test]
fn tls13_handshake() {
    let (mut p, mut out) = run(&[(C, hex(CH13), T0), (S, hex(SH13), T1), (C, hex(FIN13), T2)]);
    assert_eq!(out.len(), 1);
    let tx = &out[0];
    assert_eq!(tx.resource, "play.google.com");
    // Done at the first encrypted record, in the same segment as the ServerHello.
    assert_eq!((tx.start, tx.end), (T0, T1));
    assert!(tx.completeness.is_complete());
    assert_eq!(a(tx, "tls.protocol.version"), "1.3");
    assert_eq!(a(tx, "tls.cipher"), "TLS_AES_128_GCM_SHA256");
    assert_eq!(a(tx, "tls.client.supported_versions"), "1.3,1.2,1.1,1.0");
    assert_eq!(a(tx, "tls.client.alpn"), "h2,http/1.1");
    assert_eq!(attr(tx, "tls.next_protocol"), None);
    assert_eq!(a(tx, "tls.resumed"), "true");
    assert_eq!(a(tx, "podtap.tls.client.cipher_suites"), "18");
    assert_eq!(tx.resp_bytes, 133 + 6 + 73);
    assert_eq!(p.encrypted_bytes(), [53, 68]);
    // Later traffic is only counted.
    p.on_data(S, &hex(APP12), T3, &mut out);
    p.on_close(T3, false, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(p.encrypted_bytes(), [53, 68 + 100]);
}

#[test]
fn split_anywhere_and_fragmented_records_give_the_same_result() {
    let flow = tls12_flow();
    let (p0, want) = run(&flow);
    // One byte at a time.
    let bytes: Vec<_> = flow
        .iter()
        .flat_map(|(d, b, ts)| b.iter().map(move |x| (*d, vec![*x], *ts)))
        .collect();
    let (p1, got) = run(&bytes);
    assert_eq!(summary(&got), summary(&want));
    assert_eq!(p1.encrypted_bytes(), p0.encrypted_bytes());
    // The ClientHello split at every point into two TCP segments.
    let ch = hex(CH13);
    let (_, want13) = run(&[(C, ch.clone(), T0), (S, hex(SH13), T1)]);
    for cut in 0..ch.len() {
        let (_, got) = run(&[
            (C, ch[..cut].to_vec(), T0),
            (C, ch[cut..].to_vec(), T0),
            (S, hex(SH13), T1),
        ]);
        assert_eq!(summary(&got), summary(&want13), "cut at {cut}");
    }
    // The ClientHello message spread over records of 50 bytes (record-layer
    // fragmentation), whole and byte by byte.
    let rec = hex(CH13);
    let msg = record_body(&rec);
    let mut frag = Vec::new();
    for part in msg.chunks(50) {
        frag.extend_from_slice(&[22, 3, 1]);
        frag.extend_from_slice(&(part.len() as u16).to_be_bytes());
        frag.extend_from_slice(part);
    }
    let (_, got) = run(&[(C, frag.clone(), T0), (S, hex(SH13), T1)]);
    let mut want_frag = summary(&want13);
    // Only the byte count differs: 13 record headers instead of one.
    let extra = (msg.len().div_ceil(50) - 1) * RECORD_HEADER_LEN;
    want_frag[0] = want_frag[0].replace(
        &format!(" {}/", rec.len()),
        &format!(" {}/", rec.len() + extra),
    );
    assert_eq!(summary(&got), want_frag);
    let bytes: Vec<_> = frag.iter().map(|x| (C, vec![*x], T0)).collect();
    let (mut p, mut got) = run(&bytes);
    p.on_data(S, &hex(SH13), T1, &mut got);
    assert_eq!(summary(&got), want_frag);
}

#[test]
fn alerts_end_the_handshake() {
    // A fatal alert from the server right after the ClientHello.
    let (_, out) = run(&[(C, hex(CH12), T0), (S, hex("15030300020228"), T1)]);
    assert_eq!(out.len(), 1);
    let tx = &out[0];
    assert_eq!(tx.error.as_deref(), Some("alert:handshake_failure"));
    assert_eq!(tx.status, Some(40));
    assert_eq!(tx.end, T1);
    assert_eq!(tx.completeness.0, Completeness::NO_RESPONSE);
    assert_eq!(a(tx, "tls.established"), "false");
    assert_eq!(a(tx, "tls.client.server_name"), "example.net");

    // A client alert after the ServerHello (bad_certificate), split in two.
    let (_, out) = run(&[
        (C, hex(CH12), T0),
        (S, hex(SH12), T1),
        (C, hex("1503030002"), T2),
        (C, hex("022a"), T3),
    ]);
    assert_eq!(out[0].error.as_deref(), Some("alert:bad_certificate"));
    assert_eq!(out[0].end, T3);
    assert!(out[0].completeness.is_complete());

    // A warning does not end it; it is noted.
    let mut flow = tls12_flow();
    flow.insert(1, (S, hex("15030300020170"), T1));
    let (_, out) = run(&flow);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].error, None);
    assert_eq!(a(&out[0], "podtap.tls.alert"), "unrecognized_name");

    // An alert the client sends after its ChangeCipherSpec is encrypted.
    let (_, out) = run(&[
        (C, hex(CH12), T0),
        (S, hex(SH12), T1),
        (C, hex(CKE12), T2),
        (
            C,
            hex("1503030012000000000000000011223344556677889900aa"),
            T3,
        ),
    ]);
    assert_eq!(out[0].error.as_deref(), Some("alert:encrypted"));
    assert_eq!(out[0].status, None);

    // close_notify after the handshake is not an error and reports nothing.
    let mut flow = tls12_flow();
    flow.push((S, hex("1503030002010000"), T3.add_nanos(5)));
    let (_, out) = run(&flow);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].error, None);
}

#[test]
fn hello_retry_request() {
    // The 1.3 ServerHello turned into a HelloRetryRequest (its fixed random).
    let sh = hex(SH13);
    let mut hrr = sh[..5 + 0x80].to_vec();
    hrr[11..43].copy_from_slice(&HRR_RANDOM);
    let ccs = hex("140303000101");
    let (p, out) = run(&[
        (C, hex(CH13), T0),
        (S, [hrr, ccs.clone()].concat(), T1),
        (C, [ccs, hex(CH13)].concat(), T2),
        (S, sh, T3),
    ]);
    assert_eq!(out.len(), 1);
    let tx = &out[0];
    assert_eq!((tx.start, tx.end), (T0, T3));
    assert_eq!(a(tx, "podtap.tls.hello_retry"), "true");
    assert_eq!(a(tx, "podtap.tls.client_hellos"), "2");
    assert_eq!(a(tx, "tls.protocol.version"), "1.3");
    assert_eq!(*p.stats(), TlsStats::default());
}

#[test]
fn close_reset_and_timeout_before_the_end() {
    let mut p = TlsParser::default();
    let mut out = Vec::new();
    p.on_data(C, &hex(CH12), T0, &mut out);
    p.on_tick(T1, 1_000_000_000, &mut out);
    assert!(out.is_empty());
    p.on_close(T1, false, &mut out);
    assert_eq!(
        out[0].completeness.0,
        Completeness::NO_RESPONSE | Completeness::CLOSED
    );
    assert_eq!((out[0].end, out[0].error.as_deref()), (T1, None));
    assert_eq!(a(&out[0], "tls.established"), "false");
    assert_eq!(attr(&out[0], "tls.protocol.version"), None);
    p.on_close(T2, false, &mut out);
    assert_eq!(out.len(), 1, "reported once");

    let (mut p, mut out) = run(&[(C, hex(CH12), T0), (S, hex(SH12), T1)]);
    p.on_close(T2, true, &mut out);
    assert_eq!(out[0].completeness.0, Completeness::RESET);
    assert_eq!(a(&out[0], "tls.protocol.version"), "1.2");

    let mut p = TlsParser::default();
    let mut out = Vec::new();
    p.on_data(C, &hex(CH12), T0, &mut out);
    p.on_tick(T2, T2.since(T0), &mut out);
    assert_eq!(out[0].error.as_deref(), Some("timeout"));
    assert_eq!(out[0].completeness.0, Completeness::NO_RESPONSE);
    assert_eq!(p.stats().timeouts, 1);
    let mut c = Counters::default();
    p.take_stats().add_to(&mut c);
    assert_eq!(c.get(Event::TransactionTimeout), 1);
    // The late answer is only counted.
    p.on_data(S, &hex(SH12), T3, &mut out);
    p.on_data(S, &hex(CCS12), T3, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn midstream_and_not_tls() {
    // Application data first: no transaction, bytes counted, keep going.
    let (p, out) = run(&[(S, hex(APP12), T0), (C, hex(FIN13), T1)]);
    assert!(out.is_empty());
    assert_eq!(p.encrypted_bytes(), [53, 100]);
    assert_eq!(p.stats().midstream, 1);
    // A handshake record that is not a ClientHello (the server's second flight).
    let (p, out) = run(&[(S, hex(CCS12), T0), (S, hex(SH12), T1)]);
    assert!(out.is_empty() && p.is_tls());

    let mut p = TlsParser::default();
    let mut out = Vec::new();
    assert_eq!(
        p.on_data(C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", T0, &mut out),
        Progress::Done
    );
    assert!(out.is_empty() && !p.is_tls());
    assert_eq!(
        *p.stats(),
        TlsStats::default(),
        "not TLS is not a parse error"
    );
    assert_eq!(p.on_data(C, &hex(CH12), T0, &mut out), Progress::Done);
    p.on_close(T1, false, &mut out);
    assert!(out.is_empty());

    // Framing that breaks after a good start: a parse error, and Done.
    let (mut p, mut out) = run(&[(C, hex(CH12), T0)]);
    assert_eq!(p.on_data(S, &[0x99; 12], T1, &mut out), Progress::Done);
    assert_eq!(p.stats().parse_errors, 1);
    assert_eq!(out[0].error.as_deref(), Some("malformed_record"));
}

#[test]
fn gaps() {
    // Inside an application_data record: framing kept, the missing bytes counted.
    let app = hex(APP12);
    let mut p = TlsParser::default();
    let mut out = Vec::new();
    p.on_data(S, &app[..10], T0, &mut out);
    p.on_gap(S, 20);
    p.on_data(S, &app[30..], T0, &mut out);
    assert_eq!(p.encrypted_bytes(), [0, 100]);
    assert!(p.is_tls());
    // Past a record boundary, resuming on a plausible header.
    p.on_gap(S, 500);
    p.on_data(S, &app, T0, &mut out);
    assert_eq!(p.encrypted_bytes(), [0, 200]);
    // Resuming mid-record: lost, every later byte counted.
    p.on_gap(S, 3);
    p.on_data(S, &app[7..], T0, &mut out);
    assert_eq!(p.encrypted_bytes(), [0, 200 + app.len() as u64 - 7]);
    p.on_gap(S, 10);
    assert_eq!(p.encrypted_bytes(), [0, 200 + app.len() as u64 + 3]);
    assert_eq!(p.stats().parse_errors, 1);

    // A gap in the ServerHello: fields lost, the handshake still ends, marked.
    let sh = hex(SH12);
    let mut p = TlsParser::default();
    let mut out = Vec::new();
    p.on_data(C, &hex(CH12), T0, &mut out);
    p.on_data(S, &sh[..30], T1, &mut out);
    p.on_gap(S, 20);
    p.on_data(S, &sh[50..], T1, &mut out);
    p.on_data(C, &hex(CKE12), T2, &mut out);
    p.on_data(S, &hex(CCS12), T3, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].completeness.0, Completeness::GAP);
    assert_eq!(out[0].end, T3);
    assert_eq!(attr(&out[0], "tls.cipher"), None);
    assert_eq!(a(&out[0], "tls.client.server_name"), "example.net");
}

#[test]
fn oversized_hello_is_skipped_and_flagged() {
    let cfg = TlsConfig {
        max_handshake_message: 100,
    };
    let mut p = TlsParser::new(&cfg);
    let mut out = Vec::new();
    for (d, b, ts) in tls12_flow() {
        p.on_data(d, &b, ts, &mut out);
    }
    assert_eq!(out.len(), 1);
    // The ClientHello (213 bytes) was too large; the ServerHello (98) was not.
    assert!(out[0].completeness.has(Completeness::TRUNCATED));
    assert_eq!(out[0].resource, "");
    assert_eq!(a(&out[0], "tls.protocol.version"), "1.2");
    assert_eq!(p.stats().buffer_limit, 1);
    let mut c = Counters::default();
    p.stats().add_to(&mut c);
    assert_eq!(c.get(Event::L7BufferLimit), 1);
}

#[test]
fn config_defaults_and_unknown_fields() {
    let cfg: TlsConfig = toml::from_str("").unwrap();
    assert_eq!(cfg, TlsConfig::default());
    assert_eq!(cfg.max_handshake_message, 65536);
    assert!(toml::from_str::<TlsConfig>("max_handshake = 1").is_err());
}

#[test]
fn sni_text_is_bounded_and_escaped() {
    let mut s = CompactString::default();
    push_text(&mut s, b"Ex\\ample.\x00com", 64);
    assert_eq!(s, "Ex\\092ample.\\000com");
    let mut s = CompactString::default();
    push_text(&mut s, &[b'a'; 1000], MAX_SNI_TEXT);
    assert!(s.len() <= MAX_SNI_TEXT);
}

#[test]
fn fuzz_never_panics() {
    let streams: Vec<Vec<(Direction, Vec<u8>)>> = vec![
        tls12_flow().into_iter().map(|(d, b, _)| (d, b)).collect(),
        vec![
            (C, hex(CH13)),
            (S, hex(SH13)),
            (C, hex(FIN13)),
            (S, hex(APP12)),
        ],
    ];
    let mut rng = crate::proto::testkit::Rng(0x1234_5678_9abc_def1);
    let mut out = Vec::new();
    for round in 0..6_000u64 {
        let mut p = TlsParser::default();
        let flow = &streams[rng.below(streams.len())];
        for (k, (dir, bytes)) in flow.iter().enumerate() {
            let mut b = bytes.clone();
            if round % 4 != 0 {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len());
                    match rng.below(4) {
                        0 => b[at] ^= 1 << rng.below(8),
                        1 => b[at] = rng.next() as u8,
                        2 => b.truncate(at),
                        _ => b.insert(at, rng.next() as u8),
                    }
                    if b.is_empty() {
                        break;
                    }
                }
            }
            let ts = Timestamp(round * 100 + k as u64);
            let mut rest = &b[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                let _ = p.on_data(*dir, &rest[..n], ts, &mut out);
                rest = &rest[n..];
                if rng.below(40) == 0 {
                    p.on_gap(*dir, rng.below(400) as u32);
                }
            }
        }
        p.on_tick(Timestamp(round * 100 + 50), 10, &mut out);
        p.on_close(Timestamp(round * 100 + 99), round % 2 == 0, &mut out);
        // Random bytes straight into the pure parsers.
        let junk: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        let _ = ClientHello::parse(&junk).map(|c| {
            (
                c.server_name(),
                c.alpn().count(),
                c.supported_versions().count(),
            )
        });
        let _ = ServerHello::parse(&junk).map(|s| (s.alpn(), s.selected_version()));
        let _ = RecordHeader::parse(&junk);
        assert!(out.len() <= 1, "at most one handshake per connection");
        out.clear();
    }
}

fn run_capture(file: &str, port: u16) -> Vec<Transaction> {
    use crate::proto::testkit::{self as fixture, Feed};
    let segs = fixture::read(file).unwrap_or_else(|| panic!("{file}"));
    let mut p = TlsParser::default();
    let mut out = Vec::new();
    let mut last = Timestamp::ZERO;
    for f in fixture::tcp(&segs, port) {
        match f {
            Feed::Data(dir, bytes, ts) => {
                last = ts;
                p.on_data(dir, &bytes, ts, &mut out);
            }
            Feed::Gap(dir, n) => p.on_gap(dir, n),
        }
    }
    p.on_close(last, false, &mut out);
    out
}

/// Compares what podtap reports for the TLS captures of the shared corpus with what
/// tshark shows (`-e tls.handshake.extensions_server_name -e tls.handshake.ciphersuite
/// -e tls.handshake.extensions.supported_version -e tls.handshake.extensions_alpn_str`).
#[test]
fn shared_captures() {
    use crate::proto::testkit::{self as fixture, Feed};
    if fixture::pcaps().is_none() {
        return;
    }
    // (file, server port, SNI, version, cipher, negotiated ALPN)
    type Case<'a> = (&'a str, u16, &'a str, &'a str, &'a str, Option<&'a str>);
    let cases: &[Case] = &[
        (
            "packetbeat/tls-sample2.pcap",
            443,
            "example.net",
            "1.2",
            "0xc02f",
            Some("h2"),
        ),
        (
            "packetbeat/tls-version-13.pcap",
            443,
            "play.google.com",
            "1.3",
            "0x1301",
            None,
        ),
        (
            "packetbeat/http2-16-ssl.pcap",
            443,
            "localhost",
            "1.2",
            "0xc02f",
            Some("h2-16"),
        ),
        (
            "suricata-verify/tls-alpn-log-detect-02/input.pcap",
            443,
            "p130-contacts.icloud.com",
            "1.2",
            "0xc02c",
            Some("http/1.1"),
        ),
        (
            "suricata-verify/tls/tls-fin-close-data-01/debug-s13.pcap",
            443,
            "rr4---sn-5hne6nzy.googlevideo.com",
            "1.3",
            "0x1301",
            None,
        ),
        (
            "suricata-verify/tls/tls-client-hello-frag-01/dump_mtu300.pcap",
            443,
            "www.google.com",
            "1.2",
            "0xc02b",
            Some("h2"),
        ),
        (
            "suricata-verify/tls/tls13-draft28/tls13_draft28.pcap",
            4433,
            "localhost",
            "1.3",
            "0x1302",
            None,
        ),
        (
            "suricata-verify/tls-duplicate-hello/input.pcap",
            8443,
            "localhost",
            "1.3",
            "0x1301",
            None,
        ),
    ];
    // The capture ends after the server's first flight (ServerHelloDone): the
    // handshake is reported at close, with what the hellos said.
    let mut incomplete = run_capture("packetbeat/tls-sample1.pcap", 443);
    assert_eq!(incomplete.len(), 1);
    let tx = incomplete.remove(0);
    assert_eq!(tx.completeness.0, Completeness::CLOSED);
    assert_eq!(tx.resource, "www.elastic.co");
    assert_eq!(a(&tx, "tls.protocol.version"), "1.2");
    assert_eq!(
        a(&tx, "tls.cipher"),
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    );
    assert_eq!(a(&tx, "tls.next_protocol"), "h2");
    assert_eq!(a(&tx, "tls.established"), "false");

    for &(file, port, sni, version, cipher, alpn) in cases {
        let segs = fixture::read(file).unwrap_or_else(|| panic!("{file}"));
        let mut p = TlsParser::default();
        let mut out = Vec::new();
        let mut last = Timestamp::ZERO;
        for f in fixture::tcp(&segs, port) {
            match f {
                Feed::Data(dir, bytes, ts) => {
                    last = ts;
                    assert_eq!(
                        p.on_data(dir, &bytes, ts, &mut out),
                        Progress::Continue,
                        "{file}"
                    );
                }
                Feed::Gap(dir, n) => p.on_gap(dir, n),
            }
        }
        p.on_close(last, false, &mut out);
        assert_eq!(out.len(), 1, "{file}");
        let tx = &out[0];
        assert!(
            tx.completeness.is_complete(),
            "{file}: {:?}",
            tx.completeness
        );
        assert_eq!(tx.resource, sni, "{file}");
        assert_eq!(a(tx, "tls.protocol.version"), version, "{file}");
        assert_eq!(a(tx, "podtap.tls.cipher_id"), cipher, "{file}");
        assert_eq!(attr(tx, "tls.next_protocol").as_deref(), alpn, "{file}");
        assert_eq!(*p.stats(), TlsStats::default(), "{file}");
        assert!(tx.end > tx.start, "{file}");
        // Handshake times (µs) checked against tshark's frame times: ClientHello → the
        // server's ChangeCipherSpec (1.2) or first encrypted record (1.3).
        let times = match file {
            "packetbeat/tls-sample2.pcap" => Some((1578768434669950, 1578768435034575)),
            "packetbeat/tls-version-13.pcap" => Some((1578852014933383, 1578852014944403)),
            "suricata-verify/tls/tls-client-hello-frag-01/dump_mtu300.pcap" => {
                Some((1659620473165855, 1659620473171644))
            }
            _ => None,
        };
        if let Some((start_us, end_us)) = times {
            assert_eq!(
                (tx.start.0 / 1000, tx.end.0 / 1000),
                (start_us, end_us),
                "{file}"
            );
        }
        // Every server sent encrypted records (in 1.3 its encrypted handshake).
        let enc = p.encrypted_bytes();
        assert!(enc[1] > 0, "{file}: {enc:?}");
        if file.contains("duplicate-hello") {
            assert_eq!(a(tx, "podtap.tls.client_hellos"), "2");
            assert_eq!(enc[0], 0, "the client never sent encrypted records");
        } else {
            assert!(enc[0] > 0, "{file}: {enc:?}");
        }
    }
}

/// The shared test kit: a TLS 1.2 handshake whole, byte by byte, split everywhere, with a
/// gap in each chunk and picked up after each chunk.
#[test]
fn testkit_feeds_every_way() {
    let flow: Vec<(Direction, Vec<u8>)> =
        tls12_flow().into_iter().map(|(d, b, _)| (d, b)).collect();
    let conv: Vec<crate::proto::testkit::Chunk> = flow.iter().map(|(d, b)| (*d, &b[..])).collect();
    let out = crate::proto::testkit::check_all(|| TlsParser::new(&TlsConfig::default()), &conv);
    assert_eq!(out.len(), 1);
    assert_eq!(a(&out[0], "tls.protocol.version"), "1.2");
}
