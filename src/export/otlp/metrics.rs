//! A metric [`Store`] as an OTLP metrics request.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge as PGauge,
    Histogram as PHistogram, HistogramDataPoint, Metric as PMetric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, exponential_histogram_data_point, metric::Data,
    number_data_point,
};
use std::collections::BTreeMap;

use super::resource::resource;
use super::spans::{kv_bool, kv_int, kv_str, scope};
use crate::export::config::Temporality;
use crate::stats::histogram::Buckets;
use crate::stats::metrics::SCHEMA_URL;
use crate::stats::{Kind, Metric, Store, Val, Value};

pub fn attrs(a: &[(&'static str, Val)]) -> Vec<KeyValue> {
    a.iter()
        .map(|(k, v)| match v {
            Val::Str(s) => kv_str(k, s),
            Val::Int(i) => kv_int(k, *i),
            Val::Bool(b) => kv_bool(k, *b),
            Val::Ip(a) => kv_str(k, &a.to_string()),
            Val::Shared(s) => kv_str(k, s),
        })
        .collect()
}

/// Build the request for `store`, whose values cover `start_ns..now_ns`.
pub fn request(
    store: &Store,
    temporality: Temporality,
    start_ns: u64,
    now_ns: u64,
    service: &str,
    extra: &BTreeMap<String, String>,
) -> ExportMetricsServiceRequest {
    let t = match temporality {
        Temporality::Cumulative => AggregationTemporality::Cumulative,
        Temporality::Delta => AggregationTemporality::Delta,
    } as i32;
    let mut by_metric: BTreeMap<Metric, PMetric> = BTreeMap::new();
    for (key, value) in store.sorted() {
        let def = key.metric.def();
        let m = by_metric.entry(key.metric).or_insert_with(|| PMetric {
            name: def.name.into(),
            description: def.description.into(),
            unit: def.unit.into(),
            data: Some(match (def.kind, value) {
                (Kind::Gauge, _) => Data::Gauge(PGauge {
                    data_points: vec![],
                }),
                (Kind::Counter, _) => Data::Sum(Sum {
                    data_points: vec![],
                    aggregation_temporality: t,
                    is_monotonic: true,
                }),
                (Kind::Histogram, Value::Histogram(h))
                    if matches!(h.buckets, Buckets::Exponential(_)) =>
                {
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![],
                        aggregation_temporality: t,
                    })
                }
                (Kind::Histogram, _) => Data::Histogram(PHistogram {
                    data_points: vec![],
                    aggregation_temporality: t,
                }),
            }),
            ..Default::default()
        });
        let attributes = attrs(&key.attrs);
        match (m.data.as_mut(), value) {
            (Some(Data::Sum(s)), Value::Counter(c)) => s.data_points.push(NumberDataPoint {
                attributes,
                start_time_unix_nano: start_ns,
                time_unix_nano: now_ns,
                value: Some(number_data_point::Value::AsInt(*c as i64)),
                ..Default::default()
            }),
            (Some(Data::Gauge(g)), Value::Gauge(v)) => g.data_points.push(NumberDataPoint {
                attributes,
                // A gauge's value is of its time; it has no start.
                time_unix_nano: now_ns,
                value: Some(number_data_point::Value::AsInt(*v)),
                ..Default::default()
            }),
            (Some(Data::Histogram(p)), Value::Histogram(h)) => {
                let Buckets::Explicit { bounds, counts } = &h.buckets else {
                    continue;
                };
                p.data_points.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start_ns,
                    time_unix_nano: now_ns,
                    count: h.count,
                    sum: Some(h.sum),
                    bucket_counts: counts.clone(),
                    explicit_bounds: bounds.to_vec(),
                    min: (h.count > 0).then_some(h.min),
                    max: (h.count > 0).then_some(h.max),
                    ..Default::default()
                })
            }
            (Some(Data::ExponentialHistogram(p)), Value::Histogram(h)) => {
                let Buckets::Exponential(e) = &h.buckets else {
                    continue;
                };
                p.data_points.push(ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start_ns,
                    time_unix_nano: now_ns,
                    count: h.count,
                    sum: Some(h.sum),
                    scale: e.scale,
                    zero_count: e.zero_count,
                    positive: Some(exponential_histogram_data_point::Buckets {
                        offset: e.offset,
                        bucket_counts: e.counts.clone(),
                    }),
                    min: (h.count > 0).then_some(h.min),
                    max: (h.count > 0).then_some(h.max),
                    ..Default::default()
                })
            }
            _ => {}
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(service, extra)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: by_metric.into_values().collect(),
                schema_url: SCHEMA_URL.into(),
            }],
            schema_url: SCHEMA_URL.into(),
        }],
    }
}

/// Data points in a request (for drop accounting).
pub fn data_points(r: &ExportMetricsServiceRequest) -> u64 {
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            _ => 0,
        } as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::HistogramSpec;
    use std::sync::Arc;

    #[test]
    fn store_becomes_histograms_and_sums() {
        for spec in [
            HistogramSpec::Explicit(Arc::from(&[0.1, 1.0][..])),
            HistogramSpec::Exponential {
                max_scale: 5,
                max_size: 10,
            },
        ] {
            let mut s = Store::new(spec.clone(), 10);
            let a = vec![("http.route", Val::Str("/x".into()))];
            s.observe(Metric::HttpServerDuration, &a, 0.05);
            s.observe(Metric::HttpServerDuration, &a, 0.5);
            s.add(Metric::FlowIo, &a, 100);
            let r = request(&s, Temporality::Delta, 1, 2, "svc", &BTreeMap::new());
            assert_eq!(data_points(&r), 2);
            let ms = &r.resource_metrics[0].scope_metrics[0].metrics;
            assert_eq!(ms[0].name, "http.server.request.duration");
            assert_eq!(ms[0].unit, "s");
            match &ms[0].data {
                Some(Data::Histogram(h)) => {
                    assert_eq!(h.data_points[0].count, 2);
                    assert_eq!(h.data_points[0].bucket_counts, [1, 1, 0]);
                    assert_eq!(
                        h.aggregation_temporality,
                        AggregationTemporality::Delta as i32
                    );
                }
                Some(Data::ExponentialHistogram(h)) => {
                    let p = &h.data_points[0];
                    assert_eq!(p.count, 2);
                    assert_eq!(
                        p.positive
                            .as_ref()
                            .unwrap()
                            .bucket_counts
                            .iter()
                            .sum::<u64>(),
                        2
                    );
                }
                other => panic!("{other:?}"),
            }
            let Some(Data::Sum(sum)) = &ms[1].data else {
                panic!()
            };
            assert!(sum.is_monotonic);
            assert_eq!(
                sum.data_points[0].value,
                Some(number_data_point::Value::AsInt(100))
            );
        }
    }

    #[test]
    fn gauges_are_otlp_gauges() {
        let mut s = Store::new(HistogramSpec::Explicit(Arc::from(&[1.0][..])), 10);
        let a = vec![("podtap.probe.target", Val::Str("node-b".into()))];
        s.set(Metric::ProbeUp, &a, 1);
        let r = request(&s, Temporality::Cumulative, 1, 2, "svc", &BTreeMap::new());
        assert_eq!(data_points(&r), 1);
        let m = &r.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "podtap.probe.up");
        let Some(Data::Gauge(g)) = &m.data else {
            panic!("{m:?}")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(1))
        );
        assert_eq!(g.data_points[0].time_unix_nano, 2);
    }
}
