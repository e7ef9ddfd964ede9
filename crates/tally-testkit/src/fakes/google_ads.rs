//! Fake of the Google Ads API's `ConversionUploadService.UploadClickConversions`,
//! `POST /v{N}/customers/{id}:uploadClickConversions`, the legacy click-conversion import.
//!
//! Request-level checks answer with the Google error envelope and a `GoogleAdsFailure`: Bearer
//! token (401), `developer-token` header (400 `DEVELOPER_TOKEN_PARAMETER_MISSING` when absent,
//! 401 when wrong), a 10-digit `login-customer-id` when present, proto3 JSON names (an unknown
//! name refuses the request), `partialFailure: true` (`PARTIAL_FAILURE_MODE_REQUIRED`), and at
//! most 2,000 rows (`TOO_MANY_CONVERSIONS_IN_REQUEST`).
//!
//! Row checks are partial failures: the answer is 200 with `results` (an empty object for a
//! failed row), `partialFailureError` whose errors point at `conversions[i]`, and `jobId`. Rows
//! are checked for a click ID, gbraid and wbraid together (`GBRAID_WBRAID_BOTH_SET`),
//! `adPersonalization` consent (never allowed on click conversions), the conversion action
//! resource name, the `yyyy-mm-dd hh:mm:ss±hh:mm` date-time, the currency, at most 5 user
//! identifiers of the two accepted kinds as 64 lowercase hex, the order ID once per conversion
//! action (`ORDER_ID_ALREADY_IN_USE` across requests, `DUPLICATE_ORDER_ID` within one), the
//! same click and time once per action (`CLICK_CONVERSION_ALREADY_EXISTS`), and the
//! [`too_recent`](FakeGoogleAds::too_recent) and [`expired`](FakeGoogleAds::expired) knobs
//! (`TOO_RECENT_EVENT`, `EXPIRED_EVENT`). `validateOnly` returns
//! no results and records rows only in [`validated`](FakeGoogleAds::validated).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use serde_json::{Map, Value, json};

use super::data_manager::{
    bearer_matches, google_error, is_customer_id, is_sha256_hex, unauthenticated,
};
use crate::{Captured, FakeDestination, Reply};

/// Most conversions per request.
pub const MAX_CONVERSIONS: usize = 2_000;
/// Most user identifiers per conversion.
pub const MAX_USER_IDENTIFIERS: usize = 5;

/// A fake Google Ads API (click conversion upload) on loopback.
pub struct FakeGoogleAds {
    fake: FakeDestination,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    access_token: String,
    developer_token: String,
    received: Vec<Value>,
    validated: Vec<Value>,
    too_recent: HashSet<String>,
    expired: HashSet<String>,
    unknown_actions: HashSet<String>,
    /// (conversion action ID, orderId) pairs uploaded.
    orders: HashSet<(String, String)>,
    /// (conversion action ID, click ID, conversionDateTime) triples uploaded.
    clicks: HashSet<(String, String, String)>,
    jobs: u64,
}

impl FakeGoogleAds {
    /// Starts a fake accepting `Authorization: Bearer <access_token>` and
    /// `developer-token: <developer_token>`.
    pub async fn start(access_token: &str, developer_token: &str) -> FakeGoogleAds {
        let state = Arc::new(Mutex::new(State {
            access_token: access_token.to_owned(),
            developer_token: developer_token.to_owned(),
            ..State::default()
        }));
        let handler_state = state.clone();
        let fake =
            FakeDestination::start_with(Arc::new(move |request| answer(&handler_state, request)))
                .await;
        FakeGoogleAds { fake, state }
    }

    /// `http://127.0.0.1:<port>`, the connector's `endpoint`.
    pub fn url(&self) -> String {
        self.fake.url()
    }

    /// Queues plain status answers that come before any validation.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        self.fake.script(statuses);
    }

    /// Queues one answer that comes before any validation (503 storms, 429 with Retry-After).
    pub fn script_one(&self, reply: Reply) {
        self.fake.script_one(reply);
    }

    /// Every request so far, scripted or not, oldest first.
    pub fn requests(&self) -> Vec<Captured> {
        self.fake.requests()
    }

    /// Every request body so far as JSON (non-JSON bodies as `null`), oldest first.
    pub fn request_bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// The conversions uploaded (rows without errors, not `validateOnly`), in order, as sent.
    pub fn received(&self) -> Vec<Value> {
        self.state.lock().expect("lock").received.clone()
    }

    /// The error-free rows of `validateOnly` requests, in order, as sent.
    pub fn validated(&self) -> Vec<Value> {
        self.state.lock().expect("lock").validated.clone()
    }

    /// Makes rows with this gclid fail with `TOO_RECENT_EVENT` (the click is under 6 hours old).
    pub fn too_recent(&self, gclid: &str) {
        let mut state = self.state.lock().expect("lock");
        state.too_recent.insert(gclid.to_owned());
    }

    /// Makes rows with this gclid fail with `EXPIRED_EVENT` (the click is older than the
    /// conversion action's click-through window).
    pub fn expired(&self, gclid: &str) {
        let mut state = self.state.lock().expect("lock");
        state.expired.insert(gclid.to_owned());
    }

    /// Makes rows for this conversion action ID fail with `NO_CONVERSION_ACTION_FOUND`.
    pub fn unknown_conversion_action(&self, id: &str) {
        let mut state = self.state.lock().expect("lock");
        state.unknown_actions.insert(id.to_owned());
    }
}

/// `GoogleAdsFailure` detail of API version `version` holding `errors`.
fn failure(version: &str, errors: Vec<Value>) -> Value {
    json!({
        "@type": format!("type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure"),
        "errors": errors,
        "requestId": "fake-ads-request",
    })
}

/// One `GoogleAdsError`.
fn ads_error(family: &str, code: &str, message: &str, location: Option<(usize, &str)>) -> Value {
    let mut error = json!({"errorCode": {family: code}, "message": message});
    if let Some((row, field)) = location {
        let mut path = vec![json!({"fieldName": "conversions", "index": row})];
        if !field.is_empty() {
            path.push(json!({"fieldName": field}));
        }
        error["location"] = json!({ "fieldPathElements": path });
    }
    error
}

/// A whole-request refusal with one `GoogleAdsFailure` error.
fn request_error(
    http: u16,
    status: &str,
    version: &str,
    family: &str,
    code: &str,
    message: &str,
) -> Reply {
    google_error(
        http,
        status,
        if http == 400 {
            "Request contains an invalid argument."
        } else {
            message
        },
        vec![failure(
            version,
            vec![ads_error(family, code, message, None)],
        )],
    )
}

/// The 400 Google's JSON parser gives for a name the proto does not have.
fn unknown_name(path: &str, name: &str) -> Reply {
    let message = format!(
        "Invalid JSON payload received. Unknown name \"{name}\" at '{path}': Cannot find field."
    );
    google_error(
        400,
        "INVALID_ARGUMENT",
        &message,
        vec![json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": path, "description": message}],
        })],
    )
}

fn check_names(fields: &Map<String, Value>, path: &str, known: &[&str]) -> Result<(), Reply> {
    match fields.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(name) => Err(unknown_name(path, name)),
    }
}

/// The API version (`v22`) from `/v22/customers/1234567890:uploadClickConversions`.
fn version_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (version, rest) = rest.split_once("/customers/")?;
    let (customer, method) = rest.split_once(':')?;
    let number = version.strip_prefix('v')?;
    let ok = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && is_customer_id(customer)
        && method == "uploadClickConversions";
    ok.then_some(version)
}

/// `yyyy-mm-dd hh:mm:ss+hh:mm` (or `-hh:mm`).
fn is_conversion_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 25
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && matches!(b[19], b'+' | b'-')
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
}

/// The conversion action ID from `customers/{cid}/conversionActions/{id}`.
fn action_of(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("customers/")?;
    let (customer, id) = rest.split_once("/conversionActions/")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(customer) && digits(id)).then_some(id)
}

fn answer(state: &Mutex<State>, request: &Captured) -> Reply {
    let Some(version) = version_of(&request.path).filter(|_| request.method == Method::POST) else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL {} was not found.", request.path),
            Vec::new(),
        );
    };
    let mut state = state.lock().expect("lock");
    if !bearer_matches(&request.headers, &state.access_token) {
        return unauthenticated(vec![failure(
            version,
            vec![ads_error(
                "authenticationError",
                "OAUTH_TOKEN_INVALID",
                "OAuth token in the header is not valid.",
                None,
            )],
        )]);
    }
    let developer_token = request
        .headers
        .get("developer-token")
        .and_then(|v| v.to_str().ok());
    match developer_token {
        None => {
            return request_error(
                400,
                "INVALID_ARGUMENT",
                version,
                "requestError",
                "DEVELOPER_TOKEN_PARAMETER_MISSING",
                "The developer-token parameter is required for all requests.",
            );
        }
        Some(token) if token != state.developer_token => {
            return request_error(
                401,
                "UNAUTHENTICATED",
                version,
                "authenticationError",
                "DEVELOPER_TOKEN_INVALID",
                "The developer token is not valid.",
            );
        }
        Some(_) => {}
    }
    if let Some(login) = request.headers.get("login-customer-id")
        && !login.to_str().is_ok_and(is_customer_id)
    {
        return request_error(
            400,
            "INVALID_ARGUMENT",
            version,
            "authenticationError",
            "CLIENT_CUSTOMER_ID_INVALID",
            "Client customer ID is not a number.",
        );
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                &format!("Invalid JSON payload received. {e}"),
                Vec::new(),
            );
        }
    };
    match upload(&mut state, version, &body) {
        Ok(reply) | Err(reply) => reply,
    }
}

/// The answer to a well-authenticated request (a refusal is an `Err` only for `?`'s sake).
fn upload(state: &mut State, version: &str, body: &Value) -> Result<Reply, Reply> {
    let Some(fields) = body.as_object() else {
        return Err(google_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
            Vec::new(),
        ));
    };
    check_names(
        fields,
        "",
        &["conversions", "partialFailure", "validateOnly", "jobId"],
    )?;
    if fields.get("partialFailure").and_then(Value::as_bool) != Some(true) {
        return Err(request_error(
            400,
            "INVALID_ARGUMENT",
            version,
            "partialFailureError",
            "PARTIAL_FAILURE_MODE_REQUIRED",
            "The partial failure field must be set to true.",
        ));
    }
    let validate_only = fields.get("validateOnly").and_then(Value::as_bool) == Some(true);
    let rows = match fields.get("conversions").and_then(Value::as_array) {
        Some(rows) if !rows.is_empty() => rows,
        _ => {
            return Err(request_error(
                400,
                "INVALID_ARGUMENT",
                version,
                "fieldError",
                "REQUIRED",
                "The required field was not present: conversions.",
            ));
        }
    };
    if rows.len() > MAX_CONVERSIONS {
        return Err(request_error(
            400,
            "INVALID_ARGUMENT",
            version,
            "conversionUploadError",
            "TOO_MANY_CONVERSIONS_IN_REQUEST",
            "The request contained more than 2000 conversions. Upload fewer than 2001.",
        ));
    }
    // Proto-level problems (unknown names, wrong enum values) refuse the whole request, before
    // any row is judged.
    for (i, row) in rows.iter().enumerate() {
        check_row_shape(row, &format!("conversions[{i}]"))?;
    }
    let mut errors = Vec::new();
    let mut results = Vec::new();
    let mut orders_here: HashSet<(String, String)> = HashSet::new();
    let mut accepted = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match judge_row(state, row, i, &mut orders_here) {
            Ok(result) => {
                results.push(result);
                accepted.push(row.clone());
            }
            Err(error) => {
                errors.push(error);
                results.push(json!({}));
            }
        }
    }
    if validate_only {
        state.validated.extend(accepted);
    } else {
        for row in &accepted {
            remember(state, row);
        }
        state.received.extend(accepted);
    }
    state.jobs += 1;
    let mut answer = json!({ "jobId": (2_147_483_648u64 + state.jobs).to_string() });
    if !validate_only {
        answer["results"] = Value::Array(results);
    }
    if let Some(first) = errors.first() {
        let message = first["message"].as_str().unwrap_or_default().to_owned();
        answer["partialFailureError"] = json!({
            "code": 3,
            "message": message,
            "details": [failure(version, errors)],
        });
    }
    Ok(Reply::json(200, answer.to_string()))
}

/// Proto3 JSON checks on one row: known names and enum values.
fn check_row_shape(row: &Value, path: &str) -> Result<(), Reply> {
    let Some(fields) = row.as_object() else {
        return Err(unknown_name(path, "(not an object)"));
    };
    check_names(
        fields,
        path,
        &[
            "gclid",
            "gbraid",
            "wbraid",
            "conversionAction",
            "conversionDateTime",
            "conversionValue",
            "currencyCode",
            "orderId",
            "externalAttributionData",
            "customVariables",
            "cartData",
            "userIdentifiers",
            "conversionEnvironment",
            "consent",
            "customerType",
            "userIpAddress",
            "sessionAttributesEncoded",
            "sessionAttributesKeyValuePairs",
        ],
    )?;
    if let Some(value) = fields.get("conversionValue")
        && !value.is_number()
    {
        return Err(unknown_name(
            &format!("{path}.conversionValue"),
            "(not a number)",
        ));
    }
    if let Some(consent) = fields.get("consent") {
        let consent_path = format!("{path}.consent");
        let Some(consent) = consent.as_object() else {
            return Err(unknown_name(&consent_path, "(not an object)"));
        };
        check_names(consent, &consent_path, &["adUserData", "adPersonalization"])?;
        for (name, value) in consent {
            let ok = matches!(
                value.as_str(),
                Some("UNSPECIFIED" | "UNKNOWN" | "GRANTED" | "DENIED")
            );
            if !ok {
                return Err(google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid value at '{consent_path}.{name}'"),
                    Vec::new(),
                ));
            }
        }
    }
    for (j, identifier) in fields
        .get("userIdentifiers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id_path = format!("{path}.userIdentifiers[{j}]");
        let Some(identifier) = identifier.as_object() else {
            return Err(unknown_name(&id_path, "(not an object)"));
        };
        check_names(
            identifier,
            &id_path,
            &[
                "userIdentifierSource",
                "hashedEmail",
                "hashedPhoneNumber",
                "mobileId",
                "thirdPartyUserId",
                "addressInfo",
            ],
        )?;
    }
    Ok(())
}

/// One row's result, or its `GoogleAdsError`.
fn judge_row(
    state: &State,
    row: &Value,
    i: usize,
    orders_here: &mut HashSet<(String, String)>,
) -> Result<Value, Value> {
    let text = |name: &str| row.get(name).and_then(Value::as_str);
    let refuse = |family: &str, code: &str, message: &str, field: &str| {
        Err(ads_error(family, code, message, Some((i, field))))
    };
    if row.pointer("/consent/adPersonalization").is_some() {
        return refuse(
            "fieldError",
            "VALUE_MUST_BE_UNSET",
            "adPersonalization may only be set for OfflineUserDataJobService and \
             UserDataService.",
            "consent",
        );
    }
    if text("gbraid").is_some() && text("wbraid").is_some() {
        return refuse(
            "conversionUploadError",
            "GBRAID_WBRAID_BOTH_SET",
            "Only one of gbraid and wbraid can be set.",
            "wbraid",
        );
    }
    let click = ["gclid", "gbraid", "wbraid"]
        .into_iter()
        .find_map(|name| text(name).filter(|v| !v.is_empty()).map(|v| (name, v)));
    let identifiers = row.get("userIdentifiers").and_then(Value::as_array);
    if click.is_none() && identifiers.is_none_or(Vec::is_empty) {
        return refuse(
            "fieldError",
            "REQUIRED",
            "A click ID (gclid, gbraid or wbraid) or user identifiers are required.",
            "gclid",
        );
    }
    let Some(action) = text("conversionAction").and_then(action_of) else {
        return refuse(
            "requestError",
            "RESOURCE_NAME_MALFORMED",
            "The conversion action resource name is malformed.",
            "conversion_action",
        );
    };
    if state.unknown_actions.contains(action) {
        return refuse(
            "conversionUploadError",
            "NO_CONVERSION_ACTION_FOUND",
            "The conversion action specified in the upload request cannot be found.",
            "conversion_action",
        );
    }
    let Some(at) = text("conversionDateTime").filter(|t| is_conversion_date_time(t)) else {
        return refuse(
            "dateError",
            "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET",
            "The string date time's format should be yyyy-mm-dd hh:mm:ss+|-hh:mm.",
            "conversion_date_time",
        );
    };
    if let Some(currency) = row.get("currencyCode") {
        let ok = currency
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
        if !ok {
            return refuse(
                "currencyCodeError",
                "UNSUPPORTED",
                "The currency code is not supported.",
                "currency_code",
            );
        }
    }
    let identifiers = identifiers.map(Vec::as_slice).unwrap_or_default();
    if identifiers.len() > MAX_USER_IDENTIFIERS {
        return refuse(
            "collectionSizeError",
            "TOO_MANY",
            "Too many user identifiers: at most 5.",
            "user_identifiers",
        );
    }
    for identifier in identifiers {
        let hash = identifier
            .get("hashedEmail")
            .or_else(|| identifier.get("hashedPhoneNumber"));
        let Some(hash) = hash else {
            return refuse(
                "conversionUploadError",
                "UNSUPPORTED_USER_IDENTIFIER",
                "Only hashed email and hashed phone number identifiers are accepted here.",
                "user_identifiers",
            );
        };
        if !hash.as_str().is_some_and(is_sha256_hex) {
            return refuse(
                "conversionUploadError",
                "INVALID_USER_IDENTIFIER",
                "The user identifier is not a valid SHA-256 hash.",
                "user_identifiers",
            );
        }
    }
    if let Some(("gclid", gclid)) = click {
        if state.too_recent.contains(gclid) {
            return refuse(
                "conversionUploadError",
                "TOO_RECENT_EVENT",
                "The click associated with the given identifier or iOS URL parameter occurred \
                 less than 6 hours ago, please retry after 6 hours have passed.",
                "gclid",
            );
        }
        if state.expired.contains(gclid) {
            return refuse(
                "conversionUploadError",
                "EXPIRED_EVENT",
                "The click associated with the given identifier or iOS URL parameter is too old \
                 to be imported.",
                "gclid",
            );
        }
    }
    if let Some(order) = text("orderId") {
        let key = (action.to_owned(), order.to_owned());
        if state.orders.contains(&key) {
            return refuse(
                "conversionUploadError",
                "ORDER_ID_ALREADY_IN_USE",
                "The specified order ID was already used in another conversion.",
                "order_id",
            );
        }
        if !orders_here.insert(key) {
            return refuse(
                "conversionUploadError",
                "DUPLICATE_ORDER_ID",
                "The request contains two conversions with the same order ID.",
                "order_id",
            );
        }
    }
    if let Some((_, id)) = click {
        let key = (action.to_owned(), id.to_owned(), at.to_owned());
        if state.clicks.contains(&key) {
            return refuse(
                "conversionUploadError",
                "CLICK_CONVERSION_ALREADY_EXISTS",
                "The click conversion was already uploaded.",
                "gclid",
            );
        }
    }
    let mut result = json!({
        "conversionAction": text("conversionAction"),
        "conversionDateTime": at,
    });
    if let Some((name, id)) = click {
        result[name] = json!(id);
    }
    Ok(result)
}

/// Records an uploaded row's order ID and click for the duplicate checks.
fn remember(state: &mut State, row: &Value) {
    let text = |name: &str| row.get(name).and_then(Value::as_str);
    let Some(action) = text("conversionAction").and_then(action_of) else {
        return;
    };
    if let Some(order) = text("orderId") {
        state.orders.insert((action.to_owned(), order.to_owned()));
    }
    let click = ["gclid", "gbraid", "wbraid"].into_iter().find_map(text);
    if let (Some(click), Some(at)) = (click, text("conversionDateTime")) {
        state
            .clicks
            .insert((action.to_owned(), click.to_owned(), at.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(order: &str, gclid: &str) -> Value {
        json!({"gclid": gclid, "conversionAction": "customers/1234567890/conversionActions/5",
               "conversionDateTime": "2025-11-20 10:14:00+00:00", "orderId": order})
    }

    async fn post(
        fake: &FakeGoogleAds,
        developer_token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!(
                "{}/v22/customers/1234567890:uploadClickConversions",
                fake.url()
            ))
            .bearer_auth("tok")
            .json(body);
        if let Some(token) = developer_token {
            request = request.header("developer-token", token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn uploads_rows_and_reports_partial_failures_by_index() {
        let fake = FakeGoogleAds::start("tok", "dev").await;
        fake.too_recent("g-recent");
        let mut both = row("o3", "g3");
        both["gbraid"] = json!("gb");
        both["wbraid"] = json!("wb");
        both.as_object_mut().unwrap().remove("gclid");
        let body = json!({"partialFailure": true, "conversions": [
            row("o1", "g1"), row("o2", "g-recent"), both, row("o1", "g4")]});
        let (status, answer) = post(&fake, Some("dev"), &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["results"][0]["gclid"], "g1");
        assert_eq!(answer["results"][1], json!({}));
        let errors = &answer["partialFailureError"]["details"][0]["errors"];
        let codes: Vec<(&str, u64)> = errors
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["errorCode"]["conversionUploadError"].as_str().unwrap(),
                    e["location"]["fieldPathElements"][0]["index"]
                        .as_u64()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                ("TOO_RECENT_EVENT", 1),
                ("GBRAID_WBRAID_BOTH_SET", 2),
                ("DUPLICATE_ORDER_ID", 3)
            ]
        );
        assert_eq!(fake.received().len(), 1);
        let (_, again) = post(
            &fake,
            Some("dev"),
            &json!({"partialFailure": true,
            "conversions": [row("o1", "g9")]}),
        )
        .await;
        let code = &again["partialFailureError"]["details"][0]["errors"][0]["errorCode"];
        assert_eq!(code["conversionUploadError"], "ORDER_ID_ALREADY_IN_USE");
    }

    #[tokio::test]
    async fn refuses_requests_without_developer_token_or_partial_failure() {
        let fake = FakeGoogleAds::start("tok", "dev").await;
        let body = json!({"partialFailure": true, "conversions": [row("o1", "g1")]});
        let (status, answer) = post(&fake, None, &body).await;
        assert_eq!(status, 400);
        let code = &answer["error"]["details"][0]["errors"][0]["errorCode"];
        assert_eq!(code["requestError"], "DEVELOPER_TOKEN_PARAMETER_MISSING");
        let (status, _) = post(
            &fake,
            Some("dev"),
            &json!({"conversions": [row("o1", "g1")]}),
        )
        .await;
        assert_eq!(status, 400);
        let mut bad_time = row("o1", "g1");
        bad_time["conversionDateTime"] = json!("2025-11-20T10:14:00Z");
        let mut personal = row("o2", "g2");
        personal["consent"] = json!({"adUserData": "GRANTED", "adPersonalization": "GRANTED"});
        let (status, answer) = post(
            &fake,
            Some("dev"),
            &json!({"partialFailure": true,
            "conversions": [bad_time, personal]}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            answer["partialFailureError"]["details"][0]["errors"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(fake.received().is_empty());
    }

    #[tokio::test]
    async fn validate_only_records_nothing_as_received() {
        let fake = FakeGoogleAds::start("tok", "dev").await;
        let body = json!({"partialFailure": true, "validateOnly": true,
            "conversions": [row("o1", "g1")]});
        let (status, answer) = post(&fake, Some("dev"), &body).await;
        assert_eq!(status, 200);
        assert!(answer.get("results").is_none());
        assert!(fake.received().is_empty());
        assert_eq!(fake.validated().len(), 1);
    }

    #[test]
    fn the_date_time_format_is_exact() {
        assert!(is_conversion_date_time("2019-01-01 12:32:45-08:00"));
        assert!(!is_conversion_date_time("2019-01-01 12:32:45"));
        assert!(!is_conversion_date_time("2019-01-01T12:32:45+00:00"));
    }
}
