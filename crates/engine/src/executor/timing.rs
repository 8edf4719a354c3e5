//! The mock executor's timing model: how long a GPU takes for one batched step, from a roofline
//! of the model on the accelerator.
//!
//! A step reads every weight once and the KV of every token in the batch's contexts, and does
//! `2 × parameters` FLOPs per new token plus attention FLOPs. Its time is
//! `overhead + max(weight_bytes / bandwidth, flops / compute) + kv_bytes / bandwidth`, with
//! bandwidth and compute scaled by achievable efficiencies. The coefficients come from a JSON
//! profile; `TimingProfile::default()` is Llama-3.1-8B in bf16 on an H100 SXM (see its doc).

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingProfile {
    pub name: String,
    /// Bytes of weights read per step.
    pub weight_bytes: f64,
    /// FLOPs per new token outside attention (≈ 2 × parameters).
    pub flops_per_token: f64,
    /// Attention FLOPs per (new token × context token) pair: 4 × layers × heads × head_dim.
    pub attention_flops_per_pair: f64,
    /// KV bytes per cached token: 2 (K and V) × layers × kv_heads × head_dim × bytes per value.
    pub kv_bytes_per_token: f64,
    /// Peak memory bandwidth, bytes/s.
    pub memory_bandwidth: f64,
    /// Fraction of peak bandwidth a decode step achieves.
    pub bandwidth_efficiency: f64,
    /// Peak dense compute, FLOP/s.
    pub peak_flops: f64,
    /// Fraction of peak compute a prefill achieves.
    pub compute_efficiency: f64,
    /// Fixed cost per step (kernel launches, scheduling, sampling), seconds.
    pub step_overhead_s: f64,
}

impl Default for TimingProfile {
    /// Llama-3.1-8B (8.03 B parameters, 32 layers, 32 heads, 8 KV heads, head_dim 128) in bf16 on
    /// an H100 SXM (3.35 TB/s HBM3, 989 TFLOP/s dense bf16). Efficiencies are typical of tuned
    /// engines: ~80% of HBM bandwidth in decode, ~50% of peak FLOPs in prefill; 0.5 ms per-step
    /// overhead. This gives ~6.5 ms batch-1 decode steps and ~35 ms for a 1k-token prefill.
    fn default() -> Self {
        let params = 8.03e9;
        Self {
            name: "llama-3.1-8b-bf16-h100-sxm".into(),
            weight_bytes: params * 2.0,
            flops_per_token: 2.0 * params,
            attention_flops_per_pair: 4.0 * 32.0 * 32.0 * 128.0,
            kv_bytes_per_token: 2.0 * 32.0 * 8.0 * 128.0 * 2.0,
            memory_bandwidth: 3.35e12,
            bandwidth_efficiency: 0.8,
            peak_flops: 989e12,
            compute_efficiency: 0.5,
            step_overhead_s: 0.0005,
        }
    }
}

/// A step's shape, as the timing model sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepShape {
    /// Tokens computed this step.
    pub new_tokens: f64,
    /// Σ over sequences of new tokens × (context before them + half the new tokens): causal
    /// attention pairs.
    pub attention_pairs: f64,
    /// Σ over sequences of context tokens whose KV is read.
    pub context_tokens: f64,
}

impl TimingProfile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let profile: Self = serde_json::from_str(&text)
            .map_err(|e| format!("invalid profile {}: {e}", path.display()))?;
        profile.validate()?;
        Ok(profile)
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            self.memory_bandwidth,
            self.bandwidth_efficiency,
            self.peak_flops,
            self.compute_efficiency,
        ];
        let non_negative = [
            self.weight_bytes,
            self.flops_per_token,
            self.attention_flops_per_pair,
            self.kv_bytes_per_token,
            self.step_overhead_s,
        ];
        if positive.iter().all(|v| v.is_finite() && *v > 0.0)
            && non_negative.iter().all(|v| v.is_finite() && *v >= 0.0)
        {
            Ok(())
        } else {
            Err(format!(
                "profile {}: bandwidth, compute and efficiencies must be positive, the rest non-negative",
                self.name
            ))
        }
    }

    pub fn step_time(&self, shape: StepShape) -> Duration {
        if shape.new_tokens <= 0.0 {
            return Duration::ZERO;
        }
        let bandwidth = self.memory_bandwidth * self.bandwidth_efficiency;
        let compute = self.peak_flops * self.compute_efficiency;
        let weights = self.weight_bytes / bandwidth;
        let flops = self.flops_per_token * shape.new_tokens
            + self.attention_flops_per_pair * shape.attention_pairs;
        let kv = self.kv_bytes_per_token * shape.context_tokens / bandwidth;
        Duration::from_secs_f64(self.step_overhead_s + weights.max(flops / compute) + kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn default_profile_is_in_the_expected_range() {
        let p = TimingProfile::default();
        let decode1 = p.step_time(StepShape {
            new_tokens: 1.0,
            attention_pairs: 1000.0,
            context_tokens: 1000.0,
        });
        assert!(
            (5.5..8.0).contains(&ms(decode1)),
            "batch-1 decode {} ms",
            ms(decode1)
        );
        let prefill = p.step_time(StepShape {
            new_tokens: 1024.0,
            attention_pairs: 1024.0 * 512.0,
            context_tokens: 1024.0,
        });
        assert!(
            (25.0..45.0).contains(&ms(prefill)),
            "1k prefill {} ms",
            ms(prefill)
        );
        let decode64 = p.step_time(StepShape {
            new_tokens: 64.0,
            attention_pairs: 64.0 * 1000.0,
            context_tokens: 64.0 * 1000.0,
        });
        assert!(
            decode64 > decode1 && ms(decode64) < 2.0 * ms(decode1),
            "batched decode amortizes weights"
        );
        assert_eq!(p.step_time(StepShape::default()), Duration::ZERO);
    }

    #[test]
    fn profiles_round_trip_and_validate() {
        let p = TimingProfile::default();
        let json = serde_json::to_string(&p).expect("json");
        let back: TimingProfile = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, p);
        let bad = TimingProfile {
            memory_bandwidth: 0.0,
            ..p
        };
        assert!(bad.validate().is_err());
    }
}
