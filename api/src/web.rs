//! The offices' dashboard (看板): its files are inside the binary (`api/web/`), served
//! compressed (brotli or gzip, made once on first use) and cached by content hash, under
//! a strict Content-Security-Policy. The page is one HTML shell for every view's URL
//! (`/overview`, `/trends?kpi=…`, …); `app.js` draws the view from the API.
//!
//! The page makes no request to any other origin: ECharts is vendored
//! (`api/web/vendor/echarts`), fonts are the system's.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;

/// (name in the page, type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/style.css"),
    ),
    (
        "echarts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/echarts/echarts.common.min.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/favicon.svg"),
    ),
];

const INDEX: &str = include_str!("../web/index.html");

/// The paths that are views of the page (each answers the same shell).
pub const VIEWS: &[&str] = &[
    "/",
    "/login",
    "/overview",
    "/trends",
    "/rank",
    "/stations",
    "/volunteers",
    "/exports",
    "/sql",
    "/quality",
    "/wall",
    "/print",
];

/// Every response's security headers: scripts, styles, images and connections from this
/// origin only (no inline script, no inline style attribute), no framing, no sniffing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

struct Asset {
    content_type: &'static str,
    raw: &'static [u8],
    /// Whether its name carries its content hash (cached for a year).
    hashed: bool,
    etag: String,
    gzip: OnceLock<Vec<u8>>,
    brotli: OnceLock<Vec<u8>>,
}

impl Asset {
    fn new(content_type: &'static str, raw: &'static [u8], hashed: bool) -> Asset {
        Asset {
            content_type,
            raw,
            hashed,
            etag: format!("\"{}\"", short_hash(raw)),
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
        }
    }

    /// The body for a client that accepts `encodings`, and its encoding.
    fn body(&self, encodings: &str) -> (&[u8], Option<&'static str>) {
        let accepts = |e: &str| {
            encodings
                .split(',')
                .any(|part| part.split(';').next().unwrap_or("").trim() == e)
        };
        if accepts("br") {
            let b = self.brotli.get_or_init(|| {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, 9, 22);
                    std::io::Write::write_all(&mut w, self.raw).expect("in memory");
                }
                out
            });
            return (b, Some("br"));
        }
        if accepts("gzip") {
            let g = self.gzip.get_or_init(|| {
                use std::io::Write;
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                w.write_all(self.raw).expect("in memory");
                w.finish().expect("in memory")
            });
            return (g, Some("gzip"));
        }
        (self.raw, None)
    }
}

fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The page's files, by the name the page asks for.
pub struct Web {
    assets: HashMap<String, Arc<Asset>>,
    index: Arc<Asset>,
}

impl Default for Web {
    fn default() -> Self {
        Web::new()
    }
}

impl Web {
    pub fn new() -> Web {
        let mut assets = HashMap::new();
        let mut index = INDEX.to_string();
        for (name, content_type, raw) in FILES {
            let (stem, ext) = name
                .rsplit_once('.')
                .expect("a file name with an extension");
            let hashed = format!("{stem}.{}.{ext}", short_hash(raw));
            index = index.replace(&format!("/assets/{name}\""), &format!("/assets/{hashed}\""));
            assets.insert(hashed, Arc::new(Asset::new(content_type, raw, true)));
            // The plain name too, revalidated on every use (a page of an older build).
            assets.insert(
                name.to_string(),
                Arc::new(Asset::new(content_type, raw, false)),
            );
        }
        let index: &'static str = Box::leak(index.into_boxed_str());
        Web {
            assets,
            index: Arc::new(Asset::new(
                "text/html; charset=utf-8",
                index.as_bytes(),
                false,
            )),
        }
    }

    /// Compress every file now, off the request path (a server's first page then costs
    /// no compression).
    pub fn warm(&self) {
        for a in self.assets.values().chain([&self.index]) {
            a.body("br");
            a.body("gzip");
        }
    }
}

async fn serve(asset: Arc<Asset>, headers: &HeaderMap) -> Response {
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == asset.etag.as_bytes())
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, asset.etag.clone())],
        )
            .into_response();
    }
    let encodings = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let a = asset.clone();
    // Compression on first use runs off the async threads.
    let (body, encoding) = tokio::task::spawn_blocking(move || {
        let (b, e) = a.body(&encodings);
        (b.to_vec(), e)
    })
    .await
    .unwrap_or_else(|_| (asset.raw.to_vec(), None));
    let cache = if asset.hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, asset.content_type.to_string()),
            (header::CACHE_CONTROL, cache.to_string()),
            (header::ETAG, asset.etag.clone()),
            (header::VARY, "accept-encoding".to_string()),
        ],
        body,
    )
        .into_response();
    if let Some(e) = encoding {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
    }
    resp
}

/// `GET /assets/{file}`.
pub async fn asset(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let asset = state
        .web
        .assets
        .get(&file)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no file {file:?}")))?;
    Ok(serve(asset, &headers).await)
}

/// A view of the page: the shell, which draws the view its URL names.
pub async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    serve(state.web.index.clone(), &headers).await
}

/// Adds the security headers to every response.
pub async fn secure(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_names_every_file_by_its_hash_and_each_compresses_back() {
        let web = Web::new();
        let index = std::str::from_utf8(web.index.raw).unwrap();
        for (name, _, raw) in FILES {
            let (stem, ext) = name.rsplit_once('.').unwrap();
            let hashed = format!("{stem}.{}.{ext}", short_hash(raw));
            if *name != "favicon.svg" || index.contains("favicon") {
                assert!(index.contains(&format!("/assets/{hashed}")), "{name}");
            }
            let a = &web.assets[&hashed];
            let (gz, e) = a.body("gzip, deflate");
            assert_eq!(e, Some("gzip"));
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut back).unwrap();
            assert_eq!(back, *raw);
            let (br, e) = a.body("gzip, br");
            assert_eq!(e, Some("br"));
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut brotli::Decompressor::new(br, 4096), &mut back)
                .unwrap();
            assert_eq!(back, *raw);
            assert_eq!(a.body("identity").0, *raw);
        }
        // The first load: shell, script, styles and charts, compressed.
        let total: usize = [&web.index]
            .into_iter()
            .chain(FILES.iter().map(|(n, _, r)| {
                let (s, e) = n.rsplit_once('.').unwrap();
                &web.assets[&format!("{s}.{}.{e}", short_hash(r))]
            }))
            .map(|a| a.body("br").0.len())
            .sum();
        assert!(total < 800_000, "{total} bytes");
    }
}
