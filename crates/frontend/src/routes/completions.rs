//! `POST /v1/completions`.

use crate::error::ApiError;
use crate::preprocess;
use crate::response::Endpoint;
use crate::server::{AppState, RequestBody};
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;
use turbine_protocols::openai::CompletionRequest;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    RequestBody(body): RequestBody,
) -> Response {
    let endpoint = Endpoint::Completions;
    let request: CompletionRequest = match AppState::parse(body.clone()).await {
        Ok(request) => request,
        Err(error) => return state.finish(Err(error), "", endpoint),
    };
    let model = request.common.model.clone();
    let result = async {
        let entry = state
            .registry
            .get(&model)
            .ok_or_else(|| ApiError::model_not_found(&model))?;
        check_unsupported(&request)?;
        let params = preprocess::generation_params(&request.common, request.common.max_tokens)?;
        let metrics = state.metrics.clone();
        let inputs = request.prompt.into_inputs();
        super::generation::serve(&state, entry, endpoint, params, body.len(), move |entry| {
            preprocess::completion_prompts(entry, inputs, &metrics)
        })
        .await
    }
    .await;
    state.finish(result, &model, endpoint)
}

fn check_unsupported(request: &CompletionRequest) -> Result<(), ApiError> {
    if request.echo == Some(true) {
        return Err(ApiError::invalid_param(
            "echo",
            "echo is not supported yet.",
        ));
    }
    if request.logprobs.is_some_and(|n| n > 0) {
        return Err(ApiError::invalid_param(
            "logprobs",
            "logprobs are not supported yet.",
        ));
    }
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param(
            "suffix",
            "suffix is not supported.",
        ));
    }
    if request.best_of.is_some_and(|n| n > 1) {
        return Err(ApiError::invalid_param(
            "best_of",
            "best_of > 1 is not supported yet.",
        ));
    }
    Ok(())
}
