use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
    let mut v = Vec::new();
    d.decode(block, |f| match f {
        Field::Header { name, value } => v.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        )),
        Field::Unknown => v.push(("?".into(), "?".into())),
    })
    .expect("block decodes");
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn table(d: &Decoder) -> Vec<(String, String)> {
    d.entries
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(e.name()).into_owned(),
                String::from_utf8_lossy(e.value()).into_owned(),
            )
        })
        .collect()
}

fn known() -> Decoder {
    Decoder::new(Limits::default(), true)
}

#[test]
fn integers_rfc_c1_and_overflow() {
    // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337; C.1.3: 42 at an octet boundary.
    let mut pos = 0;
    assert_eq!(integer(&[0x0a], &mut pos, 5), Ok(10));
    pos = 0;
    assert_eq!(integer(&[0x1f, 0x9a, 0x0a], &mut pos, 5), Ok(1337));
    assert_eq!(pos, 3);
    pos = 0;
    assert_eq!(integer(&[0x2a], &mut pos, 8), Ok(42));
    pos = 0;
    assert_eq!(
        integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut pos, 5),
        Err(HpackError::IntegerOverflow)
    );
    pos = 0;
    assert_eq!(
        integer(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos, 5),
        Err(HpackError::IntegerOverflow)
    );
    pos = 0;
    assert_eq!(
        integer(&[0x1f, 0x80], &mut pos, 5),
        Err(HpackError::Truncated)
    );
}

#[test]
fn rfc_c2_single_representations() {
    let mut d = known();
    let b = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    assert_eq!(
        fields(&mut d, &b),
        pairs(&[("custom-key", "custom-header")])
    );
    assert_eq!(d.size(), 55);
    let mut d = known();
    let b = hex("040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(fields(&mut d, &b), pairs(&[(":path", "/sample/path")]));
    assert_eq!(d.size(), 0);
    let mut d = known();
    let b = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    assert_eq!(fields(&mut d, &b), pairs(&[("password", "secret")]));
    assert_eq!(d.size(), 0);
    let mut d = known();
    assert_eq!(fields(&mut d, &[0x82]), pairs(&[(":method", "GET")]));
    assert_eq!(d.size(), 0);
}

/// The three requests of C.3 (plain) and C.4 (Huffman) decode to the same fields and
/// leave the same table.
fn requests(blocks: [&str; 3]) {
    let mut d = known();
    let r1 = pairs(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ]);
    assert_eq!(fields(&mut d, &hex(blocks[0])), r1);
    assert_eq!(table(&d), pairs(&[(":authority", "www.example.com")]));
    assert_eq!(d.size(), 57);
    let mut r2 = r1.clone();
    r2.push(("cache-control".into(), "no-cache".into()));
    assert_eq!(fields(&mut d, &hex(blocks[1])), r2);
    assert_eq!(
        table(&d),
        pairs(&[
            ("cache-control", "no-cache"),
            (":authority", "www.example.com")
        ])
    );
    assert_eq!(d.size(), 110);
    let r3 = pairs(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ]);
    assert_eq!(fields(&mut d, &hex(blocks[2])), r3);
    assert_eq!(
        table(&d),
        pairs(&[
            ("custom-key", "custom-value"),
            ("cache-control", "no-cache"),
            (":authority", "www.example.com")
        ])
    );
    assert_eq!(d.size(), 164);
}

#[test]
fn rfc_c3_requests_without_huffman() {
    requests([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

#[test]
fn rfc_c4_requests_with_huffman() {
    requests([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

/// The three responses of C.5 (plain) and C.6 (Huffman) with a 256-byte table: entries
/// are evicted.
fn responses(blocks: [&str; 3]) {
    let mut d = known();
    d.max_size = 256;
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let loc = "https://www.example.com";
    assert_eq!(
        fields(&mut d, &hex(blocks[0])),
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", loc)
        ])
    );
    assert_eq!(d.size(), 222);
    assert_eq!(
        fields(&mut d, &hex(blocks[1])),
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", loc)
        ])
    );
    assert_eq!(
        table(&d),
        pairs(&[
            (":status", "307"),
            ("location", loc),
            ("date", date1),
            ("cache-control", "private")
        ])
    );
    assert_eq!(d.size(), 222);
    let date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
    let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    assert_eq!(
        fields(&mut d, &hex(blocks[2])),
        pairs(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", date2),
            ("location", loc),
            ("content-encoding", "gzip"),
            ("set-cookie", cookie)
        ])
    );
    assert_eq!(
        table(&d),
        pairs(&[
            ("set-cookie", cookie),
            ("content-encoding", "gzip"),
            ("date", date2)
        ])
    );
    assert_eq!(d.size(), 215);
}

#[test]
fn rfc_c5_responses_without_huffman() {
    responses([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
         3d31",
    ]);
}

#[test]
fn rfc_c6_responses_with_huffman() {
    responses([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]);
}

#[test]
fn midstream_references_are_unknown_not_guessed() {
    // C.3.2 decoded without having seen C.3.1: index 62 (0xbe) is an entry podtap
    // never saw; the static fields survive and the new entry is known afterwards.
    let mut d = Decoder::new(Limits::default(), false);
    assert!(!d.is_known());
    let got = fields(&mut d, &hex("8286 84be 5808 6e6f 2d63 6163 6865"));
    assert_eq!(
        got,
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("?", "?"),
            ("cache-control", "no-cache")
        ])
    );
    // C.3.3: 0xbf (63) is now the unseen :authority, 62 would be cache-control.
    let got = fields(&mut d, &hex("be bf"));
    assert_eq!(got, pairs(&[("cache-control", "no-cache"), ("?", "?")]));
    // A size update to 0 empties the table: known again, and invalid indices are errors.
    fields(&mut d, &[0x20]);
    assert!(d.is_known());
    assert_eq!(d.decode(&[0xbe], |_| {}), Err(HpackError::BadIndex(62)));
    // The error leaves the table unknown rather than trusted.
    assert!(!d.is_known());
}

#[test]
fn known_entries_filling_a_known_size_prove_the_tail_gone() {
    let mut d = Decoder::new(Limits::default(), false);
    // Size update to 100 (seen), then one 70-byte entry: nothing older (>= 32 bytes) fits.
    let mut b = vec![0x3f, 100 - 31];
    b.extend_from_slice(&[0x40, 3, b'a', b'b', b'c', 35]);
    b.extend(std::iter::repeat_n(b'x', 35));
    fields(&mut d, &b);
    assert!(d.is_known());
    assert_eq!(d.size(), 70);
}

#[test]
fn size_update_above_the_setting_is_an_error() {
    let mut d = known();
    // 0x3f e1 1f = 31 + 0x61 + (0x1f << 7) = 4096 is allowed; 8192 is not until SETTINGS.
    assert!(d.decode(&[0x3f, 0xe1, 0x1f], |_| {}).is_ok());
    let upd = [0x3f, 0xe1, 0x3f];
    assert_eq!(d.decode(&upd, |_| {}), Err(HpackError::SizeUpdate(8192)));
    let mut d = known();
    d.set_allowed(8192);
    assert!(d.decode(&upd, |_| {}).is_ok());
}

#[test]
fn memory_stays_within_the_table_bound() {
    let mut d = Decoder::new(
        Limits {
            max_table_bytes: 200,
            max_list_bytes: 100,
        },
        true,
    );
    d.set_allowed(1 << 20);
    // Size update to 65536, then ten 100-byte entries: only the newest fit in 200 bytes.
    let mut b = vec![0x3f, 0xe1, 0xff, 0x03];
    for i in 0..10u8 {
        b.extend_from_slice(&[0x40, 2, b'k', b'0' + i, 66]);
        b.extend(std::iter::repeat_n(b'v', 66));
    }
    let mut n = 0;
    let info = d.decode(&b, |_| n += 1).unwrap();
    assert!(d.size() <= 200);
    assert!(!d.is_known(), "forgotten entries make the tail unknown");
    // The header-list bound: only the first field (100 bytes) is emitted.
    assert_eq!((n, info.over_limit), (1, 9));
}

/// A small deterministic generator for the randomized tests (no extra dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hostile_blocks_never_panic() {
    let seeds = [
        hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
        hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6"),
        hex("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab"),
        hex("3fe11f 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let mut b = seeds[round % seeds.len()].clone();
        // Flip bits, truncate, or splice random bytes.
        match rng.next() % 4 {
            0 => {
                for _ in 0..1 + rng.next() % 4 {
                    let i = (rng.next() as usize) % b.len();
                    b[i] ^= 1 << (rng.next() % 8);
                }
            }
            1 => b.truncate((rng.next() as usize) % b.len()),
            2 => {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            _ => b = (0..rng.next() % 64).map(|_| rng.next() as u8).collect(),
        }
        let mut d = Decoder::new(Limits::default(), round % 2 == 0);
        let _ = d.decode(&b, |_| {});
        let _ = d.decode(&b, |_| {});
        assert!(d.size() <= Limits::default().max_table_bytes);
    }
}
