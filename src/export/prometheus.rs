//! Prometheus text exposition (format 0.0.4) of a metric store: the same series OTLP
//! carries, cumulative, with names converted the Prometheus way.

use std::fmt::Write;

use crate::stats::metrics::{prometheus_name, sanitize};
use crate::stats::{Kind, Metric, Store, Val, Value};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One of podtap's own series (exporter counters and gauges).
pub struct SelfMetric {
    pub name: &'static str,
    pub help: &'static str,
    pub gauge: bool,
    /// Label pairs and value per series.
    pub series: Vec<(Vec<(&'static str, String)>, u64)>,
}

fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(attrs: &[(&'static str, Val)], le: Option<f64>, out: &mut String) {
    if attrs.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in attrs {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&sanitize(k));
        out.push_str("=\"");
        escape(&v.to_string(), out);
        out.push('"');
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        out.push_str("le=\"");
        if le.is_infinite() {
            out.push_str("+Inf");
        } else {
            let _ = write!(out, "{le}");
        }
        out.push('"');
    }
    out.push('}');
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Render `store` and podtap's own series.
pub fn render(store: &Store, own: &[SelfMetric]) -> String {
    let mut out = String::with_capacity(4096);
    let series = store.sorted();
    let mut last: Option<Metric> = None;
    for (key, value) in series {
        let def = key.metric.def();
        let name = prometheus_name(def);
        if last != Some(key.metric) {
            last = Some(key.metric);
            let kind = match def.kind {
                Kind::Counter => "counter",
                Kind::Histogram => "histogram",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}", def.description);
            let _ = writeln!(out, "# TYPE {name} {kind}");
        }
        match value {
            Value::Counter(c) => {
                out.push_str(&name);
                labels(&key.attrs, None, &mut out);
                let _ = writeln!(out, " {c}");
            }
            Value::Gauge(g) => {
                out.push_str(&name);
                labels(&key.attrs, None, &mut out);
                let _ = writeln!(out, " {g}");
            }
            Value::Histogram(h) => {
                for (le, n) in h.cumulative_buckets() {
                    let _ = write!(out, "{name}_bucket");
                    labels(&key.attrs, Some(le), &mut out);
                    let _ = writeln!(out, " {n}");
                }
                let _ = write!(out, "{name}_sum");
                labels(&key.attrs, None, &mut out);
                let _ = writeln!(out, " {}", float(h.sum));
                let _ = write!(out, "{name}_count");
                labels(&key.attrs, None, &mut out);
                let _ = writeln!(out, " {}", h.count);
            }
        }
    }
    for m in own {
        let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
        let _ = writeln!(
            out,
            "# TYPE {} {}",
            m.name,
            if m.gauge { "gauge" } else { "counter" }
        );
        for (ls, v) in &m.series {
            out.push_str(m.name);
            if !ls.is_empty() {
                out.push('{');
                for (i, (k, val)) in ls.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"");
                    escape(val, &mut out);
                    out.push('"');
                }
                out.push('}');
            }
            let _ = writeln!(out, " {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::HistogramSpec;
    use std::sync::Arc;

    #[test]
    fn histograms_and_counters_in_text_format() {
        let mut s = Store::new(HistogramSpec::Explicit(Arc::from(&[0.1, 1.0][..])), 10);
        let a = vec![
            ("http.request.method", Val::Str("GET".into())),
            ("http.route", Val::Str("/a\"b".into())),
            ("http.response.status_code", Val::Int(200)),
        ];
        s.observe(Metric::HttpServerDuration, &a, 0.05);
        s.observe(Metric::HttpServerDuration, &a, 0.5);
        s.add(
            Metric::FlowIo,
            &[("podtap.flow.direction", Val::Str("client_to_server".into()))],
            42,
        );
        let own = [SelfMetric {
            name: "podtap_export_spans_total",
            help: "Spans by outcome",
            gauge: false,
            series: vec![(vec![("outcome", "dropped".into())], 3)],
        }];
        let text = render(&s, &own);
        let expected = "\
# HELP http_server_request_duration_seconds Duration of HTTP server requests, observed on the wire
# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/a\\\"b\",http_response_status_code=\"200\",le=\"0.1\"} 1
http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/a\\\"b\",http_response_status_code=\"200\",le=\"1\"} 2
http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/a\\\"b\",http_response_status_code=\"200\",le=\"+Inf\"} 2
http_server_request_duration_seconds_sum{http_request_method=\"GET\",http_route=\"/a\\\"b\",http_response_status_code=\"200\"} 0.55
http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/a\\\"b\",http_response_status_code=\"200\"} 2
# HELP podtap_flow_io_bytes_total Bytes on the wire per flow edge and direction
# TYPE podtap_flow_io_bytes_total counter
podtap_flow_io_bytes_total{podtap_flow_direction=\"client_to_server\"} 42
# HELP podtap_export_spans_total Spans by outcome
# TYPE podtap_export_spans_total counter
podtap_export_spans_total{outcome=\"dropped\"} 3
";
        assert_eq!(text, expected);
    }
}
