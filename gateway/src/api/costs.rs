//! `GET /practices/{ods}/costs?month=YYYY-MM`: what a practice's messages cost in a month.

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::caller::Caller;
use super::extract::ApiQuery;
use crate::app::AppState;
use crate::cost::{monthly_cost, Month, MonthlyCost, Prices};
use crate::http::openapi::shapes;
use crate::http::ApiError;

/// Which month.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CostQuery {
    /// The month as `YYYY-MM` (UTC); left out: this month.
    #[serde(default)]
    #[param(example = "2026-12")]
    month: Option<String>,
}

/// `GET /practices/{ods}/costs?month=YYYY-MM`.
#[utoipa::path(get, path = "/practices/{ods}/costs", operation_id = "practice_monthly_cost", tag = "practices",
    params(shapes::OdsPath, CostQuery),
    responses((status = 200, description = "What the practice's messages of the month cost", body = MonthlyCost)))]
pub async fn monthly(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiQuery(query): ApiQuery<CostQuery>,
) -> Result<Json<MonthlyCost>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let month = match query.month.as_deref() {
        None => Month::of(Utc::now()),
        Some(text) => Month::parse(text).map_err(|e| ApiError::Validation(vec![e]))?,
    };
    let prices = Prices::from_config(&state.config.providers);
    let ods_code = practice.ods_code.to_string();
    Ok(Json(
        monthly_cost(
            state.store.as_ref(),
            &prices,
            (&ods_code, practice.id),
            month,
        )
        .await?,
    ))
}
