//! The checkout request: parsed leniently so that every problem is reported by field name.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::{error::ApiError, error_code::FieldError};

const MAX_AMOUNT_CENTS: i64 = 1_000_000_000;
const MAX_ITEMS: usize = 100;
const MAX_QUANTITY: i64 = 1000;
const MAX_SKU_CHARS: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Input {
    customer_email: Option<String>,
    #[serde(deserialize_with = "crate::api::whole_number")]
    amount_cents: Option<i64>,
    currency: Option<String>,
    items: Option<Vec<ItemInput>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ItemInput {
    sku: Option<String>,
    #[serde(deserialize_with = "crate::api::whole_number")]
    quantity: Option<i64>,
}

/// A valid order request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "customer_email": "a@example.com",
    "amount_cents": 1299,
    "currency": "EUR",
    "items": [{"sku": "BOOK-1", "quantity": 1}]
}))]
pub struct Order {
    #[schema(format = Email)]
    pub customer_email: String,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub amount_cents: i64,
    /// ISO 4217.
    pub currency: String,
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Item {
    /// Up to 64 characters, not only spaces, no control characters.
    #[schema(
        pattern = "^[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]{0,63}$"
    )]
    pub sku: String,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

impl Order {
    /// What an Idempotency-Key is bound to: the request's meaning, not its formatting.
    pub fn fingerprint(&self) -> Vec<u8> {
        let canonical = serde_json::to_vec(self).expect("an order serializes");
        Sha256::digest(canonical).to_vec()
    }
}

pub fn parse(body: &[u8]) -> Result<Order, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let input: Input = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::InvalidRequest(format!("the body is not valid JSON: {inner}"))
        } else {
            ApiError::Validation(vec![FieldError::new(field, inner.to_string())])
        }
    })?;
    let mut errors = Vec::new();
    let order = validate(input, &mut errors);
    match order {
        Some(order) if errors.is_empty() => Ok(order),
        _ => Err(ApiError::Validation(errors)),
    }
}

fn validate(input: Input, errors: &mut Vec<FieldError>) -> Option<Order> {
    let customer_email = required(input.customer_email, "customer_email", errors).filter(|email| {
        check(
            is_email(email),
            "customer_email",
            "is not an email address",
            errors,
        )
    });
    let amount_cents = required(input.amount_cents, "amount_cents", errors).filter(|amount| {
        let ok = (1..=MAX_AMOUNT_CENTS).contains(amount);
        check(
            ok,
            "amount_cents",
            &format!("must be between 1 and {MAX_AMOUNT_CENTS}"),
            errors,
        )
    });
    let currency = required(input.currency, "currency", errors).filter(|code| {
        let known = iso_currency::Currency::from_code(code).is_some();
        check(
            known,
            "currency",
            "is not an ISO 4217 currency code",
            errors,
        )
    });
    let items = required(input.items, "items", errors).and_then(|items| {
        if !check(
            (1..=MAX_ITEMS).contains(&items.len()),
            "items",
            &format!("must hold 1 to {MAX_ITEMS} items"),
            errors,
        ) {
            return None;
        }
        let valid: Vec<Item> = items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| validate_item(i, item, errors))
            .collect();
        Some(valid)
    });
    Some(Order {
        customer_email: customer_email?,
        amount_cents: amount_cents?,
        currency: currency?,
        items: items?,
    })
}

fn validate_item(index: usize, item: ItemInput, errors: &mut Vec<FieldError>) -> Option<Item> {
    let sku_field = format!("items[{index}].sku");
    let quantity_field = format!("items[{index}].quantity");
    let sku = required(item.sku, &sku_field, errors).filter(|sku| {
        let ok = !sku.trim().is_empty()
            && sku.chars().count() <= MAX_SKU_CHARS
            && !sku.chars().any(char::is_control);
        check(
            ok,
            &sku_field,
            &format!("must be 1 to {MAX_SKU_CHARS} characters, none of them control characters"),
            errors,
        )
    });
    let quantity = required(item.quantity, &quantity_field, errors).filter(|q| {
        let ok = (1..=MAX_QUANTITY).contains(q);
        check(
            ok,
            &quantity_field,
            &format!("must be between 1 and {MAX_QUANTITY}"),
            errors,
        )
    });
    Some(Item {
        sku: sku?,
        quantity: quantity?,
    })
}

fn required<T>(value: Option<T>, field: &str, errors: &mut Vec<FieldError>) -> Option<T> {
    if value.is_none() {
        errors.push(FieldError::new(field, "is required"));
    }
    value
}

fn check(ok: bool, field: &str, message: &str, errors: &mut Vec<FieldError>) -> bool {
    if !ok {
        errors.push(FieldError::new(field, message));
    }
    ok
}

/// A deliberately simple shape check; only delivery proves an address.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    text.len() <= 254
        && (1..=64).contains(&local.len())
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Vec<String> {
        match parse(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_order_parses() {
        let order = parse(
            br#"{"customer_email":"a@example.com","amount_cents":1299,"currency":"EUR","items":[{"sku":"BOOK-1","quantity":2}]}"#,
        )
        .unwrap();
        assert_eq!(order.amount_cents, 1299);
        assert_eq!(order.items[0].quantity, 2);
        let written_as_floats = parse(
            br#"{"customer_email":"a@example.com","amount_cents":1299.0,"currency":"EUR","items":[{"sku":"BOOK-1","quantity":2.0}]}"#,
        )
        .unwrap();
        assert_eq!(written_as_floats, order);
    }

    #[test]
    fn every_invalid_field_is_named() {
        assert_eq!(
            fields(r#"{"customer_email":"nope","amount_cents":0,"currency":"XYZ","items":[]}"#),
            ["customer_email", "amount_cents", "currency", "items"]
        );
        assert_eq!(
            fields(
                r#"{"customer_email":"a@b.co","amount_cents":1,"currency":"USD","items":[{"sku":"","quantity":0}]}"#
            ),
            ["items[0].sku", "items[0].quantity"]
        );
        assert_eq!(
            fields("{}"),
            ["customer_email", "amount_cents", "currency", "items"]
        );
        assert_eq!(fields(r#"{"amount_cents":"12"}"#), ["amount_cents"]);
        assert_eq!(fields(r#"{"amount_cents":12.5}"#), ["amount_cents"]);
        // Postgres cannot store a NUL in text or jsonb: refused by name, never a 500.
        assert_eq!(
            fields(
                r#"{"customer_email":"a\u0000@b.co","amount_cents":1,"currency":"EU\u0000","items":[{"sku":"x\u0000","quantity":1}]}"#
            ),
            ["customer_email", "currency", "items[0].sku"]
        );
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        assert!(matches!(parse(b"{"), Err(ApiError::InvalidRequest(_))));
    }

    #[test]
    fn the_fingerprint_ignores_formatting_but_not_content() {
        let a = parse(br#"{"customer_email":"a@b.co","amount_cents":1,"currency":"USD","items":[{"sku":"x","quantity":1}]}"#).unwrap();
        let b = parse(br#"{ "items":[{"quantity":1,"sku":"x"}], "currency":"USD","amount_cents":1,"customer_email":"a@b.co" }"#).unwrap();
        let c = parse(br#"{"customer_email":"a@b.co","amount_cents":2,"currency":"USD","items":[{"sku":"x","quantity":1}]}"#).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
