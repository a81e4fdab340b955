//! The decoder registry: what a protocol decoder provides ([`ProtocolDecoder`]), and the
//! macro that turns the one list of decoders in `proto/mod.rs` into everything that has
//! to know all of them:
//!
//! - [`Protocol`](super::Protocol), the protocols podtap reports (`podtap.protocol`);
//! - [`Decoder`](super::Decoder), the static dispatch over the decoders (no trait objects
//!   on the packet path), with `protocol()` and `drain_stats()`;
//! - [`ProtocolsConfig`](super::ProtocolsConfig), one `[protocols.<name>]` section per
//!   decoder: the `enabled` switch, the `ports` hint and the decoder's own settings;
//! - [`DecoderFactory`](super::DecoderFactory), which prepares each decoder's shared
//!   state once per worker and builds decoders for flows;
//! - detection ([`probe_all`](super::probe_all)), a loop over the decoders' probes;
//! - the telemetry lookup ([`telemetry`](super::telemetry)).
//!
//! Adding a decoder is a folder `src/proto/<name>/` that implements the trait (its own
//! events declared with `decoder_events!`, its attributes, errors and counters in its
//! `SCHEMA.md`, its golden captures in `golden/`), one line in the list, and its section
//! in `config/podtap.toml`; `tests/decoder_seam.rs` holds every decoder to that.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::detect::Transport;
use super::{Confidence, Direction, L7Parser, Protocol, Transaction};
use crate::events::{DecoderCounters, DecoderEvent};
use crate::stats::Metric;

/// The first bytes a probe looks at.
#[derive(Clone, Copy, Debug)]
pub struct Probe<'a> {
    /// The first bytes seen of one direction (a whole datagram for UDP).
    pub bytes: &'a [u8],
    pub dir: Direction,
    pub transport: Transport,
    pub server_port: u16,
    /// The server port is one of this protocol's ports (built in or configured).
    pub hinted: bool,
}

/// A protocol decoder, as the registry sees it. The decoder itself is an [`L7Parser`]: the
/// state machine of one connection; this adds what the registry wires in.
pub trait ProtocolDecoder: L7Parser + Sized {
    /// The decoder's own settings, under `[protocols.<name>]` beside `enabled` and
    /// `ports`.
    type Config: Clone + Default + std::fmt::Debug + DeserializeOwned;
    /// What every connection's decoder shares, prepared once per worker from the
    /// configuration (compiled route rules, say).
    type Shared;
    /// Server ports that hint at this protocol (`ports` adds more).
    const PORTS: &'static [u16];
    /// Transports it decodes.
    const TRANSPORTS: &'static [Transport];
    /// Its own drop, error and notable events (declared with `decoder_events!` in its
    /// folder; `NoEvents` when the core ones say it all).
    type Events: DecoderEvent;

    /// Checks serde cannot express: the message, for `protocols.<name>`.
    fn validate(_cfg: &Self::Config) -> Result<(), String> {
        Ok(())
    }
    /// Prepare the shared state from every decoder's settings (a decoder may build on
    /// another's: HTTP/2 uses the HTTP settings).
    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String>;
    /// How sure the decoder is that a flow with these first bytes speaks its protocol.
    fn probe(p: &Probe<'_>) -> Confidence;
    /// A decoder for one connection.
    fn new(shared: &Self::Shared, transport: Transport) -> Self;
    /// The protocol its transactions report now (HTTP/2 turns to gRPC on seeing it).
    fn protocol(&self) -> Protocol;
    /// Fold its drop/error counts since the last call into `c`.
    fn drain_stats(&mut self, c: &mut DecoderCounters<'_, Self::Events>);
    /// How a transaction of protocol `p` (one of this decoder's) becomes telemetry.
    fn telemetry(p: Protocol) -> &'static Telemetry;
    /// A counter the transaction adds to besides its duration (messages a producer sent,
    /// say), on the same series attributes: the metric and how much. Default none.
    fn counter(_tx: &Transaction) -> Option<(Metric, u64)> {
        None
    }
}

/// For `validate`: the first of these bounds that is 0 (which would hold or accept
/// nothing), as the error naming it.
pub fn nonzero(bounds: &[(&str, u64)]) -> Result<(), String> {
    match bounds.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(format!(
            "{key}: must be at least 1 (0 would decode nothing)"
        )),
        None => Ok(()),
    }
}

/// One `[protocols.<name>]` section: the switch, the port hint, and the decoder's own
/// settings beside them.
#[derive(Clone, Debug, Default)]
pub struct Section<C> {
    /// Decode this protocol at all. Default true.
    pub enabled: bool,
    /// Server ports hinting at it, besides the built-in ones. Default none.
    pub ports: Vec<u16>,
    pub settings: C,
}

impl<C: Default> Section<C> {
    pub fn new() -> Self {
        Section {
            enabled: true,
            ports: Vec::new(),
            settings: C::default(),
        }
    }
}

/// `enabled` and `ports` are read here; every other key goes to the decoder's settings,
/// which reject keys they do not know (serde cannot combine `flatten` with that).
impl<'de, C: DeserializeOwned + Default> Deserialize<'de> for Section<C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let enabled = match table.remove("enabled") {
            Some(v) => {
                bool::deserialize(v).map_err(|e| D::Error::custom(format!("enabled: {e}")))?
            }
            None => true,
        };
        let ports = match table.remove("ports") {
            Some(v) => {
                Vec::<u16>::deserialize(v).map_err(|e| D::Error::custom(format!("ports: {e}")))?
            }
            None => Vec::new(),
        };
        let settings =
            C::deserialize(toml::Value::Table(table)).map_err(|e| D::Error::custom(e.message()))?;
        Ok(Section {
            enabled,
            ports,
            settings,
        })
    }
}

/// How a protocol's transactions become metrics and spans. JSON lines and span attributes
/// are the transaction's own attributes; this adds the metric, the series' attributes and
/// the span's name, and lists the attributes the decoder sets so the schema can be held
/// against it (`docs/SCHEMA.md`).
pub struct Telemetry {
    /// The duration histogram of a transaction seen at the server's end (or a single
    /// tap), and at the client's. None: no duration metric (a TLS handshake is a property
    /// of its flow, not a call).
    pub duration: Option<[Metric; 2]>,
    /// The attributes of its metric series, in order (both ends' pods follow).
    pub metric_attrs: &'static [MetricAttr],
    /// The span name: low cardinality (`GET /users/{id}`, `QUERY A`).
    pub span_name: fn(&Transaction) -> String,
    /// Every attribute the decoder may set on a transaction, besides those of `base`.
    pub attributes: &'static [&'static str],
    /// The mapping whose attributes these transactions carry too (gRPC: HTTP's).
    pub base: Option<&'static Telemetry>,
}

impl Telemetry {
    /// Whether the decoder declares attribute `key` (a `prefix.*` entry covers a family).
    pub fn declares(&self, key: &str) -> bool {
        self.attributes.iter().any(|d| match d.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => *d == key,
        }) || self.base.is_some_and(|b| b.declares(key))
    }

    /// The declared attributes, `base`'s included.
    pub fn all_attributes(&self) -> Vec<&'static str> {
        let mut v = self.base.map_or(Vec::new(), |b| b.all_attributes());
        v.extend_from_slice(self.attributes);
        v
    }
}

/// The database conventions' duration metric: `db.client.operation.duration`, whichever
/// end a command was seen at (the conventions define no server-side one).
pub const DB_DURATION: Option<[Metric; 2]> =
    Some([Metric::DbClientDuration, Metric::DbClientDuration]);

/// The attributes of a database command's series: the system, the operation, the
/// response code and error, the server.
pub const DB_METRIC_ATTRS: &[MetricAttr] = &[
    MetricAttr::ProtocolName("db.system.name"),
    MetricAttr::Operation("db.operation.name"),
    MetricAttr::Attr("db.response.status_code"),
    MetricAttr::Error,
    MetricAttr::Server,
];

/// A database command's span name, as the database conventions have it: its
/// `db.query.summary`, else its operation, else the system (`system`).
pub fn db_span_name(tx: &Transaction, system: &str) -> String {
    match tx.attr("db.query.summary") {
        Some(super::AttrValue::Str(s)) if !s.is_empty() => s.to_string(),
        _ if !tx.operation.is_empty() => tx.operation.to_string(),
        _ => system.to_string(),
    }
}

/// Where a metric series attribute comes from.
#[derive(Clone, Copy, Debug)]
pub enum MetricAttr {
    /// The transaction's attribute of that name, when it has one.
    Attr(&'static str),
    /// The transaction's attribute of that name, else its operation.
    AttrOrOperation(&'static str),
    /// The operation, under this name.
    Operation(&'static str),
    /// The resource, under this name, when not empty.
    Resource(&'static str),
    /// The status, under this name, when there is one.
    Status(&'static str),
    /// A constant.
    Const(&'static str, &'static str),
    /// The protocol's name, under this key (`db.system.name`).
    ProtocolName(&'static str),
    /// `error.type`, when the transaction failed.
    Error,
    /// `server.address` and `server.port`.
    Server,
}

/// Expands the list of decoders in `proto/mod.rs`. Each line:
/// `Variant = "section" => module::Type [ProtocolVariant = "name", ...],`
/// where `module` is the decoder's folder (declared here) and the protocols are those the
/// decoder reports (the first is its own).
macro_rules! decoders {
    ($( $variant:ident = $section:literal => $module:ident :: $ty:ident [ $( $proto:ident = $pname:literal ),+ ] ),* $(,)?) => {
        // Each decoder's folder, `src/proto/<module>/`.
        $( pub mod $module; )*

        /// Application protocols podtap decodes. `as_str` is the `podtap.protocol` value.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Protocol {
            /// A stream no decoder claimed.
            #[default]
            Unknown,
            $( $( $proto, )+ )*
        }

        impl Protocol {
            /// Every protocol a decoder reports.
            pub const ALL: &'static [Protocol] = &[ $( $( Protocol::$proto, )+ )* ];

            pub fn as_str(self) -> &'static str {
                match self {
                    Protocol::Unknown => "unknown",
                    $( $( Protocol::$proto => $pname, )+ )*
                }
            }
        }

        /// Which decoder: what detection found.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum DecoderKind { $( $variant, )* }

        impl DecoderKind {
            pub const ALL: &'static [DecoderKind] = &[ $( DecoderKind::$variant, )* ];

            /// The `[protocols.<name>]` section of the decoder.
            pub fn section(self) -> &'static str {
                match self { $( DecoderKind::$variant => $section, )* }
            }
        }

        /// Each decoder's own events, in the order of the list (the event table numbers
        /// them after the core events).
        pub const DECODER_EVENT_TABLES: &[&[$crate::events::EventInfo]] = &[
            $( <<$module::$ty as $crate::proto::registry::ProtocolDecoder>::Events
                as $crate::events::DecoderEvent>::INFO, )*
        ];

        /// How many events the decoders declare, all together.
        pub const DECODER_EVENTS: usize = 0 $( + <<$module::$ty as $crate::proto::registry::ProtocolDecoder>::Events
            as $crate::events::DecoderEvent>::INFO.len() )*;

        /// Static dispatch over the decoders (no trait objects on the packet path).
        pub enum Decoder {
            /// Streams no decoder claimed: counted, not decoded.
            StreamStats(StreamStats),
            $( $variant($module::$ty), )*
        }

        impl Decoder {
            pub fn protocol(&self) -> Protocol {
                match self {
                    Decoder::StreamStats(_) => Protocol::Unknown,
                    $( Decoder::$variant(p) => $crate::proto::registry::ProtocolDecoder::protocol(p), )*
                }
            }

            pub fn as_stream_stats(&self) -> Option<&StreamStats> {
                match self {
                    Decoder::StreamStats(s) => Some(s),
                    _ => None,
                }
            }

            /// Fold the decoder's own drop/error counts (since the last call) into `c`.
            pub fn drain_stats(&mut self, c: &mut Counters) {
                match self {
                    Decoder::StreamStats(_) => {}
                    $( Decoder::$variant(p) => $crate::proto::registry::ProtocolDecoder::drain_stats(
                        p,
                        &mut $crate::events::DecoderCounters::new(
                            c,
                            const { $crate::events::decoder_event_offset(DecoderKind::$variant as usize) },
                        ),
                    ), )*
                }
            }
        }

        // The dispatch is inlined into the packet path, where each chunk comes through
        // it: a call layer less per packet, for every protocol.
        impl L7Parser for Decoder {
            #[inline(always)]
            fn on_data(
                &mut self,
                dir: Direction,
                bytes: &[u8],
                ts: Timestamp,
                out: &mut Vec<Transaction>,
            ) -> Progress {
                match self {
                    Decoder::StreamStats(p) => p.on_data(dir, bytes, ts, out),
                    $( Decoder::$variant(p) => p.on_data(dir, bytes, ts, out), )*
                }
            }
            #[inline(always)]
            fn on_data_tallied(
                &mut self,
                dir: Direction,
                bytes: &[u8],
                ts: Timestamp,
                out: &mut Vec<Transaction>,
                tally: &mut $crate::proto::Tally,
            ) -> Progress {
                match self {
                    Decoder::StreamStats(p) => p.on_data(dir, bytes, ts, out),
                    $( Decoder::$variant(p) => p.on_data_tallied(dir, bytes, ts, out, tally), )*
                }
            }
            fn on_gap(&mut self, dir: Direction, missing: u32) {
                match self {
                    Decoder::StreamStats(p) => p.on_gap(dir, missing),
                    $( Decoder::$variant(p) => p.on_gap(dir, missing), )*
                }
            }
            fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
                match self {
                    Decoder::StreamStats(p) => p.on_close(ts, reset, out),
                    $( Decoder::$variant(p) => p.on_close(ts, reset, out), )*
                }
            }
            fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
                match self {
                    Decoder::StreamStats(p) => p.on_tick(now, timeout_ns, out),
                    $( Decoder::$variant(p) => p.on_tick(now, timeout_ns, out), )*
                }
            }
            #[inline(always)]
            fn heap_bytes(&self) -> usize {
                match self {
                    Decoder::StreamStats(p) => p.heap_bytes(),
                    $( Decoder::$variant(p) => p.heap_bytes(), )*
                }
            }
        }

        /// `[protocols]`: the request timeout, and one section per decoder.
        #[derive(Clone, Debug, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ProtocolsConfig {
            /// A request with no response for this long is reported incomplete
            /// (`no_response`, `error.type = "timeout"`). Default 30 s.
            pub transaction_timeout_secs: u64,
            /// Bytes of heap each worker's decoders may hold outside their flow slots
            /// (pending requests, HPACK tables, statement maps, split messages). Beyond
            /// it the connection whose decoder grew is no longer decoded: its pending
            /// requests are reported incomplete (`memory`), counted in `l7.memory_shed`.
            /// Default 268435456 (256 MiB); derived from `memory.max_bytes` when set.
            pub max_worker_heap_bytes: usize,
            $(
                #[serde(rename = $section)]
                pub $module: $crate::proto::registry::Section<
                    <$module::$ty as $crate::proto::registry::ProtocolDecoder>::Config,
                >,
            )*
        }

        impl Default for ProtocolsConfig {
            fn default() -> Self {
                ProtocolsConfig {
                    transaction_timeout_secs: 30,
                    max_worker_heap_bytes: 256 << 20,
                    $( $module: $crate::proto::registry::Section::new(), )*
                }
            }
        }

        impl ProtocolsConfig {
            /// Is the decoder of `k` switched on?
            pub fn enabled(&self, k: DecoderKind) -> bool {
                match k { $( DecoderKind::$variant => self.$module.enabled, )* }
            }

            /// The decoders' own checks, with the key they concern.
            pub fn validate(&self) -> Result<(), (&'static str, String)> {
                use $crate::proto::registry::ProtocolDecoder;
                if self.max_worker_heap_bytes == 0 {
                    return Err(("protocols.max_worker_heap_bytes", "must be at least 1".into()));
                }
                $(
                    <$module::$ty as ProtocolDecoder>::validate(&self.$module.settings)
                        .map_err(|m| (concat!("protocols.", $section), m))?;
                )*
                Ok(())
            }
        }

        /// Builds decoders from the configuration: each decoder's shared state is prepared
        /// once (one factory per worker).
        pub struct DecoderFactory {
            pub protocols: ProtocolsConfig,
            $( pub $module: <$module::$ty as $crate::proto::registry::ProtocolDecoder>::Shared, )*
        }

        impl DecoderFactory {
            /// Fails only on settings `ProtocolsConfig::validate` would have rejected.
            pub fn new(protocols: &ProtocolsConfig) -> Result<Self, String> {
                use $crate::proto::registry::ProtocolDecoder;
                Ok(DecoderFactory {
                    protocols: protocols.clone(),
                    $( $module: <$module::$ty as ProtocolDecoder>::prepare(protocols)
                        .map_err(|m| format!("protocols.{}: {m}", $section))?, )*
                })
            }

            /// A decoder of kind `k` for a flow over `transport`, if it decodes that
            /// transport.
            pub fn make(&self, k: DecoderKind, transport: Transport) -> Option<Decoder> {
                use $crate::proto::registry::ProtocolDecoder;
                match k {
                    $( DecoderKind::$variant => <$module::$ty as ProtocolDecoder>::TRANSPORTS
                        .contains(&transport)
                        .then(|| Decoder::$variant(<$module::$ty as ProtocolDecoder>::new(&self.$module, transport))), )*
                }
            }
        }

        impl Default for DecoderFactory {
            fn default() -> Self {
                DecoderFactory::new(&ProtocolsConfig::default())
                    .expect("the default settings are valid")
            }
        }

        /// Ask every enabled decoder's probe about a flow's first bytes: the surest
        /// answer (the first decoder of the list on a tie), and whether any probe needs
        /// more bytes to answer.
        pub fn probe_all(
            bytes: &[u8],
            dir: Direction,
            transport: Transport,
            server_port: u16,
            cfg: &ProtocolsConfig,
        ) -> (Confidence, Option<DecoderKind>, bool) {
            use $crate::proto::registry::{Probe, ProtocolDecoder};
            let mut best = (Confidence::No, None);
            let mut more = false;
            $(
                if cfg.$module.enabled && <$module::$ty as ProtocolDecoder>::TRANSPORTS.contains(&transport) {
                    let hinted = <$module::$ty as ProtocolDecoder>::PORTS.contains(&server_port)
                        || cfg.$module.ports.contains(&server_port);
                    let c = <$module::$ty as ProtocolDecoder>::probe(&Probe {
                        bytes, dir, transport, server_port, hinted,
                    });
                    more |= c == Confidence::NeedMore;
                    if c > best.0 && c > Confidence::NeedMore {
                        best = (c, Some(DecoderKind::$variant));
                    }
                }
            )*
            (best.0, best.1, more)
        }

        /// Ask decoder `k`'s probe alone about `bytes`.
        pub fn probe_kind(
            k: DecoderKind,
            bytes: &[u8],
            dir: Direction,
            transport: Transport,
            server_port: u16,
            cfg: &ProtocolsConfig,
        ) -> Confidence {
            use $crate::proto::registry::{Probe, ProtocolDecoder};
            match k {
                $( DecoderKind::$variant => {
                    let hinted = <$module::$ty as ProtocolDecoder>::PORTS.contains(&server_port)
                        || cfg.$module.ports.contains(&server_port);
                    <$module::$ty as ProtocolDecoder>::probe(&Probe {
                        bytes, dir, transport, server_port, hinted,
                    })
                } )*
            }
        }

        /// The counter a transaction adds to besides its duration, if its decoder has one.
        pub fn counter(tx: &Transaction) -> Option<($crate::stats::Metric, u64)> {
            use $crate::proto::registry::ProtocolDecoder;
            match tx.protocol {
                Protocol::Unknown => None,
                $( $( Protocol::$proto => <$module::$ty as ProtocolDecoder>::counter(tx), )+ )*
            }
        }

        /// How transactions of `p` become metrics and spans (None for `Unknown`).
        pub fn telemetry(p: Protocol) -> Option<&'static $crate::proto::registry::Telemetry> {
            use $crate::proto::registry::ProtocolDecoder;
            match p {
                Protocol::Unknown => None,
                $( $( Protocol::$proto => Some(<$module::$ty as ProtocolDecoder>::telemetry(p)), )+ )*
            }
        }
    };
}

pub(crate) use decoders;
