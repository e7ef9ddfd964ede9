//! The demo shop: a tiny axum server on loopback, a different origin (and for `away`, a
//! different site) than tally. Its pages install tally.js with the README's snippet, keep the
//! visitor's consent choice in the shop's own cookie, and stub the platform pixels (`fbq`,
//! `gtag`, `ttq`) so they record their calls without any network.
//!
//! Pages: `/` (landing), `/product`, `/cart` (add_to_cart), `/checkout` (begin_checkout and
//! identify), `/thanks?order=N` (purchase with event ID `ord-N-purchase`), `/wrong-key` (a tag
//! with an unknown key), `/bye` (another site's page, no tag). Under `/plain/` the same shop
//! without any hard-coded tracking, for the tag container to drive: `/plain/product` (a
//! `#buy` button), `/plain/thanks?order=N` (the order in the data layer).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::routing::get;

/// The shop's host name (Chromium maps it to 127.0.0.1).
pub const SHOP_HOST: &str = "shop.example.com";
/// tally's host: a subdomain of the shop's site, as in a first-party setup.
pub const TALLY_HOST: &str = "t.shop.example.com";
/// Another site, without tally.
pub const AWAY_HOST: &str = "away.example.net";

#[derive(Clone)]
struct Shop {
    tally_origin: String,
}

/// Serves the shop on `listener` until the test ends.
pub fn serve(listener: tokio::net::TcpListener, tally_origin: String) {
    let app = Router::new()
        .route("/", get(landing))
        .route("/{page}", get(page))
        .route("/plain/{page}", get(plain))
        .with_state(Shop { tally_origin });
    tokio::spawn(async move { axum::serve(listener, app).await });
}

async fn landing(State(shop): State<Shop>) -> Html<String> {
    render(&shop, "")
}

async fn page(State(shop): State<Shop>, Path(name): Path<String>) -> Html<String> {
    render(&shop, &name)
}

const HEAD: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>TITLE · Demo shop</title>
<script>
  // Platform pixels, stubbed: they record their calls and touch no network.
  window.pixels = [];
  function recorder(name) {
    return function () { pixels.push([name].concat([].slice.call(arguments))); };
  }
  window.fbq = recorder('fbq');
  window.gtag = recorder('gtag');
  window.ttq = { track: recorder('ttq') };

  // The tally snippet.
  window.tally=window.tally||function(){(tally.q=tally.q||[]).push(arguments)};

  // The shop's consent banner keeps the visitor's choice in its own cookie.
  var ads = /(^|; )shop_consent=granted/.test(document.cookie) ? 'granted' : 'denied';
  tally('consent', 'default', {ad_storage: ads, ad_user_data: ads, ad_personalization: ads,
                               analytics_storage: 'granted'});
  function acceptConsent() {
    document.cookie = 'shop_consent=granted; Path=/; Max-Age=31536000; SameSite=Lax';
    tally('consent', 'update', {ad_storage: 'granted', ad_user_data: 'granted',
                                ad_personalization: 'granted'});
  }

  // Platform tags fire with the event ID tally's event carries (as the container will).
  var platformNames = {add_to_cart: ['AddToCart', 'add_to_cart', 'AddToCart'],
                       purchase: ['Purchase', 'purchase', 'CompletePayment']};
  tally('on', 'event', function (e) {
    var names = platformNames[e.event];
    if (!names) return;
    var p = {value: e.properties.value, currency: e.properties.currency};
    fbq('track', names[0], p, {eventID: e.event_id});
    gtag('event', names[1], {value: p.value, currency: p.currency,
                             transaction_id: e.properties.order_id, event_id: e.event_id});
    ttq.track(names[2], p, {event_id: e.event_id});
  });
</script>
<script async src="TALLY/tally.js" data-key="KEY"></script>
"#;

fn render(shop: &Shop, name: &str) -> Html<String> {
    let (title, script) = match name {
        "" => ("Welcome", "tally('page');"),
        // A tag installed with a key tally does not know.
        "wrong-key" => ("Misconfigured", "tally('page');"),
        "product" => ("Product", "tally('page');"),
        "cart" => (
            "Cart",
            "tally('track', 'add_to_cart', {value: 64.95, currency: 'EUR', \
             items: [{id: 'sku-1', quantity: 1, price: 64.95}]});",
        ),
        "checkout" => (
            "Checkout",
            "tally('track', 'begin_checkout', {value: 129.9, currency: 'EUR'});\n\
             tally('identify', {external_id: 'cust-42', email: 'Jane.Doe@Example.com'});",
        ),
        "thanks" => (
            "Thank you",
            "var order = new URLSearchParams(location.search).get('order');\n\
             tally('track', 'purchase', {value: 129.9, currency: 'EUR', order_id: order},\n\
                   {event_id: 'ord-' + order + '-purchase'});",
        ),
        "bye" => {
            return Html(
                "<!doctype html><html><head><title>Elsewhere</title></head>\
                 <body><h1>Another site, no tag</h1></body></html>"
                    .into(),
            );
        }
        _ => ("Not found", ""),
    };
    let head = HEAD
        .replace("TITLE", title)
        .replace("TALLY", &shop.tally_origin)
        .replace(
            "KEY",
            if name == "wrong-key" {
                "pk_not_a_key"
            } else {
                "pk_web_demo"
            },
        );
    Html(format!(
        "{head}<script>{script}</script>\n</head><body><h1>{title}</h1>\n\
         <nav><a href=\"/product\">Product</a> <a href=\"/cart\">Cart</a> \
         <a href=\"/checkout\">Checkout</a></nav></body></html>"
    ))
}

/// A page with only the tally snippet, stubbed pixels and a data layer: every tag comes from
/// the container.
async fn plain(State(shop): State<Shop>, Path(name): Path<String>) -> Html<String> {
    let body = match name.as_str() {
        "product" => "<button id=\"buy\" type=\"button\"><span>Add to cart</span></button>",
        "thanks" => {
            "<p>Thank you!</p><script>var order = new URLSearchParams(location.search).get('order');\n\
             dataLayer.push({event: 'purchase', ecommerce: {transaction_id: order, value: 129.9, currency: 'EUR'}});</script>"
        }
        _ => "<p>Nothing here</p>",
    };
    Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{name} · Plain shop</title>
<script>
  window.pixels = [];
  function recorder(name) {{
    return function () {{ pixels.push([name].concat([].slice.call(arguments))); }};
  }}
  window.fbq = recorder('fbq');
  window.gtag = recorder('gtag');
  window.ttq = {{ track: recorder('ttq') }};
  window.dataLayer = window.dataLayer || [];
  window.tally=window.tally||function(){{(tally.q=tally.q||[]).push(arguments)}};
  tally('consent', 'default', {{ad_storage: 'granted', ad_user_data: 'granted',
                               ad_personalization: 'granted', analytics_storage: 'granted'}});
</script>
<script async src="{origin}/tally.js" data-key="pk_web_demo"></script>
</head><body><h1>{name}</h1>{body}</body></html>"#,
        origin = shop.tally_origin
    ))
}
