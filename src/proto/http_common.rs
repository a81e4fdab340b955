//! What HTTP/1 and HTTP/2 share: configuration, route templating for bounded
//! cardinality, trace-context extraction from request headers, and redaction.

use compact_str::CompactString;
use regex::Regex;
use serde::Deserialize;

use super::{TraceContext, Transaction};
use crate::events::{Counters, Event};

/// What went wrong on one HTTP/1 or HTTP/2 connection since the decoder's last
/// `take_stats` (HTTP/1 has no HPACK, so its `hpack_errors` stays 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub parse_errors: u64,
    pub hpack_errors: u64,
    pub buffer_limit: u64,
    pub pending_limit: u64,
    pub timeouts: u64,
    /// HTTP/1 requests whose whole response was lost in a gap.
    pub responses_lost: u64,
}

impl HttpStats {
    /// Fold the counts into the worker's event counters.
    pub fn add_to(&self, c: &mut Counters) {
        c.add(Event::L7ParseError, self.parse_errors);
        c.add(Event::HpackError, self.hpack_errors);
        c.add(Event::L7BufferLimit, self.buffer_limit);
        c.add(Event::PendingLimit, self.pending_limit);
        c.add(Event::TransactionTimeout, self.timeouts);
        c.add(Event::ResponseLost, self.responses_lost);
    }
}

/// `[protocols.http]`: settings of the HTTP/1 and HTTP/2 decoders.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request or response head (start line + headers) decoded; a larger one is
    /// skipped, counted (`l7.buffer_limit`) and its transaction marked `truncated`. 16 KiB.
    pub max_header_bytes: usize,
    /// Requests awaiting a response per connection; beyond it the oldest is reported as
    /// unanswered (`l7.pending_limit`). Default 64.
    pub max_pending: usize,
    /// Keep the query string in `url.query` (values of sensitive parameters redacted).
    /// Default false: query strings never leave podtap.
    pub keep_query: bool,
    /// Query parameters whose values are replaced by `REDACTED` when `keep_query` is on.
    pub sensitive_query_params: Vec<String>,
    /// Request headers recorded as `http.request.header.<name>` attributes. Default none.
    pub capture_headers: Vec<String>,
    /// Headers never recorded, in addition to Authorization, Proxy-Authorization, Cookie
    /// and Set-Cookie, which are always redacted.
    pub redact_headers: Vec<String>,
    pub route: RouteConfig,
}

impl HttpConfig {
    /// Checks serde cannot express (syntax only: compiling the route rules happens when a
    /// worker prepares its decoders).
    pub fn validate(&self) -> Result<(), String> {
        if self.max_header_bytes == 0 {
            return Err("max_header_bytes: must be at least 1 (0 would drop every request)".into());
        }
        if self.max_pending == 0 {
            return Err("max_pending: must be at least 1".into());
        }
        for rule in &self.route.rules {
            regex_syntax::Parser::new()
                .parse(&rule.pattern)
                .map_err(|e| format!("route.rules.pattern: {e}"))?;
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header_bytes: 16 * 1024,
            max_pending: 64,
            keep_query: false,
            sensitive_query_params: [
                "token",
                "access_token",
                "password",
                "secret",
                "api_key",
                "apikey",
                "key",
                "sig",
                "signature",
            ]
            .map(String::from)
            .to_vec(),
            capture_headers: Vec::new(),
            redact_headers: Vec::new(),
            route: RouteConfig::default(),
        }
    }
}

/// `[protocols.http.route]`: how paths become `http.route` templates.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Replace identifier-like segments (numbers, UUIDs, hex, base64-like tokens) with
    /// `{id}`. Default true.
    pub enabled: bool,
    /// Regex rules applied to the path first, in order: `{ pattern = "^/v1/users/[^/]+", replace = "/v1/users/{user}" }`.
    pub rules: Vec<RouteRule>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            enabled: true,
            rules: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    pub pattern: String,
    pub replace: String,
}

/// Headers whose values never leave podtap.
const ALWAYS_REDACTED: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Compiled HTTP settings shared by the decoders of one worker.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub cfg: HttpConfig,
    rules: Vec<(Regex, String)>,
    /// Captured header names (lowercase) with their attribute keys, built once so the
    /// decode path neither allocates nor locks for them.
    header_keys: Vec<(String, &'static str)>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings::new(HttpConfig::default()).expect("default HTTP config is valid")
    }
}

impl HttpSettings {
    pub fn new(cfg: HttpConfig) -> Result<HttpSettings, regex::Error> {
        let rules = cfg
            .route
            .rules
            .iter()
            .map(|r| Ok((Regex::new(&r.pattern)?, r.replace.clone())))
            .collect::<Result<_, regex::Error>>()?;
        let header_keys = cfg
            .capture_headers
            .iter()
            .map(|h| (h.to_ascii_lowercase(), leak_key(h)))
            .collect();
        Ok(HttpSettings {
            cfg,
            rules,
            header_keys,
        })
    }

    /// The route template of a path (no query).
    pub fn route(&self, path: &str) -> CompactString {
        let mut p: std::borrow::Cow<'_, str> = path.into();
        for (re, rep) in &self.rules {
            if re.is_match(&p) {
                p = re.replace(&p, rep.as_str()).into_owned().into();
            }
        }
        if !self.cfg.route.enabled {
            return CompactString::from(p.as_ref());
        }
        template(&p)
    }

    fn redacted(&self, name: &str) -> bool {
        ALWAYS_REDACTED.iter().any(|h| h.eq_ignore_ascii_case(name))
            || self
                .cfg
                .redact_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether any header is configured to be captured.
    #[inline]
    pub fn captures_headers(&self) -> bool {
        !self.header_keys.is_empty()
    }

    /// Record a request header as an attribute if configured (redacted ones as `[REDACTED]`).
    #[inline]
    pub fn capture_header(&self, tx: &mut Transaction, name: &str, value: &[u8]) {
        // Called for every request header; usually none is configured.
        if !self.header_keys.is_empty() {
            self.capture_configured(tx, name, value);
        }
    }

    fn capture_configured(&self, tx: &mut Transaction, name: &str, value: &[u8]) {
        let Some(&(_, key)) = self
            .header_keys
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(name))
        else {
            return;
        };
        if self.redacted(name) {
            tx.attr_str(key, "[REDACTED]");
        } else {
            tx.attr_str(key, lossy(value).as_ref());
        }
    }

    /// Set operation, resource and URL attributes from the method and request target.
    pub fn finish_request(&self, tx: &mut Transaction, method: &str, target: &str) {
        self.finish_request_cached(tx, method, target, &mut RouteCache::default());
    }

    /// [`finish_request`](Self::finish_request) for a connection that keeps its last
    /// route in `cache`.
    pub fn finish_request_cached(
        &self,
        tx: &mut Transaction,
        method: &str,
        target: &str,
        cache: &mut RouteCache,
    ) {
        // Targets are short: a 16-bytes-a-step search, not a general one with its set-up.
        let (path, query) = match super::scan::find_byte(target.as_bytes(), 0, b'?') {
            i if i < target.len() => (&target[..i], Some(&target[i + 1..])),
            _ => (target, None),
        };
        // Absolute-form targets (proxies): keep only the path. Origin-form (the common
        // case) starts with '/' and needs no search.
        let path = match path.starts_with('/') {
            true => path,
            false => match path.find("://") {
                Some(i) => path[i + 3..].find('/').map_or("/", |j| &path[i + 3 + j..]),
                None => path,
            },
        };
        let route = match &cache.last {
            Some((p, r)) if p == path => r.clone(),
            _ => {
                let route = self.route(path);
                if path.len() <= RouteCache::INLINE && route.len() <= RouteCache::INLINE {
                    cache.last = Some((path.into(), route.clone()));
                }
                route
            }
        };
        tx.operation = method.into();
        tx.resource = route.clone();
        tx.attr_str("http.request.method", method);
        tx.attr_str("url.path", path);
        tx.attr_str("http.route", route);
        if let (true, Some(q)) = (self.cfg.keep_query, query) {
            tx.attr_str("url.query", self.redact_query(q));
        }
    }

    fn redact_query(&self, q: &str) -> String {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if self
                        .cfg
                        .sensitive_query_params
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(k)) =>
                {
                    format!("{k}=REDACTED")
                }
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Attribute keys are `&'static str`; configured header names are few and fixed at start,
/// so each is leaked once (when settings are built, never on the decode path) and reused.
fn leak_key(header: &str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut map = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let lower = header.to_ascii_lowercase();
    map.entry(lower.clone())
        .or_insert_with(|| Box::leak(format!("http.request.header.{lower}").into_boxed_str()))
}

/// The last path a connection asked for and its route. Keep-alive clients tend to call one
/// endpoint again and again, and templating the path (and running configured rules) each
/// time is the largest part of handling a request line. Only paths and routes short enough
/// to be stored inline are kept, so the cache never allocates and costs 48 bytes.
#[derive(Debug, Default)]
pub struct RouteCache {
    last: Option<(CompactString, CompactString)>,
}

impl RouteCache {
    /// Bytes a `CompactString` holds without a heap allocation.
    const INLINE: usize = std::mem::size_of::<CompactString>();
}

/// Replace identifier-like path segments with `{id}`.
pub fn template(path: &str) -> CompactString {
    // Most paths have no identifier segment: decide that with a byte split (no char
    // searcher set-up) and copy the path once.
    if path.is_empty() {
        return CompactString::const_new("/");
    }
    if !path.as_bytes().split(|&c| c == b'/').any(is_identifier) {
        return CompactString::from(path);
    }
    let mut out = CompactString::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_identifier(seg.as_bytes()) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn is_identifier(b: &[u8]) -> bool {
    if b.is_empty() {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == b.len() {
        return true;
    }
    // Every other kind is at least eight bytes long: most words end here.
    if b.len() < 8 {
        return false;
    }
    // UUID: 8-4-4-4-12 hex.
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
    {
        return true;
    }
    // The kinds below have at least one digit.
    if digits == 0 {
        return false;
    }
    // Long hex (hashes, object ids).
    if b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Base64/base64url-looking tokens: long, mixed letters and digits, no separators
    // that words would have.
    if b.len() >= 16 {
        let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
        let ok = b.iter().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'=' | b'.' | b'%')
        });
        return ok && letters > 0;
    }
    false
}

/// Bytes as text, invalid UTF-8 replaced. Header values are almost always ASCII: a
/// 16-bytes-a-step ASCII check decides that far quicker than UTF-8 validation, which is
/// kept for the rest (and `String::from_utf8_lossy` for the rare invalid value).
#[inline]
pub fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    if super::scan::is_ascii(b) {
        // SAFETY: ASCII is UTF-8.
        return std::borrow::Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(b) });
    }
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// The request headers that carry a trace context (lower case, all shorter than 32 bytes).
const TRACE_HEADERS: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "uber-trace-id",
    "sw8",
];

/// Collects trace-context headers of one request and picks one, by precedence:
/// W3C traceparent, B3 single, B3 multi, Jaeger uber-trace-id, SkyWalking sw8.
#[derive(Default, Debug)]
pub struct TraceHeaders {
    traceparent: Option<TraceContext>,
    tracestate: Option<CompactString>,
    b3: Option<TraceContext>,
    x_b3_trace: Option<[u8; 16]>,
    x_b3_span: Option<[u8; 8]>,
    x_b3_sampled: Option<bool>,
    jaeger: Option<TraceContext>,
    sw8: Option<TraceContext>,
    /// A header passed the name filter: without one (nearly every request of most
    /// services) `finish` reads none of the fields above.
    offered: bool,
}

impl TraceHeaders {
    /// Offer one request header (name in any case; the value is trimmed here, so an
    /// HTTP/1 value may come with its optional whitespace and CR).
    #[inline]
    pub fn on_header(&mut self, name: &[u8], value: &[u8]) {
        // Called for every request header, and most are not trace headers: the length of
        // the name and its first letter (as bits of a table) reject nearly all of them
        // without a call. A letter's low five bits are the same in either case.
        const FIRST: [u32; 32] = {
            let (mut t, mut i) = ([0u32; 32], 0);
            while i < TRACE_HEADERS.len() {
                let n = TRACE_HEADERS[i].as_bytes();
                t[n.len()] |= 1 << (n[0] & 31);
                i += 1;
            }
            t
        };
        if let Some(&c) = name.first()
            && name.len() < 32
            && FIRST[name.len()] & (1 << (c & 31)) != 0
        {
            self.offered = true;
            self.on_header_named(name, value);
        }
    }

    fn on_header_named(&mut self, name: &[u8], value: &[u8]) {
        // Only names that passed `on_header`'s filter get here: nearly all are trace
        // headers, so the value is read before the name is known for sure.
        let Ok(v) = std::str::from_utf8(value) else {
            return;
        };
        let v = v.trim();
        // Which one, if any: one comparison each, chosen by the length.
        // (HTTP/2 names need not be tokens: a plain case-insensitive comparison.)
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        match name.len() {
            2 if is("b3") => self.b3 = parse_b3_single(v),
            3 if is("sw8") => self.sw8 = parse_sw8(v),
            10 if is("tracestate") => self.tracestate = Some(v.into()),
            11 if is("traceparent") => self.traceparent = parse_traceparent(v),
            11 if is("x-b3-spanid") => self.x_b3_span = hex_id::<8>(v),
            12 if is("x-b3-traceid") => self.x_b3_trace = hex_id::<16>(v),
            12 if is("x-b3-sampled") => {
                self.x_b3_sampled = Some(v == "1" || v.eq_ignore_ascii_case("true"))
            }
            13 if is("uber-trace-id") => self.jaeger = parse_jaeger(v),
            _ => {}
        }
    }

    // Inlined: a call would copy all of `self` (a few hundred bytes) to pass it.
    #[inline]
    pub fn finish(self) -> Option<TraceContext> {
        if !self.offered {
            return None;
        }
        if let Some(mut t) = self.traceparent {
            t.tracestate = self.tracestate;
            return Some(t);
        }
        if self.b3.is_some() {
            return self.b3;
        }
        if let (Some(trace_id), Some(parent_span_id)) = (self.x_b3_trace, self.x_b3_span) {
            return Some(TraceContext {
                trace_id,
                parent_span_id,
                sampled: self.x_b3_sampled,
                format: "b3",
                tracestate: None,
            });
        }
        self.jaeger.or(self.sw8)
    }
}

/// Hex id of N bytes; shorter hex is left-padded (B3 and Jaeger allow 64-bit trace ids).
/// All-zero ids are invalid.
fn hex_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.is_empty() || s.len() > N * 2 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{s:0>width$}", width = N * 2);
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&padded[i * 2..i * 2 + 2], 16).ok()?;
    }
    (out != [0u8; N]).then_some(out)
}

/// `00-<32 hex trace>-<16 hex parent>-<2 hex flags>`.
fn parse_traceparent(v: &str) -> Option<TraceContext> {
    let mut it = v.split('-');
    let (ver, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if ver.len() != 2 || ver == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    if ver == "00" && it.next().is_some() {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceContext {
        trace_id: hex_id(trace)?,
        parent_span_id: hex_id(span)?,
        sampled: Some(flags & 1 == 1),
        format: "traceparent",
        tracestate: None,
    })
}

/// `{trace}-{span}[-{sampled}[-{parent}]]`, or a lone sampling decision (no context).
fn parse_b3_single(v: &str) -> Option<TraceContext> {
    let mut it = v.split('-');
    let trace = it.next()?;
    let span = it.next()?;
    let sampled = it.next().map(|s| s == "1" || s == "d");
    Some(TraceContext {
        trace_id: hex_id(trace)?,
        parent_span_id: hex_id(span)?,
        sampled,
        format: "b3",
        tracestate: None,
    })
}

/// `{trace}:{span}:{parent}:{flags}` (hex, possibly shortened).
fn parse_jaeger(v: &str) -> Option<TraceContext> {
    let v = v.replace("%3A", ":").replace("%3a", ":");
    let mut it = v.split(':');
    let (trace, span, _parent, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceContext {
        trace_id: hex_id(trace)?,
        parent_span_id: hex_id(span)?,
        sampled: Some(flags & 1 == 1),
        format: "uber-trace-id",
        tracestate: None,
    })
}

/// SkyWalking v8: `{sample}-{traceId b64}-{segmentId b64}-{spanId}-{service}-...`. Its ids
/// are free-form strings, so the trace id is derived deterministically (FNV-1a 128-bit
/// folding) and the parent span id from the segment id and span number.
fn parse_sw8(v: &str) -> Option<TraceContext> {
    use base64::Engine;
    let mut it = v.split('-');
    let sample = it.next()?;
    let trace = base64::engine::general_purpose::STANDARD
        .decode(it.next()?)
        .ok()?;
    let segment = base64::engine::general_purpose::STANDARD
        .decode(it.next()?)
        .ok()?;
    let span: u64 = it.next()?.parse().ok()?;
    if trace.is_empty() {
        return None;
    }
    let h1 = fnv64(&trace, 0xcbf2_9ce4_8422_2325);
    let h2 = fnv64(&trace, 0x8422_2325_cbf2_9ce4);
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&h1.to_be_bytes());
    trace_id[8..].copy_from_slice(&h2.to_be_bytes());
    let parent = fnv64(&segment, 0xcbf2_9ce4_8422_2325) ^ span;
    Some(TraceContext {
        trace_id,
        parent_span_id: parent.to_be_bytes(),
        sampled: Some(sample == "1"),
        format: "sw8",
        tracestate: None,
    })
}

fn fnv64(b: &[u8], seed: u64) -> u64 {
    b.iter()
        .fold(seed, |h, &c| (h ^ c as u64).wrapping_mul(0x0100_0000_01b3))
}

/// How HTTP transactions (HTTP/1 and HTTP/2) become metrics and spans.
pub static HTTP_TELEMETRY: crate::proto::registry::Telemetry = {
    use crate::proto::registry::MetricAttr::*;
    crate::proto::registry::Telemetry {
        duration: Some([
            crate::stats::Metric::HttpServerDuration,
            crate::stats::Metric::HttpClientDuration,
        ]),
        metric_attrs: &[
            AttrOrOperation("http.request.method"),
            Resource("http.route"),
            Status("http.response.status_code"),
            Error,
            Const("network.protocol.name", "http"),
            Server,
        ],
        span_name: http_span_name,
        attributes: &[
            "http.request.method",
            "http.route",
            "url.path",
            "url.query",
            "http.request.header.*",
            "http.request.body.size",
            "http.response.body.size",
            "http.response.status_code",
            "network.protocol.version",
            "server.address",
            "user_agent.original",
            "podtap.http.body_until_close",
            "podtap.http.interim_status",
            "podtap.http.upgrade",
            "podtap.http2.error_code",
            "podtap.http2.pushed",
        ],
        base: None,
    }
};

/// `GET /users/{id}`: the method and the route (the method alone without one).
fn http_span_name(tx: &Transaction) -> String {
    let method = match tx.attr("http.request.method") {
        Some(super::AttrValue::Str(m)) => m.as_str(),
        _ => tx.operation.as_str(),
    };
    if tx.resource.is_empty() {
        method.to_string()
    } else {
        format!("{method} {}", tx.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_identifiers() {
        let cases = [
            ("/users/123/orders/9f8a0c1e", "/users/{id}/orders/{id}"),
            ("/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}"),
            ("/blob/5d41402abc4b2a76b9719d911017c592", "/blob/{id}"),
            ("/t/eyJhbGciOiJIUzI1NiJ9abc123", "/t/{id}"),
            ("/api/v1/health", "/api/v1/health"),
            ("/", "/"),
            ("/users/42/", "/users/{id}/"),
            ("/static/deadbeef", "/static/deadbeef"),
            ("/a%20b/7", "/a%20b/{id}"),
            ("/u/abcdefab-abcd-abcd-abcd-abcdefabcdef", "/u/{id}"),
            ("/small.txt", "/small.txt"),
            ("no-slash", "no-slash"),
            ("/a//b/", "/a//b/"),
        ];
        for (p, want) in cases {
            assert_eq!(template(p), want, "{p}");
        }
    }

    #[test]
    fn custom_rules_apply_first() {
        let mut cfg = HttpConfig::default();
        cfg.route.rules.push(RouteRule {
            pattern: "^/u/[^/]+".into(),
            replace: "/u/{user}".into(),
        });
        let s = HttpSettings::new(cfg).unwrap();
        assert_eq!(s.route("/u/alice/posts/7"), "/u/{user}/posts/{id}");
    }

    #[test]
    fn route_cache_gives_the_same_routes() {
        let s = HttpSettings::default();
        let mut cache = RouteCache::default();
        for path in [
            "/users/1",
            "/users/1",
            "/users/2?x",
            "/a/b",
            "/users/1",
            "/",
        ] {
            let (mut a, mut b) = (Transaction::default(), Transaction::default());
            s.finish_request(&mut a, "GET", path);
            s.finish_request_cached(&mut b, "GET", path, &mut cache);
            assert_eq!((&a.resource, &a.attrs), (&b.resource, &b.attrs), "{path}");
        }
        let long = format!("/{}", "x".repeat(40));
        s.finish_request_cached(&mut Transaction::default(), "GET", &long, &mut cache);
        assert_eq!(cache.last.as_ref().map(|(p, _)| p.as_str()), Some("/"));
    }

    #[test]
    fn query_dropped_by_default_and_redacted_when_kept() {
        let mut tx = Transaction::default();
        HttpSettings::default().finish_request(&mut tx, "GET", "/search/42?q=x&token=abc");
        assert_eq!(tx.resource, "/search/{id}");
        assert!(tx.attr("url.query").is_none());
        let cfg = HttpConfig {
            keep_query: true,
            ..Default::default()
        };
        let mut tx = Transaction::default();
        HttpSettings::new(cfg).unwrap().finish_request(
            &mut tx,
            "GET",
            "http://h:8080/s?q=x&Token=abc",
        );
        assert_eq!(
            tx.attr("url.path"),
            Some(&crate::proto::AttrValue::Str("/s".into()))
        );
        assert_eq!(
            tx.attr("url.query"),
            Some(&crate::proto::AttrValue::Str("q=x&Token=REDACTED".into()))
        );
    }

    #[test]
    fn captured_headers_redact_secrets() {
        let cfg = HttpConfig {
            capture_headers: vec!["X-Request-Id".into(), "Authorization".into()],
            ..Default::default()
        };
        let s = HttpSettings::new(cfg).unwrap();
        let mut tx = Transaction::default();
        s.capture_header(&mut tx, "x-request-id", b"r-1");
        s.capture_header(&mut tx, "authorization", b"Bearer secret");
        s.capture_header(&mut tx, "user-agent", b"curl");
        assert_eq!(
            tx.attr("http.request.header.x-request-id"),
            Some(&crate::proto::AttrValue::Str("r-1".into()))
        );
        assert_eq!(
            tx.attr("http.request.header.authorization"),
            Some(&crate::proto::AttrValue::Str("[REDACTED]".into()))
        );
        assert_eq!(tx.attrs.len(), 2);
    }

    #[test]
    fn trace_context_formats() {
        let mut t = TraceHeaders::default();
        t.on_header(
            b"TraceParent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        t.on_header(b"tracestate", b"rojo=00f067aa0ba902b7");
        t.on_header(
            b"b3",
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        );
        let c = t.finish().unwrap();
        assert_eq!(c.format, "traceparent");
        assert_eq!(c.trace_id[..2], [0x4b, 0xf9]);
        assert_eq!(c.parent_span_id[7], 0xb7);
        assert_eq!(c.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));

        let mut t = TraceHeaders::default();
        t.on_header(b"X-B3-TraceId", b"463ac35c9f6413ad");
        t.on_header(b"X-B3-SpanId", b"a2fb4a1d1a96d312");
        t.on_header(b"X-B3-Sampled", b"1");
        let c = t.finish().unwrap();
        assert_eq!(
            (c.format, c.trace_id[8], c.trace_id[0], c.sampled),
            ("b3", 0x46, 0, Some(true))
        );

        let mut t = TraceHeaders::default();
        t.on_header(
            b"uber-trace-id",
            b"5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174:0:1",
        );
        assert_eq!(t.finish().unwrap().format, "uber-trace-id");

        let mut t = TraceHeaders::default();
        t.on_header(b"sw8", b"1-MWYyZDRiZjQ3YmY3MTFlYWI3OTRhY2RlNDgwMDExMjI=-NWU4YTQ2OGU=-3-c2VydmljZQ==-aW5zdGFuY2U=-L2FwaQ==-bG9jYWxob3N0OjgwODA=");
        let c = t.finish().unwrap();
        assert_eq!((c.format, c.sampled), ("sw8", Some(true)));

        // Invalid values are ignored.
        for (n, v) in [
            (
                &b"traceparent"[..],
                &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            ),
            (b"traceparent", b"00-xyz-00f067aa0ba902b7-01"),
            (b"b3", b"1"),
            (b"uber-trace-id", b"abc"),
            (b"sw8", b"garbage"),
        ] {
            let mut t = TraceHeaders::default();
            t.on_header(n, v);
            assert_eq!(t.finish(), None, "{}", String::from_utf8_lossy(v));
        }
    }
}
