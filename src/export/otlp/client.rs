//! OTLP transport: gRPC (tonic, the generated collector clients) or HTTP/protobuf
//! (hyper, prost bodies), optional gzip, headers, TLS (rustls) and a per-request timeout.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::export::ExportError;
use crate::export::config::{Compression, OtlpConfig, Protocol};

/// Why an export failed.
#[derive(Debug)]
pub enum SendError {
    /// The collector is down, overloaded or timed out: keep the data and retry.
    Retryable(String),
    /// The collector rejected the data: retrying would not help.
    Permanent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retryable(m) => write!(f, "{m} (will retry)"),
            SendError::Permanent(m) => write!(f, "{m} (rejected)"),
        }
    }
}

pub enum OtlpClient {
    Grpc {
        traces: TraceServiceClient<Channel>,
        metrics: MetricsServiceClient<Channel>,
        logs: LogsServiceClient<Channel>,
        headers: MetadataMap,
    },
    Http {
        client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
        traces_url: http::Uri,
        metrics_url: http::Uri,
        logs_url: http::Uri,
        headers: http::HeaderMap,
        gzip: bool,
        timeout: Duration,
    },
}

fn invalid(key: &str, message: impl std::fmt::Display) -> ExportError {
    ExportError::Config {
        key: format!("export.otlp.{key}"),
        message: message.to_string(),
    }
}

impl OtlpClient {
    /// Set up the client; connections are made lazily (a collector that is down at start
    /// is retried like one that goes down later). Must run inside a tokio runtime.
    pub fn new(cfg: &OtlpConfig) -> Result<OtlpClient, ExportError> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let ca = if cfg.tls_ca_file.is_empty() {
            None
        } else {
            Some(
                std::fs::read(&cfg.tls_ca_file)
                    .map_err(|e| invalid("tls_ca_file", format!("{}: {e}", cfg.tls_ca_file)))?,
            )
        };
        match cfg.protocol {
            Protocol::Grpc => {
                let channel = |url: String| -> Result<Channel, ExportError> {
                    let mut ep = Endpoint::from_shared(url.clone())
                        .map_err(|e| invalid("endpoint", format!("{url}: {e}")))?
                        .timeout(timeout)
                        .connect_timeout(timeout);
                    if url.starts_with("https://") {
                        let mut tls = ClientTlsConfig::new().with_native_roots();
                        if let Some(pem) = &ca {
                            tls = tls.ca_certificate(Certificate::from_pem(pem));
                        }
                        ep = ep.tls_config(tls).map_err(|e| invalid("tls_ca_file", e))?;
                    }
                    Ok(ep.connect_lazy())
                };
                let mut traces = TraceServiceClient::new(channel(cfg.traces_url())?);
                let mut metrics = MetricsServiceClient::new(channel(cfg.metrics_url())?);
                let mut logs = LogsServiceClient::new(channel(cfg.logs_url())?);
                if cfg.compression == Compression::Gzip {
                    traces = traces.send_compressed(CompressionEncoding::Gzip);
                    metrics = metrics.send_compressed(CompressionEncoding::Gzip);
                    logs = logs.send_compressed(CompressionEncoding::Gzip);
                }
                let mut headers = MetadataMap::new();
                for (k, v) in &cfg.headers {
                    let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| invalid("headers", format!("{k}: {e}")))?;
                    let val = MetadataValue::try_from(v.as_str())
                        .map_err(|e| invalid("headers", format!("{k}: {e}")))?;
                    headers.insert(key, val);
                }
                Ok(OtlpClient::Grpc {
                    traces,
                    metrics,
                    logs,
                    headers,
                })
            }
            Protocol::HttpProtobuf => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
                if let Some(pem) = &ca {
                    use rustls_pki_types::pem::PemObject;
                    for c in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                        let c = c.map_err(|e| invalid("tls_ca_file", e))?;
                        roots.add(c).map_err(|e| invalid("tls_ca_file", e))?;
                    }
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| invalid("tls_ca_file", e))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = Client::builder(TokioExecutor::new()).build(connector);
                let uri = |key: &str, u: String| -> Result<http::Uri, ExportError> {
                    u.parse().map_err(|e| invalid(key, format!("{u}: {e}")))
                };
                let mut headers = http::HeaderMap::new();
                for (k, v) in &cfg.headers {
                    let name = http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| invalid("headers", format!("{k}: {e}")))?;
                    let val = http::HeaderValue::from_str(v)
                        .map_err(|e| invalid("headers", format!("{k}: {e}")))?;
                    headers.insert(name, val);
                }
                Ok(OtlpClient::Http {
                    client,
                    traces_url: uri("traces_endpoint", cfg.traces_url())?,
                    metrics_url: uri("metrics_endpoint", cfg.metrics_url())?,
                    logs_url: uri("logs_endpoint", cfg.logs_url())?,
                    headers,
                    gzip: cfg.compression == Compression::Gzip,
                    timeout,
                })
            }
        }
    }

    /// Send spans; `Ok(rejected)` counts spans the collector accepted the request for but
    /// refused (partial success).
    pub async fn traces(&mut self, req: ExportTraceServiceRequest) -> Result<u64, SendError> {
        match self {
            OtlpClient::Grpc {
                traces, headers, ..
            } => {
                let mut r = tonic::Request::new(req);
                *r.metadata_mut() = headers.clone();
                let resp = traces.export(r).await.map_err(grpc_error)?;
                Ok(resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_spans.max(0) as u64))
            }
            OtlpClient::Http { traces_url, .. } => {
                let url = traces_url.clone();
                self.post(url, req.encode_to_vec()).await.map(|_| 0)
            }
        }
    }

    pub async fn metrics(&mut self, req: ExportMetricsServiceRequest) -> Result<u64, SendError> {
        match self {
            OtlpClient::Grpc {
                metrics, headers, ..
            } => {
                let mut r = tonic::Request::new(req);
                *r.metadata_mut() = headers.clone();
                let resp = metrics.export(r).await.map_err(grpc_error)?;
                Ok(resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points.max(0) as u64))
            }
            OtlpClient::Http { metrics_url, .. } => {
                let url = metrics_url.clone();
                self.post(url, req.encode_to_vec()).await.map(|_| 0)
            }
        }
    }

    /// Send log records; `Ok(rejected)` counts records the collector refused.
    pub async fn logs(&mut self, req: ExportLogsServiceRequest) -> Result<u64, SendError> {
        match self {
            OtlpClient::Grpc { logs, headers, .. } => {
                let mut r = tonic::Request::new(req);
                *r.metadata_mut() = headers.clone();
                let resp = logs.export(r).await.map_err(grpc_error)?;
                Ok(resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_log_records.max(0) as u64))
            }
            OtlpClient::Http { logs_url, .. } => {
                let url = logs_url.clone();
                self.post(url, req.encode_to_vec()).await.map(|_| 0)
            }
        }
    }

    async fn post(&self, url: http::Uri, body: Vec<u8>) -> Result<(), SendError> {
        let OtlpClient::Http {
            client,
            headers,
            gzip,
            timeout,
            ..
        } = self
        else {
            unreachable!("post is only called for HTTP clients");
        };
        let mut req = http::Request::post(url).header("content-type", "application/x-protobuf");
        let body = if *gzip {
            req = req.header("content-encoding", "gzip");
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&body)
                .and_then(|_| enc.finish())
                .map_err(|e| SendError::Permanent(format!("gzip: {e}")))?
        } else {
            body
        };
        let mut req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        req.headers_mut().extend(headers.clone());
        let resp = tokio::time::timeout(*timeout, client.request(req))
            .await
            .map_err(|_| SendError::Retryable("timed out".into()))?
            .map_err(|e| SendError::Retryable(format!("{e}")))?;
        let status = resp.status();
        // Read the body so the connection can be reused.
        let _ = tokio::time::timeout(*timeout, resp.into_body().collect()).await;
        match status.as_u16() {
            200..=299 => Ok(()),
            // The OTLP/HTTP spec lists these as retryable.
            429 | 502 | 503 | 504 => Err(SendError::Retryable(format!("HTTP {status}"))),
            _ => Err(SendError::Permanent(format!("HTTP {status}"))),
        }
    }
}

fn grpc_error(s: tonic::Status) -> SendError {
    use tonic::Code::*;
    let m = format!("gRPC {:?}: {}", s.code(), s.message());
    match s.code() {
        Cancelled | DeadlineExceeded | ResourceExhausted | Aborted | OutOfRange | Unavailable
        | DataLoss | Unknown | Internal => SendError::Retryable(m),
        _ => SendError::Permanent(m),
    }
}
