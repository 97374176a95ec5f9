//! The page itself: one HTML document with its CSS and JavaScript inline,
//! embedded in the crate.

use std::time::Duration;

use bytes::Bytes;

const TEMPLATE: &str = include_str!("assets/page.html");
const STYLE: &str = include_str!("assets/page.css");
/// The script, in three parts run in one function (so that nothing is
/// global): words and element makers, the drawing, then the state and the
/// stream, which starts the page.
const SCRIPTS: [&str; 3] = [
    include_str!("assets/text.js"),
    include_str!("assets/draw.js"),
    include_str!("assets/live.js"),
];

/// What the page may load: its own inline style and script, and requests
/// to where it came from (the snapshot and the event stream); nothing
/// from anywhere else.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
     script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'self'";

/// The page, with a chart window of `window`.
pub(crate) fn render(window: Duration) -> Bytes {
    let window_ms = window.as_millis().to_string();
    let script = format!("(() => {{\n'use strict';\n{}}})();\n", SCRIPTS.concat());
    TEMPLATE
        .replacen("{{style}}", STYLE, 1)
        .replacen("{{window_ms}}", &window_ms, 1)
        // Last: the script is the largest part, and holds no placeholder.
        .replacen("{{script}}", &script, 1)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_cannot_close_their_inline_element() {
        assert!(!STYLE.contains("</style") && !STYLE.contains("{{"));
        for script in SCRIPTS {
            assert!(!script.contains("</script") && !script.contains("{{"));
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let page = render(Duration::from_secs(90));
        let page = std::str::from_utf8(&page).unwrap();
        assert!(!page.contains("{{"), "a placeholder is left");
        assert!(page.contains("data-window-ms=\"90000\""));
        assert!(page.contains("'use strict'"));
        assert!(page.contains("#reports"));
    }
}
