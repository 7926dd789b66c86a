//! `BackendPolicy`: how to call a Service (timeouts, circuit breaker, pending limit, retry
//! budget and backoff, load balancer). Unset fields take [`strait_proto::defaults`], the values
//! every proxy uses for a snapshot that leaves them unset.

use std::collections::BTreeMap;
use std::time::Duration;

use strait_proto::defaults;

use super::Ctx;
use super::policy_target::target;
use super::scalars::parse_duration;
use crate::config::load::Loaded;
use crate::config::model::*;
use crate::config::raw::{self, Object};

pub(super) fn backend_policy(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::BackendPolicySpec>,
    services: &BTreeMap<ObjectKey, Service>,
) -> Option<((ObjectKey, Option<u16>), BackendPolicy)> {
    let location = &item.location;
    let spec = &object.spec;
    let errors_before = ctx.errors.0.len();
    let target = target(ctx, location, &key.namespace, &spec.target_ref, services);
    let mut policy = BackendPolicy {
        connect_timeout: parse_duration(
            ctx,
            location,
            "spec.connectTimeout",
            &spec.connect_timeout,
        ),
        idle_timeout: parse_duration(ctx, location, "spec.idleTimeout", &spec.idle_timeout),
        ..Default::default()
    };
    if policy.connect_timeout.is_some_and(|d| d.is_zero()) {
        ctx.err(location, "spec.connectTimeout", "must be longer than 0s");
    }
    if let Some(cb) = &spec.circuit_breaker {
        let consecutive = cb
            .consecutive_failures
            .unwrap_or(defaults::BREAKER_CONSECUTIVE_FAILURES.into());
        if !(1..=1000).contains(&consecutive) {
            ctx.err(
                location,
                "spec.circuitBreaker.consecutiveFailures",
                format!("{consecutive} is out of range (1-1000)"),
            );
        }
        let percent = cb
            .max_ejected_percent
            .unwrap_or(defaults::BREAKER_MAX_EJECTED_PERCENT.into());
        if !(0..=100).contains(&percent) {
            ctx.err(
                location,
                "spec.circuitBreaker.maxEjectedPercent",
                format!("{percent} is out of range (0-100)"),
            );
        }
        let base = parse_duration(
            ctx,
            location,
            "spec.circuitBreaker.baseEjectionTime",
            &cb.base_ejection_time,
        )
        .unwrap_or(defaults::BREAKER_BASE_EJECTION);
        let max = parse_duration(
            ctx,
            location,
            "spec.circuitBreaker.maxEjectionTime",
            &cb.max_ejection_time,
        )
        .unwrap_or(defaults::BREAKER_MAX_EJECTION);
        if max < base {
            ctx.err(
                location,
                "spec.circuitBreaker.maxEjectionTime",
                "must not be shorter than baseEjectionTime",
            );
        }
        policy.circuit_breaker = Some(CircuitBreaker {
            consecutive_failures: consecutive.clamp(1, 1000) as u32,
            base_ejection: base,
            max_ejection: max,
            max_ejected_percent: percent.clamp(0, 100) as u32,
        });
    }
    if let Some(pending) = spec.max_pending_requests {
        match u32::try_from(pending) {
            Ok(n) if n > 0 => policy.max_pending_requests = Some(n),
            _ => ctx.err(
                location,
                "spec.maxPendingRequests",
                format!("{pending} must be a positive number"),
            ),
        }
    }
    if let Some(budget) = &spec.retry_budget {
        let percent = budget
            .percent
            .unwrap_or(defaults::RETRY_BUDGET_PERCENT.into());
        if !(0..=1000).contains(&percent) {
            ctx.err(
                location,
                "spec.retryBudget.percent",
                format!("{percent} is out of range (0-1000)"),
            );
        }
        let min = budget
            .min_retries_per_second
            .unwrap_or(defaults::RETRY_BUDGET_MIN_PER_SECOND.into());
        if !(0..=100_000).contains(&min) {
            ctx.err(
                location,
                "spec.retryBudget.minRetriesPerSecond",
                format!("{min} is out of range (0-100000)"),
            );
        }
        let interval = parse_duration(ctx, location, "spec.retryBudget.interval", &budget.interval)
            .unwrap_or(defaults::RETRY_BUDGET_INTERVAL);
        if interval < Duration::from_secs(1) {
            ctx.err(location, "spec.retryBudget.interval", "must be at least 1s");
        }
        policy.retry_budget = Some(RetryBudget {
            ratio: percent.clamp(0, 1000) as f64 / 100.0,
            min_per_second: min.clamp(0, 100_000) as u32,
            interval,
        });
    }
    if let Some(backoff) = &spec.retry_backoff {
        policy.retry_backoff_base =
            parse_duration(ctx, location, "spec.retryBackoff.base", &backoff.base);
        policy.retry_backoff_max =
            parse_duration(ctx, location, "spec.retryBackoff.max", &backoff.max);
        if let (Some(base), Some(max)) = (policy.retry_backoff_base, policy.retry_backoff_max)
            && max < base
        {
            ctx.err(
                location,
                "spec.retryBackoff.max",
                "must not be shorter than base",
            );
        }
    }
    policy.load_balancer = match spec.load_balancer.as_deref() {
        None => None,
        Some("PeakEWMA") => Some(LoadBalancer::P2cPeakEwma),
        Some("RoundRobin") => Some(LoadBalancer::RoundRobin),
        Some(other) => {
            ctx.err(
                location,
                "spec.loadBalancer",
                format!("{other:?} is not a load balancer (PeakEWMA or RoundRobin)"),
            );
            None
        }
    };
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    Some((target?, policy))
}
