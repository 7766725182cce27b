//! The page's files as a browser gets them: compressed text, an icon where browsers look for
//! one, and downloads never compressed. (The page itself in a browser: `browser`.)

use crate::helpers::{TestApp, spawn_app};

async fn get_compressed(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_pages_text_is_compressed_for_a_browser_that_takes_it() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/app.js",
        "/app.css",
        "/vendor/tus-js-client-4.3.1.min.js",
        "/favicon.svg",
    ] {
        let plain = app.get(path).await;
        assert_eq!(plain.status(), 200, "{path}");
        assert_eq!(plain.headers().get("content-encoding"), None, "{path}");
        let plain = plain.bytes().await.unwrap().len();

        let compressed = get_compressed(&app, path).await;

        assert_eq!(compressed.status(), 200, "{path}");
        let encoding = compressed.headers()["content-encoding"].to_str().unwrap();
        assert!(["br", "gzip"].contains(&encoding), "{path}: {encoding}");
        assert!(
            compressed.headers()["vary"]
                .to_str()
                .unwrap()
                .contains("accept-encoding")
        );
        let sent = compressed.bytes().await.unwrap().len();
        assert!(sent < plain, "{path}: {sent} bytes sent for {plain}");
    }
}

#[tokio::test]
async fn browsers_find_an_icon_where_they_look() {
    let app = spawn_app().await;
    for path in ["/favicon.ico", "/favicon.svg"] {
        let icon = app.get(path).await;
        assert_eq!(icon.status(), 200, "{path}");
        assert_eq!(icon.headers()["content-type"], "image/svg+xml", "{path}");
        assert!(icon.text().await.unwrap().starts_with("<svg"), "{path}");
    }
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains(r#"<link rel="icon" href="/favicon.svg""#));
}

#[tokio::test]
async fn a_download_is_sent_as_stored_even_to_a_browser_that_takes_compression() {
    let app = spawn_app().await;
    let text = "compressible ".repeat(10_000).into_bytes();
    let stored: serde_json::Value = app
        .upload_file("text.txt", text.clone(), None)
        .await
        .json()
        .await
        .unwrap();

    let download = get_compressed(&app, stored["url"].as_str().unwrap()).await;

    assert_eq!(download.status(), 200);
    assert_eq!(download.headers().get("content-encoding"), None);
    assert_eq!(download.bytes().await.unwrap(), text);
}
