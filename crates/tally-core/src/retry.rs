//! When to try a delivery again, and when to stop (the delivery issue's retry policy).
//!
//! One attempt's outcome is a [`Disposition`]; [`RetryPolicy::next`] turns it into the next
//! step: deliver again at a time (schedule step, raised to an overload floor on 429 and
//! timeouts, never earlier than the platform's `Retry-After`, spread by jitter), or give up
//! because the platform's own deadline for the event has passed. Pure and clock-free: the
//! caller passes `now` and the jitter sample, so tests are exact.

use std::time::Duration;

use crate::timestamp::Timestamp;

/// What the outbox does with a delivery after one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// The platform accepted it.
    Succeeded,
    /// Try again later.
    Retry {
        /// Why (status, error code), kept for the ledger.
        reason: String,
        /// The platform's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// 429, timeouts and connection refusals: back off harder than for a plain 5xx.
        overloaded: bool,
    },
    /// The platform refused this payload and always will (4xx other than 408/429).
    Dead {
        /// Why.
        reason: String,
    },
    /// The payload cannot be sent until the configuration or mapping is fixed (bad token,
    /// unknown pixel, a field the mapping fills wrongly); replay after the fix.
    NeedsFix {
        /// Why.
        reason: String,
    },
}

/// The default classification of a plain HTTP status: 2xx succeed; 408, 429 and 5xx other
/// than 501 are retried; 401 and 403 need a fix (credentials); other 4xx are dead.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Disposition {
    match status {
        200..=299 => Disposition::Succeeded,
        408 | 429 => Disposition::Retry {
            reason: format!("HTTP {status}"),
            retry_after,
            overloaded: true,
        },
        501 => Disposition::Dead {
            reason: "HTTP 501: the platform does not support this request".into(),
        },
        500..=599 => Disposition::Retry {
            reason: format!("HTTP {status}"),
            retry_after,
            overloaded: false,
        },
        401 | 403 => Disposition::NeedsFix {
            reason: format!("HTTP {status}: check the destination's credentials"),
        },
        _ => Disposition::Dead {
            reason: format!("HTTP {status}"),
        },
    }
}

/// The next step for a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Done.
    Delivered,
    /// Attempt again at this time.
    RetryAt(Timestamp),
    /// Stop: dead-letter with this reason.
    DeadLetter(String),
    /// Stop until the configuration is fixed and the delivery replayed.
    NeedsFix(String),
    /// Not sent: consent for this destination is missing (a consent gap).
    Withheld(String),
}

/// A retry schedule and its limits.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, … failed attempt; the last step repeats.
    pub schedule: Vec<Duration>,
    /// Least delay after a 429 or a timeout.
    pub overload_floor: Duration,
    /// Longest delay ever waited, whatever `Retry-After` says.
    pub max_delay: Duration,
    /// Jitter as a fraction of the delay (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            schedule: [5, 30, 120, 600, 1800, 3600]
                .map(Duration::from_secs)
                .to_vec(),
            overload_floor: Duration::from_secs(30),
            max_delay: Duration::from_secs(6 * 3600),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `failed_attempts + 1`, given the last disposition's hints.
    /// `jitter_sample` is a uniform sample in `[0, 1)`.
    pub fn delay(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        overloaded: bool,
        jitter_sample: f64,
    ) -> Duration {
        let index =
            (failed_attempts.max(1) as usize - 1).min(self.schedule.len().saturating_sub(1));
        let mut base = self
            .schedule
            .get(index)
            .copied()
            .unwrap_or(self.overload_floor);
        if overloaded {
            base = base.max(self.overload_floor);
        }
        let spread = self.jitter.clamp(0.0, 1.0) * (2.0 * jitter_sample.clamp(0.0, 1.0) - 1.0);
        let jittered = base.mul_f64((1.0 + spread).max(0.0));
        // The platform's own word is a floor: never come back earlier than it asked.
        let delay = match retry_after {
            Some(after) => jittered.max(after),
            None => jittered,
        };
        delay.min(self.max_delay)
    }

    /// The next step after an attempt that ended with `disposition`.
    ///
    /// `deadline` is the last moment the platform accepts this event; a retry that would land
    /// after it dead-letters now instead, with the reason.
    pub fn next(
        &self,
        disposition: &Disposition,
        failed_attempts: u32,
        now: Timestamp,
        deadline: Timestamp,
        jitter_sample: f64,
    ) -> Next {
        match disposition {
            Disposition::Succeeded => Next::Delivered,
            Disposition::Dead { reason } => Next::DeadLetter(reason.clone()),
            Disposition::NeedsFix { reason } => Next::NeedsFix(reason.clone()),
            Disposition::Retry {
                reason,
                retry_after,
                overloaded,
            } => {
                let delay = self.delay(failed_attempts, *retry_after, *overloaded, jitter_sample);
                let at =
                    Timestamp::from_millis(now.millis().saturating_add(delay.as_millis() as i64));
                if at > deadline {
                    Next::DeadLetter(format!(
                        "the platform's deadline for this event passed ({deadline}); last failure: {reason}"
                    ))
                } else {
                    Next::RetryAt(at)
                }
            }
        }
    }
}

/// How long after the event a platform still accepts it.
pub fn acceptance_window(kind: &str) -> Option<Duration> {
    const DAY: u64 = 86_400;
    match kind {
        // Meta rejects events older than 7 days (the whole batch).
        "meta_capi" => Some(Duration::from_secs(7 * DAY)),
        // GA4 Measurement Protocol backdates at most 72 hours.
        "ga4" => Some(Duration::from_secs(3 * DAY)),
        // Google Ads: the conversion action's click-through window, at most 90 days.
        "google_ads" => Some(Duration::from_secs(90 * DAY)),
        // TikTok's web window is not documented; 7 days matches its dedup practice and Meta's.
        "tiktok" => Some(Duration::from_secs(7 * DAY)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn classifies_plain_statuses_like_the_platforms_expect() {
        assert_eq!(classify_status(200, None), Disposition::Succeeded);
        assert!(matches!(
            classify_status(503, None),
            Disposition::Retry {
                overloaded: false,
                ..
            }
        ));
        assert!(matches!(
            classify_status(429, Some(S(2))),
            Disposition::Retry {
                overloaded: true,
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            classify_status(408, None),
            Disposition::Retry {
                overloaded: true,
                ..
            }
        ));
        assert!(matches!(
            classify_status(501, None),
            Disposition::Dead { .. }
        ));
        assert!(matches!(
            classify_status(400, None),
            Disposition::Dead { .. }
        ));
        assert!(matches!(
            classify_status(401, None),
            Disposition::NeedsFix { .. }
        ));
    }

    #[test]
    fn delays_follow_the_schedule_and_repeat_its_last_step() {
        let p = no_jitter();
        assert_eq!(p.delay(1, None, false, 0.5), S(5));
        assert_eq!(p.delay(2, None, false, 0.5), S(30));
        assert_eq!(p.delay(6, None, false, 0.5), S(3600));
        assert_eq!(p.delay(60, None, false, 0.5), S(3600));
    }

    #[test]
    fn overload_raises_the_delay_to_the_floor_and_retry_after_is_never_undercut() {
        let p = no_jitter();
        assert_eq!(p.delay(1, None, true, 0.5), S(30));
        assert_eq!(p.delay(1, Some(S(120)), true, 0.5), S(120));
        assert_eq!(p.delay(5, Some(S(2)), false, 0.5), S(1800));
        assert_eq!(
            p.delay(1, Some(S(86_400)), false, 0.5),
            S(6 * 3600),
            "capped at max_delay"
        );
    }

    #[test]
    fn jitter_spreads_within_its_fraction() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(2, None, false, 0.0), S(24));
        assert_eq!(p.delay(2, None, false, 0.5), S(30));
        assert!(p.delay(2, None, false, 0.999_999) <= S(36));
    }

    #[test]
    fn a_retry_past_the_platform_deadline_dead_letters_with_the_reason() {
        let p = no_jitter();
        let now = Timestamp::from_millis(1_000_000);
        let retry = Disposition::Retry {
            reason: "HTTP 503".into(),
            retry_after: None,
            overloaded: false,
        };
        let far = Timestamp::from_millis(now.millis() + 10_000);
        assert_eq!(
            p.next(&retry, 1, now, far, 0.5),
            Next::RetryAt(Timestamp::from_millis(now.millis() + 5_000))
        );
        let near = Timestamp::from_millis(now.millis() + 1_000);
        let Next::DeadLetter(reason) = p.next(&retry, 1, now, near, 0.5) else {
            panic!("expected dead letter")
        };
        assert!(
            reason.contains("deadline") && reason.contains("HTTP 503"),
            "{reason}"
        );
        assert_eq!(
            p.next(&Disposition::Succeeded, 1, now, near, 0.5),
            Next::Delivered
        );
    }

    #[test]
    fn platform_windows_match_the_reference() {
        assert_eq!(acceptance_window("meta_capi"), Some(S(7 * 86_400)));
        assert_eq!(acceptance_window("ga4"), Some(S(72 * 3600)));
        assert_eq!(acceptance_window("webhook"), None);
    }

    proptest::proptest! {
        #[test]
        fn a_delay_is_never_below_retry_after_nor_above_the_cap(
            attempt in 1u32..100, after in proptest::option::of(0u64..100_000), overloaded: bool, j in 0.0f64..1.0
        ) {
            let p = RetryPolicy::default();
            let d = p.delay(attempt, after.map(S), overloaded, j);
            proptest::prop_assert!(d <= p.max_delay);
            if let Some(a) = after { proptest::prop_assert!(d >= S(a).min(p.max_delay)); }
        }
    }
}
