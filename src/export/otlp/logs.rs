//! OTLP log records from anomaly events: one record per event, `event_name` and the
//! `event.name` attribute `podtap.<kind>`, severity WARN, the summary as body, and the
//! attributes the event's JSON line carries ([`crate::anomaly::engine::Event::visit`]).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use std::collections::BTreeMap;

use super::spans::{kv_bool, kv_int, kv_str, scope};
use crate::anomaly::engine::Event;
use crate::export::jsonl::Field;
use crate::proto::AttrValue;

/// The log record of `e`, observed at `now_ns`.
pub fn record(e: &Event, now_ns: u64) -> LogRecord {
    let mut attributes = Vec::with_capacity(24);
    e.visit(|prefix, k, v| {
        let key = format!("{prefix}{k}");
        attributes.push(match v {
            Field::Str(s) => kv_str(&key, s),
            Field::Int(i) => kv_int(&key, i),
            Field::Ip(a) => kv_str(&key, &a.to_string()),
            Field::Attr(AttrValue::Str(s)) => kv_str(&key, s),
            Field::Attr(AttrValue::Int(i)) => kv_int(&key, *i),
            Field::Attr(AttrValue::Bool(b)) => kv_bool(&key, *b),
        });
    });
    LogRecord {
        time_unix_nano: e.signal.ts.as_nanos(),
        observed_time_unix_nano: now_ns,
        severity_number: SeverityNumber::Warn as i32,
        severity_text: "WARN".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(e.summary())),
        }),
        attributes,
        event_name: e.signal.kind.event_name().into(),
        ..Default::default()
    }
}

/// One request for `records`, under podtap's own resource.
pub fn request(
    records: Vec<LogRecord>,
    service: &str,
    extra: &BTreeMap<String, String>,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(super::resource::resource(service, extra)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: crate::stats::metrics::SCHEMA_URL.into(),
        }],
    }
}
