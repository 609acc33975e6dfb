//! The gateway's backend in production: the node's [`MarketClient`], so every HTTP request becomes a
//! query on the mesh, paid and receipted like any other.

use super::{Answered, GatewayBackend, GatewayError, ModelInfo};
use crate::market::client::{MarketClient, MarketError, Settled};
use agora_protocols::{
    EmbedInput, EmbedOutput, GenerateInput, GenerateOutput, QueryErrorKind, Task,
};

impl From<MarketError> for GatewayError {
    fn from(e: MarketError) -> Self {
        let message = e.to_string();
        match &e {
            MarketError::NoProvider { .. } => GatewayError::NoProvider(message),
            MarketError::AllFailed {
                last_refusal: Some(refusal),
                ..
            } => match refusal.kind {
                QueryErrorKind::OverBudget => GatewayError::InsufficientCredit(message),
                QueryErrorKind::RateLimited | QueryErrorKind::Busy => {
                    GatewayError::RateLimited(message)
                }
                QueryErrorKind::BadInput => GatewayError::BadRequest(message),
                QueryErrorKind::UnknownModel => GatewayError::ModelNotFound(message),
                _ => GatewayError::Upstream(message),
            },
            MarketError::AllFailed { .. } => GatewayError::Upstream(message),
            MarketError::Timeout(_) => GatewayError::Timeout(message),
            MarketError::Input(_) => GatewayError::BadRequest(message),
            MarketError::Store(_) | MarketError::Overlay(_) | MarketError::Sign(_) => {
                GatewayError::Internal(message)
            }
        }
    }
}

fn answered<T>(settled: Settled<T>) -> Answered<T> {
    Answered {
        provider: settled.provider.to_string(),
        receipt_id: settled.receipt.id().to_string(),
        price: settled.receipt.body().price,
        output: settled.output,
    }
}

impl MarketClient {
    /// Fails fast with 404 for a model no provider advertises for `task`, instead of waiting for
    /// discovery: the gateway answers people, who would rather hear "no such model" at once.
    async fn require_model(&self, task: Task, model: &str) -> Result<(), GatewayError> {
        let models = self.models().await.map_err(GatewayError::from)?;
        if models.iter().any(|m| m.model == model && m.task == task) {
            return Ok(());
        }
        let known: Vec<&str> = models
            .iter()
            .filter(|m| m.task == task)
            .map(|m| m.model.as_str())
            .collect();
        Err(GatewayError::ModelNotFound(format!(
            "the model `{model}` does not exist on the mesh for {task} (served now: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )))
    }
}

impl GatewayBackend for MarketClient {
    async fn models(&self) -> Result<Vec<ModelInfo>, GatewayError> {
        Ok(MarketClient::models(self)
            .await?
            .into_iter()
            .map(|m| ModelInfo {
                id: m.model,
                task: m.task,
                providers: m.providers,
                min_price: m.min_price,
            })
            .collect())
    }

    async fn embed(
        &self,
        model: String,
        input: EmbedInput,
    ) -> Result<Answered<EmbedOutput>, GatewayError> {
        self.require_model(Task::Embed, &model).await?;
        Ok(answered(MarketClient::embed(self, &model, &input).await?))
    }

    async fn chat(
        &self,
        model: String,
        input: GenerateInput,
    ) -> Result<Answered<GenerateOutput>, GatewayError> {
        self.require_model(Task::Generate, &model).await?;
        Ok(answered(self.generate(&model, &input).await?))
    }
}
