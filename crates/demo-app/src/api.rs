//! A small stateless product-catalogue API: enough shape (list with filters
//! and pagination, lookup by id, a validated POST) for realistic traffic and
//! for every kind of bad input.

use std::time::Duration;

use axum::Json;
use axum::http::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::QuoteEngine;
use crate::error::AppError;
use crate::extract::parse_json;
use crate::routes::{Call, Reply};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Product {
    pub id: u32,
    pub name: &'static str,
    pub category: &'static str,
    pub price_cents: u64,
    pub in_stock: bool,
}

const fn p(
    id: u32,
    name: &'static str,
    category: &'static str,
    price_cents: u64,
    in_stock: bool,
) -> Product {
    Product {
        id,
        name,
        category,
        price_cents,
        in_stock,
    }
}

pub const PRODUCTS: &[Product] = &[
    p(1, "Mechanical keyboard", "peripherals", 8999, true),
    p(2, "Wireless mouse", "peripherals", 2999, true),
    p(3, "27-inch monitor", "displays", 24999, true),
    p(4, "USB-C hub", "accessories", 3999, true),
    p(5, "Laptop stand", "accessories", 4599, false),
    p(6, "Noise-cancelling headphones", "audio", 19999, true),
    p(7, "Webcam 1080p", "peripherals", 5999, true),
    p(8, "Desk microphone", "audio", 12999, false),
    p(9, "Portable SSD 1TB", "storage", 10999, true),
    p(10, "NVMe SSD 2TB", "storage", 15999, true),
    p(11, "34-inch ultrawide monitor", "displays", 44999, true),
    p(12, "Monitor arm", "accessories", 8999, true),
    p(13, "Ergonomic chair", "furniture", 39999, true),
    p(14, "Standing desk", "furniture", 59999, false),
    p(15, "Bluetooth speaker", "audio", 7999, true),
    p(16, "HDMI cable 2m", "accessories", 1299, true),
    p(17, "Trackpad", "peripherals", 12999, true),
    p(18, "External GPU enclosure", "peripherals", 29999, false),
    p(19, "USB microphone arm", "audio", 3499, true),
    p(20, "4K portable monitor", "displays", 32999, true),
    p(21, "SD card reader", "accessories", 1999, true),
    p(22, "NAS 4-bay", "storage", 54999, true),
    p(23, "Desk lamp", "furniture", 4999, true),
    p(24, "Cable organiser kit", "accessories", 1499, true),
];

pub const CATEGORIES: &[&str] = &[
    "accessories",
    "audio",
    "displays",
    "furniture",
    "peripherals",
    "storage",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<u32>,
    per_page: Option<u32>,
    category: Option<String>,
    min_price_cents: Option<u64>,
    max_price_cents: Option<u64>,
    in_stock: Option<bool>,
    q: Option<String>,
}

pub fn list_products(cx: Call) -> Reply {
    cx.query().and_then(list).into()
}

fn list(q: ListQuery) -> Result<Json<Value>, AppError> {
    let page = q.page.unwrap_or(1);
    if page == 0 {
        return Err(AppError::bad_field("page", "must be at least 1"));
    }
    let per_page = q.per_page.unwrap_or(10);
    if !(1..=100).contains(&per_page) {
        return Err(AppError::bad_field("per_page", "must be 1..=100"));
    }
    if let Some(c) = &q.category
        && !CATEGORIES.contains(&c.as_str())
    {
        return Err(AppError::bad_field(
            "category",
            format!("unknown category {c:?}; one of {}", CATEGORIES.join(", ")),
        ));
    }
    if let (Some(lo), Some(hi)) = (q.min_price_cents, q.max_price_cents)
        && lo > hi
    {
        return Err(AppError::bad_field(
            "min_price_cents",
            "must not exceed max_price_cents",
        ));
    }
    if q.q.as_ref().is_some_and(|s| s.len() > 100) {
        return Err(AppError::bad_field("q", "must be at most 100 characters"));
    }
    let needle = q.q.as_deref().map(str::to_lowercase);
    let matching: Vec<&Product> = PRODUCTS
        .iter()
        .filter(|p| q.category.as_deref().is_none_or(|c| p.category == c))
        .filter(|p| q.min_price_cents.is_none_or(|lo| p.price_cents >= lo))
        .filter(|p| q.max_price_cents.is_none_or(|hi| p.price_cents <= hi))
        .filter(|p| q.in_stock.is_none_or(|s| p.in_stock == s))
        .filter(|p| {
            needle
                .as_deref()
                .is_none_or(|n| p.name.to_lowercase().contains(n))
        })
        .collect();
    let total = matching.len();
    let start = ((page - 1) as usize).saturating_mul(per_page as usize);
    let items: Vec<&Product> = matching
        .into_iter()
        .skip(start)
        .take(per_page as usize)
        .collect();
    Ok(Json(json!({
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": total.div_ceil(per_page as usize),
    })))
}

pub fn find(id: u32) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

pub fn get_product(cx: Call) -> Reply {
    // A segment that does not decode to UTF-8 (`%FF`) is bad input like any other.
    cx.param("id").and_then(product).into()
}

fn product(id: String) -> Result<Json<Product>, AppError> {
    let id: u32 = id
        .parse()
        .map_err(|_| AppError::bad_field("id", format!("{id:?} is not a positive integer")))?;
    find(id)
        .copied()
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("product {id} does not exist")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    items: Vec<QuoteItem>,
    coupon: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteItem {
    product_id: u32,
    quantity: u32,
}

/// Coupons and their percentage discount.
const COUPONS: &[(&str, u64)] = &[("SAVE10", 10), ("WELCOME5", 5)];
const MAX_QUOTE_ITEMS: usize = 50;
const MAX_QUANTITY: u32 = 1000;

fn invalid(field: String, message: impl Into<String>) -> AppError {
    AppError::Unprocessable {
        message: format!("{field}: {}", message.into()),
        field,
    }
}

/// Volume discount tiers of the v2 engine: (minimum distinct products, percent off).
const VOLUME_TIERS: &[(usize, u64)] = &[(1, 0), (3, 5), (5, 8)];

/// The v2 engine's volume discount for a quote with `distinct` products.
fn volume_discount_v2(distinct: usize) -> Result<u64, String> {
    VOLUME_TIERS
        .get(distinct)
        .map(|(_, pct)| *pct)
        .ok_or_else(|| format!("discount tier lookup out of range for {distinct} products"))
}

pub fn quote(cx: Call) -> Reply {
    Reply::later(priced(cx))
}

async fn priced(mut cx: Call) -> Result<Json<Value>, AppError> {
    let body = cx.body_bytes().await?;
    let st = &cx.state;
    let is_json = cx
        .parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AppError::UnsupportedMediaType);
    }
    let req: QuoteRequest = parse_json(&body)?;
    if req.items.is_empty() || req.items.len() > MAX_QUOTE_ITEMS {
        return Err(invalid(
            "items".into(),
            format!("must hold 1..={MAX_QUOTE_ITEMS} items"),
        ));
    }
    let mut lines = Vec::with_capacity(req.items.len());
    let mut subtotal = 0u64;
    for (i, item) in req.items.iter().enumerate() {
        let Some(product) = find(item.product_id) else {
            return Err(invalid(
                format!("items[{i}].product_id"),
                format!("product {} does not exist", item.product_id),
            ));
        };
        if !product.in_stock {
            return Err(invalid(
                format!("items[{i}].product_id"),
                format!("product {} is out of stock", item.product_id),
            ));
        }
        if req.items[..i]
            .iter()
            .any(|o| o.product_id == item.product_id)
        {
            return Err(invalid(
                format!("items[{i}].product_id"),
                format!("product {} is listed twice", item.product_id),
            ));
        }
        if item.quantity == 0 || item.quantity > MAX_QUANTITY {
            return Err(invalid(
                format!("items[{i}].quantity"),
                format!("must be 1..={MAX_QUANTITY}"),
            ));
        }
        let line_total = product.price_cents * u64::from(item.quantity);
        subtotal += line_total;
        lines.push(json!({
            "product_id": product.id,
            "name": product.name,
            "quantity": item.quantity,
            "unit_price_cents": product.price_cents,
            "line_total_cents": line_total,
        }));
    }
    let discount_percent = match &req.coupon {
        None => 0,
        Some(code) => COUPONS
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(code))
            .map(|(_, pct)| *pct)
            .ok_or_else(|| invalid("coupon".into(), format!("unknown coupon {code:?}")))?,
    };
    let volume_percent = match st.config.quote_engine {
        QuoteEngine::V1 => 0,
        QuoteEngine::V2 => match volume_discount_v2(req.items.len()) {
            Ok(p) => p,
            Err(e) => {
                st.log
                    .error("Quote engine v2 failed")
                    .str("engine", "v2")
                    .str("error", &e)
                    .u64("items", req.items.len() as u64)
                    .emit();
                return Err(AppError::Internal("quote pricing failed".into()));
            }
        },
    };
    let percent = (discount_percent + volume_percent).min(100);
    let discount = subtotal * percent / 100;
    Ok(Json(json!({
        "currency": "USD",
        "lines": lines,
        "subtotal_cents": subtotal,
        "discount_percent": percent,
        "discount_cents": discount,
        "total_cents": subtotal - discount,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesQuery {
    days: Option<u32>,
}

/// Time the sales report's aggregation query takes per day of data: the report
/// is slow by nature (about 1.2 s for the default 30 days).
const REPORT_COST_PER_DAY: Duration = Duration::from_millis(40);

/// `GET /api/reports/sales?days=N`: daily totals over the last N days (1-90).
pub fn sales_report(cx: Call) -> Reply {
    Reply::later(report(cx.query()))
}

async fn report(q: Result<SalesQuery, AppError>) -> Result<Json<Value>, AppError> {
    let q = q?;
    let days = q.days.unwrap_or(30);
    if !(1..=90).contains(&days) {
        return Err(AppError::bad_field("days", "must be 1..=90"));
    }
    tokio::time::sleep(REPORT_COST_PER_DAY * days).await;
    let daily: Vec<Value> = (0..days)
        .map(|d| {
            let orders = 40 + (u64::from(d) * 7919) % 23;
            json!({"day": d, "orders": orders, "revenue_cents": orders * 5_999})
        })
        .collect();
    Ok(Json(json!({"days": days, "daily": daily})))
}
