//! `POST /v1/chat/completions`.

use crate::error::ApiError;
use crate::preprocess;
use crate::response::Endpoint;
use crate::server::{AppState, RequestBody};
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;
use turbine_protocols::openai::ChatCompletionRequest;

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    RequestBody(body): RequestBody,
) -> Response {
    let endpoint = Endpoint::Chat;
    let request: ChatCompletionRequest = match AppState::parse(body.clone()).await {
        Ok(request) => request,
        Err(error) => return state.finish(Err(error), "", endpoint),
    };
    let model = request.common.model.clone();
    let result = async {
        let entry = state
            .registry
            .get(&model)
            .ok_or_else(|| ApiError::model_not_found(&model))?;
        preprocess::check_chat_unsupported(&request)?;
        let max_tokens = request.max_completion_tokens.or(request.common.max_tokens);
        let params = preprocess::generation_params(&request.common, max_tokens)?;
        let metrics = state.metrics.clone();
        super::generation::serve(&state, entry, endpoint, params, body.len(), move |entry| {
            Ok(vec![preprocess::chat_prompt(entry, &request, &metrics)?])
        })
        .await
    }
    .await;
    state.finish(result, &model, endpoint)
}
