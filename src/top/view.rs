//! The tables of a `top` snapshot: their columns once, drawn by ratatui on a terminal and
//! as plain text for `--once`.

use crate::stats::top::{EdgeRow, EndpointRow, PodRow, RowStats, SortKey, TopSnapshot};

/// One column: its header, its width, and the sort key it shows (if any).
pub struct Column {
    pub header: &'static str,
    pub width: u16,
    pub sort: Option<SortKey>,
}

const fn col(header: &'static str, width: u16, sort: Option<SortKey>) -> Column {
    Column {
        header,
        width,
        sort,
    }
}

/// A table: its title, its columns, its rows as cells.
pub struct Table {
    pub title: String,
    pub columns: &'static [Column],
    pub rows: Vec<Vec<String>>,
}

const REQ: Column = col("REQ/S", 9, Some(SortKey::Rate));
const ERR: Column = col("ERR%", 6, Some(SortKey::Errors));
const P50: Column = col("P50", 9, Some(SortKey::P50));
const P99: Column = col("P99", 9, Some(SortKey::P99));
const BYTES: Column = col("BYTES/S", 9, Some(SortKey::Bytes));
const RETX: Column = col("RETX/S", 7, Some(SortKey::Retransmits));
const RST: Column = col("RST/S", 7, Some(SortKey::Resets));
const TOTAL: Column = col("REQS", 9, None);

/// Pods: the calls they serve (IN), those they make (OUT), the traffic of both.
static POD_COLS: [Column; 10] = [
    col("POD", 32, Some(SortKey::Name)),
    col("IN/S", 9, Some(SortKey::Rate)),
    col("OUT/S", 9, None),
    ERR,
    P50,
    P99,
    BYTES,
    RETX,
    RST,
    col("IN REQS", 9, None),
];
static EDGE_COLS: [Column; 12] = [
    col("CLIENT", 30, Some(SortKey::Name)),
    col("SERVER", 30, None),
    col("PORT", 6, None),
    col("PROTO", 10, None),
    REQ,
    ERR,
    P50,
    P99,
    BYTES,
    RETX,
    RST,
    TOTAL,
];
/// Endpoints have no flow columns: a connection's bytes are not split by operation.
static ENDPOINT_COLS: [Column; 9] = [
    col("SERVER", 30, Some(SortKey::Name)),
    col("PORT", 6, None),
    col("PROTO", 10, None),
    col("OPERATION", 36, None),
    REQ,
    ERR,
    P50,
    P99,
    TOTAL,
];

/// `12.3`, `0`, `-`.
fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// Milliseconds with three significant digits: `0.052ms`, `1.25ms`, `340ms`.
fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}ms"),
        Some(v) if v >= 10.0 => format!("{v:.1}ms"),
        Some(v) if v >= 1.0 => format!("{v:.2}ms"),
        Some(v) => format!("{v:.3}ms"),
    }
}

/// Bytes per second in powers of 1024: `812`, `12.4K`, `3.1M`.
fn bytes(v: f64) -> String {
    let mut v = v;
    for unit in ["", "K", "M", "G"] {
        if v < 1024.0 {
            return if unit.is_empty() {
                format!("{v:.0}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1}T")
}

/// ERR%, P50, P99.
fn call_cells(s: &RowStats) -> [String; 3] {
    [
        format!("{:.1}", s.error_ratio * 100.0),
        ms(s.p50_ms),
        ms(s.p99_ms),
    ]
}

/// BYTES/S, RETX/S, RST/S.
fn flow_cells(s: &RowStats) -> [String; 3] {
    [
        bytes(s.bytes_per_sec),
        rate(s.retransmits_per_sec),
        rate(s.resets_per_sec),
    ]
}

fn pod_row(r: &PodRow) -> Vec<String> {
    let s = &r.stats;
    let mut v = vec![
        r.pod.label(),
        rate(s.requests_per_sec),
        rate(r.requests_out_per_sec),
    ];
    v.extend(call_cells(s));
    v.extend(flow_cells(s));
    v.push(s.requests.to_string());
    v
}

fn edge_row(r: &EdgeRow) -> Vec<String> {
    let s = &r.stats;
    let mut v = vec![
        r.client.label(),
        r.server.label(),
        r.port.to_string(),
        r.protocol.clone(),
        rate(s.requests_per_sec),
    ];
    v.extend(call_cells(s));
    v.extend(flow_cells(s));
    v.push(s.requests.to_string());
    v
}

fn endpoint_row(r: &EndpointRow) -> Vec<String> {
    let s = &r.stats;
    let mut v = vec![
        r.server.label(),
        r.port.to_string(),
        r.protocol.clone(),
        r.operation.clone(),
        rate(s.requests_per_sec),
    ];
    v.extend(call_cells(s));
    v.push(s.requests.to_string());
    v
}

/// The three tables of a snapshot.
pub fn tables(s: &TopSnapshot) -> [Table; 3] {
    let title = |what: &str, shown: usize, total: usize| format!("{what} ({shown} of {total})");
    [
        Table {
            title: title(
                "pods: calls served (IN) and made (OUT)",
                s.pods.len(),
                s.pods_total,
            ),
            columns: &POD_COLS,
            rows: s.pods.iter().map(pod_row).collect(),
        },
        Table {
            title: title("call edges", s.edges.len(), s.edges_total),
            columns: &EDGE_COLS,
            rows: s.edges.iter().map(edge_row).collect(),
        },
        Table {
            title: title("endpoints", s.endpoints.len(), s.endpoints_total),
            columns: &ENDPOINT_COLS,
            rows: s.endpoints.iter().map(endpoint_row).collect(),
        },
    ]
}

/// The line above the tables: node, uptime, window, sort key and filters.
pub fn header(s: &TopSnapshot) -> String {
    let q = &s.query;
    let mut filters = Vec::new();
    for (k, v) in [
        ("ns", &q.namespace),
        ("pod", &q.pod),
        ("proto", &q.protocol),
    ] {
        if let Some(v) = v {
            filters.push(format!("{k}={v}"));
        }
    }
    let window = if s.window_secs > 0.0 {
        format!("rates over {:.1}s", s.window_secs)
    } else {
        "rates: waiting for a second sample".into()
    };
    let mut h = format!(
        "podtap top: node {}, up {}s, {window}, sort: {}, filter: {}",
        s.node,
        s.uptime_secs,
        q.sort.name(),
        if filters.is_empty() {
            "none".into()
        } else {
            filters.join(" ")
        }
    );
    if s.series_overflowed > 0 {
        h.push_str(&format!(
            " | {} values beyond export.metrics.max_series not shown",
            s.series_overflowed
        ));
    }
    h
}

/// The header marks the column rows are sorted by.
pub fn header_cell(c: &Column, sort: SortKey) -> String {
    if c.sort == Some(sort) {
        format!("{}▼", c.header)
    } else {
        c.header.to_string()
    }
}

/// `s` cut to `w` characters (a long pod name must not push the other columns out).
pub fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The snapshot as plain text tables (`podtap top --once`).
pub fn text(s: &TopSnapshot) -> String {
    use std::fmt::Write as _;
    let mut o = header(s);
    o.push('\n');
    for t in tables(s) {
        let _ = write!(o, "\n{}\n", t.title);
        let line = |cells: Vec<String>| {
            let mut l = String::new();
            for (c, v) in t.columns.iter().zip(cells) {
                let _ = write!(
                    l,
                    "{:<w$} ",
                    fit(&v, c.width as usize),
                    w = c.width as usize
                );
            }
            l.trim_end().to_string()
        };
        let head = t
            .columns
            .iter()
            .map(|c| header_cell(c, s.query.sort))
            .collect();
        let _ = writeln!(o, "{}", line(head));
        for r in &t.rows {
            let _ = writeln!(o, "{}", line(r.clone()));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(3.456), "3.46");
        assert_eq!(rate(20.04), "20.0");
        assert_eq!(ms(None), "-");
        assert_eq!(ms(Some(0.0523)), "0.052ms");
        assert_eq!(ms(Some(1.254)), "1.25ms");
        assert_eq!(ms(Some(340.2)), "340ms");
        assert_eq!(bytes(812.0), "812");
        assert_eq!(bytes(12.4 * 1024.0), "12.4K");
        assert_eq!(fit("shop/a-very-long-pod-name", 10), "shop/a-ve…");
    }
}
