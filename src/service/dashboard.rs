//! The web dashboard: a single static page (`dashboard/index.html`, `app.js`, `style.css`) built
//! into the binary and served at `/` and `/assets/{file}`. The page polls the REST API (Flink's
//! paths and JSON) once a second; this module serves files only and knows nothing of jobs, so it
//! adds no load and no lock to the runtime beyond the API calls the page makes.
//!
//! No build step and no external CDN: the files are included as written, so what is in the repo
//! is what a browser gets, and the page works on a machine with no network.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One file of the dashboard, as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

const INDEX_HTML: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("dashboard/index.html"),
};

/// Every file under `/assets/`, by name. A closed list: no path from a request reaches the disk.
const ASSETS: &[(&str, Asset)] = &[
    (
        "app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("dashboard/app.js"),
        },
    ),
    (
        "style.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("dashboard/style.css"),
        },
    ),
];

/// The page allows only its own scripts, styles and API calls: no inline script, nothing from
/// elsewhere, and it cannot be framed by another site (clickjacking the cancel button).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The asset named `name` (the part after `/assets/`), if the dashboard has one.
pub fn asset(name: &str) -> Option<Asset> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The routes of the dashboard, `/` and `/assets/{file}`, to merge into the REST API's router:
/// `rest_router.merge(dashboard::routes())`. Generic over the router's state, which it ignores.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { serve(INDEX_HTML) }))
        .route(
            "/assets/{file}",
            get(
                |axum::extract::Path(file): axum::extract::Path<String>| async move {
                    match asset(&file) {
                        Some(a) => serve(a),
                        None => not_found(&file),
                    }
                },
            ),
        )
}

fn serve(asset: Asset) -> Response {
    let mut resp = asset.body.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // The files change with the binary; `no-cache` makes the browser revalidate, so an upgraded
    // floe never runs yesterday's app.js against today's API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    resp
}

/// A 404 in Flink's error shape, like the rest of the API.
fn not_found(file: &str) -> Response {
    let names: Vec<&str> = ASSETS.iter().map(|(n, _)| *n).collect();
    let body = serde_json::json!({
        "errors": [format!(
            "The dashboard has no asset '{file}'; it serves {}.",
            names.join(", ")
        )]
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_links_is_served() {
        for link in ["/assets/app.js", "/assets/style.css"] {
            assert!(INDEX_HTML.body.contains(link), "index.html links {link}");
            let name = link.strip_prefix("/assets/").unwrap();
            assert!(asset(name).is_some(), "{name} is served");
        }
    }

    #[test]
    fn unknown_and_traversal_names_are_not_assets() {
        for name in [
            "",
            "index.html",
            "../Cargo.toml",
            "app.js/",
            "APP.JS",
            "%2e%2e",
        ] {
            assert_eq!(asset(name), None, "{name:?}");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for a in std::iter::once(INDEX_HTML).chain(ASSETS.iter().map(|(_, a)| *a)) {
            // The SVG namespace is a name, not a URL anything is fetched from.
            let body = a.body.replace("'http://www.w3.org/2000/svg'", "");
            assert!(!body.contains("http://"), "no absolute http URL");
            assert!(!body.contains("https://"), "no absolute https URL");
            assert!(
                !a.body.contains("innerHTML"),
                "text goes through textContent"
            );
        }
    }

    #[test]
    fn the_page_has_the_ids_tests_rely_on() {
        for id in [
            "jobs-table",
            "job-graph",
            "checkpoint-history",
            "latest-restore",
            "checkpoint-config",
            "job-config",
            "savepoint-dir",
            "savepoint-button",
            "stop-button",
            "cancel-button",
            "savepoint-location",
            "errors",
        ] {
            assert!(
                INDEX_HTML.body.contains(&format!("id=\"{id}\"")),
                "index.html has #{id}"
            );
        }
    }
}
