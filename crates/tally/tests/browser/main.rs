//! tally.js in real headless Chromium: a demo shop on another origin installs the tag, and the
//! tests check what reaches tally. A binary of its own because it needs Chromium and
//! chromedriver (`scripts/test` installs them) and runs `cargo test -p tally --test browser`
//! on its own; the end-to-end binary is `tests/e2e`.

/// The tag container in the browser: preview, publish, rollback, click and purchase tags.
mod container;
/// The demo shop (landing, product, cart, checkout, thank-you) on another origin.
mod shop;
/// Chromium, chromedriver, tally and the shop for one test; tally can go down and come back.
mod site;
/// What the shop's visitors send: conversions, click IDs, consent, retries, pixels, cookies.
mod tag;
/// chromedriver and headless Chromium, with a minimal WebDriver client.
mod webdriver;
