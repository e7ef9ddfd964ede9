//! Reading the conventional e-commerce properties of an event (`order_id`, `items[]`) the same
//! way for every connector; each connector then names the fields as its platform does.

use rust_decimal::Decimal;
use serde_json::Value;
use tally_core::event::Event;
use tally_core::money;

/// One line of `properties.items[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Product ID (`id`), as text.
    pub id: String,
    /// Units, when a whole number.
    pub quantity: Option<u64>,
    /// Unit price, when a valid amount.
    pub price: Option<Decimal>,
}

/// `properties.items[]`; items without an id are left out, and so are quantities and prices
/// that are not numbers.
pub fn items(event: &Event) -> Vec<Item> {
    let Some(Value::Array(items)) = event.properties.get("items") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            Some(Item {
                id: item.get("id").and_then(id_text)?,
                quantity: item.get("quantity").and_then(Value::as_u64),
                price: item.get("price").and_then(|p| money::parse_value(p).ok()),
            })
        })
        .collect()
}

/// `properties.order_id`, as text.
pub fn order_id(event: &Event) -> Option<String> {
    event.properties.get("order_id").and_then(id_text)
}

/// An identifier given as a non-empty string or a number, as text.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn items_keep_what_is_usable() {
        let e = tally_testkit::events::server(json!({"event": "purchase", "event_id": "e",
            "properties": {"order_id": 1001, "items": [
                {"id": "sku-1", "quantity": 2, "price": "64.95"},
                {"quantity": 1},
                {"id": 7, "quantity": "x", "price": "bad"}]}}));
        assert_eq!(order_id(&e).as_deref(), Some("1001"));
        assert_eq!(
            items(&e),
            [
                Item {
                    id: "sku-1".into(),
                    quantity: Some(2),
                    price: Some("64.95".parse().unwrap())
                },
                Item {
                    id: "7".into(),
                    quantity: None,
                    price: None
                }
            ]
        );
    }
}
